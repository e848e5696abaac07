#!/usr/bin/env bash
# Acceptance benchmark (see docs/BENCHMARKS.md): a pipelining load source (50 sessions,
# 4 KiB messages, 1 recipient) into Postfix's smtp-sink (stores nothing) and into mta
# (spool sync on), alternating, RUNS times each, on loopback only.
# Needs smtp-sink (Debian package postfix) and smtp-pipe-source (a small C load source):
#   SRC=/path/to/smtp-pipe-source ./benches/acceptance.sh
# Env: N (messages per run, 30000), RUNS (3), SYNC (always|never), SRC, MTA.
set -u
N=${N:-30000}; RUNS=${RUNS:-3}; SRC=${SRC:-/tmp/peerbench/bin/smtp-pipe-source}
MTA=${MTA:-$(cd "$(dirname "$0")/.." && pwd)/target/release/mta}
mkdir -p /tmp/bench
cat > /tmp/bench/mta.toml <<EOT
hostname = "bench.test"
[[listeners]]
address = "127.0.0.1:2527"
[spool]
path = "/tmp/bench/spool"
sync = "${SYNC:-always}"
[delivery]
hold = true
EOT
for r in $(seq 1 $RUNS); do
  smtp-sink -u postfix -c 127.0.0.1:2526 1000 > /tmp/bench/sink.out 2>&1 & SINK=$!
  sleep 0.5
  out=$(timeout 300 $SRC -T 300 -s 50 -m $N -l 4096 -f from@example.com -t to@example.net 127.0.0.1:2526 2>&1 | tail -1)
  kill $SINK; wait $SINK 2>/dev/null
  echo "run $r sink: $out"
  rm -rf /tmp/bench/spool
  $MTA run --config /tmp/bench/mta.toml > /tmp/bench/mta.log 2>&1 & M=$!
  for i in $(seq 50); do grep -q ready /tmp/bench/mta.log && break; sleep 0.1; done
  t0=$(awk '{print $14+$15}' /proc/$M/stat)
  out=$(timeout 300 $SRC -T 300 -s 50 -m $N -l 4096 -f from@example.com -t to@example.net 127.0.0.1:2527 2>&1 | tail -1)
  t1=$(awk '{print $14+$15}' /proc/$M/stat)
  rss=$(awk '/VmHWM/{print $2}' /proc/$M/status)
  kill -TERM $M; wait $M
  echo "run $r mta:  $out cpu_ticks=$((t1-t0)) peak_rss_kb=$rss"
  $MTA queue count --config /tmp/bench/mta.toml | tr '\n' ' '; echo
done
