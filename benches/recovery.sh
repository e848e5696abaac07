#!/usr/bin/env bash
# Recovery benchmark (see docs/BENCHMARKS.md, "Recovery"): queue a newsletter-shaped load
# (N messages x RCPTS recipients in DOMAINS domains, SIZE octets), every recipient deferred by a
# sink that answers 451, then kill -9 the MTA and restart it on the same spool. Prints the
# idle RSS, the running RSS before the kill, the time from the restart to "ready", the RSS
# (current and peak) after recovery, and what a queued recipient costs beyond the bodies and
# the idle process. Loopback only; every step is bounded in time.
# Env: N (20000), RCPTS (50), DOMAINS (500), SIZE (2048), SHARDS (2), BUDGET (1GiB, the default),
#      MTA and LOADGEN (release binaries of this tree), DIR (/tmp/recovery-bench).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-20000}; RCPTS=${RCPTS:-50}; DOMAINS=${DOMAINS:-500}; SIZE=${SIZE:-2048}
SHARDS=${SHARDS:-2}; BUDGET=${BUDGET:-1GiB}; DIR=${DIR:-/tmp/recovery-bench}
MTA=${MTA:-$ROOT/target/release/mta}; LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
[ -x "$MTA" ] && [ -x "$LOADGEN" ] || { echo "build first: cargo build --release -p mta -p loadgen"; exit 2; }
rm -rf "$DIR"; mkdir -p "$DIR"
SINK_PORT=2736; SMTP_PORT=2737
cat > "$DIR/mta.toml" <<EOT
hostname = "bench.test"
shards = $SHARDS
[[listeners]]
address = "127.0.0.1:$SMTP_PORT"
[spool]
path = "$DIR/spool"
[log]
dir = "$DIR/log"
[delivery]
memory_budget = "$BUDGET"
[delivery.retry]
first = "1h"
[[routes]]
domain = "*.loadgen.test"
hosts = ["127.0.0.1:$SINK_PORT"]
EOT
cleanup() { kill "$SINK" "$M" 2>/dev/null || true; }
trap cleanup EXIT
"$LOADGEN" sink --listen 127.0.0.1:$SINK_PORT --threads 1 --fail rcpt:451:100 > "$DIR/sink.log" 2>&1 & SINK=$!
start_mta() {
  : > "$DIR/mta.log"
  "$MTA" run --config "$DIR/mta.toml" >> "$DIR/mta.log" 2>&1 & M=$!
  for _ in $(seq 600); do grep -q " ready" "$DIR/mta.log" && return 0; sleep 0.05; done
  echo "mta did not start"; cat "$DIR/mta.log"; exit 1
}
rss() { awk -v k="$2" '$1==k":" {print int($2/1024)}' "/proc/$1/status"; }
rss_kib() { awk '$1=="VmRSS:" {print $2}' "/proc/$1/status"; }
start_mta
sleep 1
idle_kib=$(rss_kib $M)
echo "idle: rss_mib=$((idle_kib / 1024))"
timeout 600 "$LOADGEN" send --target 127.0.0.1:$SMTP_PORT -c 50 -n "$N" -s "$SIZE" \
  --recipients "$RCPTS" --generated-domains "$DOMAINS" --threads 1 -q
# Let every recipient get its first (deferred) attempt, bounded.
want=$((N * RCPTS))
for _ in $(seq 300); do
  # One line per reception and one per deferred recipient (the log is written every second).
  got=$(( $(cat "$DIR"/log/delivery-*.jsonl 2>/dev/null | wc -l) - N ))
  [ "$got" -ge "$want" ] && break; sleep 2
done
echo "deferred recipients: $got of $want"
echo "running: rss_mib=$(rss $M VmRSS) peak_mib=$(rss $M VmHWM)"
kill -9 $M; wait $M 2>/dev/null || true
t0=$(date +%s.%N); start_mta; t1=$(date +%s.%N)
sleep 2
echo "restart: ready_s=$(awk -v a="$t0" -v b="$t1" "BEGIN{printf \"%.2f\", b-a}") rss_mib=$(rss $M VmRSS) peak_mib=$(rss $M VmHWM)"
# What a queued recipient costs beyond the bodies (N x SIZE, all within the budget here) and
# the idle process.
awk -v r="$(rss_kib $M)" -v i="$idle_kib" -v n="$N" -v s="$SIZE" -v k="$RCPTS" \
  'BEGIN { printf "per queued recipient, beyond the bodies and the idle process: %.0f bytes\n", (r - i) * 1024 / (n * k) - s / k }'
"$MTA" queue count --config "$DIR/mta.toml" | tr '\n' ' '; echo
kill -TERM $M; wait $M 2>/dev/null || true
