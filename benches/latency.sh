#!/usr/bin/env bash
# Latency of the `250` after end of data, open loop: mta (sync always, relaying to a
# `loadgen sink`) receives N 4 KiB messages at a fixed RATE from `loadgen send --rate`.
# Every run starts a fresh sink and mta; with several binaries the runs alternate
# (A B A B ...) so that a shared machine's noise falls on all of them alike.
#
# usage: benches/latency.sh [-r RATE] [-n N] [-R RUNS] [-s SHARDS] [-c CONNS] [-l lockstep] [MTA ...]
#   RATE msg/s (default 6000), N messages per run (default 60000), RUNS per binary (default 3),
#   SHARDS (default 2), CONNS load connections (default 50); `-l lockstep` sends every message
#   on a new connection without pipelining. MTA binaries default to target/release/mta.
# Prints one line per run: binary, accepted msg/s, reply p50/p99/p99.9/max (ms), the MTA's
# fdatasync calls, their mean time and the mean time a message waited for the spool (the
# MTA's own metrics), the MTA's CPU (user + system) per message; then the medians per binary.
# KEEP_METRICS=FILE keeps the last run's metrics text (for the histograms behind the means);
# LOADGEN=PATH runs another loadgen (a wrapper script, e.g. one that pins it with taskset).
# Loopback only; stops only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=6000 N=60000 RUNS=3 SHARDS=2 CONNS=50 MODE=pipelined
while getopts r:n:R:s:c:l: o; do
  case $o in
    r) RATE=$OPTARG ;; n) N=$OPTARG ;; R) RUNS=$OPTARG ;; s) SHARDS=$OPTARG ;;
    c) CONNS=$OPTARG ;; l) MODE=$OPTARG ;; *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(target/release/mta)
LOADGEN=${LOADGEN:-target/release/loadgen}
WORK=$(mktemp -d /tmp/latency.XXXXXX)
MTA= SINK=
cleanup() {
  for p in $MTA $SINK; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
SEND_EXTRA=()
[ "$MODE" = lockstep ] && SEND_EXTRA=(--no-pipelining --per-connection 1)

# Runs one binary once; prints its result line and appends it to $WORK/results.
run_once() {
  local bin=$1
  rm -rf "$WORK/spool" "$WORK/log"
  "$LOADGEN" sink --listen 127.0.0.1:0 --threads 1 > "$WORK/sink.log" 2>&1 &
  SINK=$!
  for _ in $(seq 100); do grep -qs listening "$WORK/sink.log" && break; sleep 0.1; done
  local sink_addr
  sink_addr=$(grep -o 'listening on [0-9.:]*' "$WORK/sink.log" | awk '{print $3}')
  local addr= try
  for try in 1 2 3; do
    # The metrics command needs the admin port in the configuration: a free one, picked now
    # (picked again if the MTA could not bind it).
    ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$WORK/mta.toml" <<EOT
hostname = "latency.test"
shards = $SHARDS
[[listeners]]
address = "127.0.0.1:0"
[spool]
path = "$WORK/spool"
sync = "always"
[delivery]
relay_host = "$sink_addr"
max_connections = 25
[log]
dir = "$WORK/log"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
EOT
    "$bin" run --config "$WORK/mta.toml" 2> "$WORK/mta.log" &
    MTA=$!
    for _ in $(seq 100); do
      grep -qs 'listening on' "$WORK/mta.log" && grep -qs ready "$WORK/mta.log" && break
      kill -0 "$MTA" 2>/dev/null || break
      sleep 0.1
    done
    addr=$(grep -o 'listening on [0-9.:]*' "$WORK/mta.log" | head -1 | awk '{print $3}' || true)
    if [ -n "$addr" ] && kill -0 "$MTA" 2>/dev/null; then break; fi
    echo "mta did not start (try $try):" >&2
    tail -3 "$WORK/mta.log" >&2
    kill "$MTA" 2>/dev/null || true
    wait "$MTA" 2>/dev/null || true
    addr=
    rm -rf "$WORK/spool" "$WORK/log"
  done
  [ -n "$addr" ] || { echo "mta did not start" >&2; exit 1; }
  "$LOADGEN" send --target "$addr" -c "$CONNS" -n "$N" -s 4096 --threads 1 --rate "$RATE" \
    "${SEND_EXTRA[@]}" --max-error-rate 1 -q --json "$WORK/send.json" > /dev/null
  local metrics cpu_ticks
  metrics=$("$bin" metrics --config "$WORK/mta.toml" 2>/dev/null || true)
  [ -z "${KEEP_METRICS:-}" ] || printf "%s\n" "$metrics" > "$KEEP_METRICS"
  # utime + stime of the whole process (clock ticks).
  cpu_ticks=$(awk '{print $14 + $15}' "/proc/$MTA/stat")
  kill "$MTA"; wait "$MTA" 2>/dev/null || true
  [ -z "${SHOW_LOG:-}" ] || grep -h "$SHOW_LOG" "$WORK/mta.log" >&2 || true
  kill "$SINK"; wait "$SINK" 2>/dev/null || true
  MTA= SINK=
  python3 - "$bin" "$WORK/send.json" "$metrics" "$cpu_ticks" "$(getconf CLK_TCK)" <<'EOF' | tee -a "$WORK/results"
import json, re, sys
bin_, path, metrics = sys.argv[1], sys.argv[2], sys.argv[3]
cpu_s = float(sys.argv[4]) / float(sys.argv[5])
r = json.load(open(path))
rep = r["reply_latency"]
def m(name):
    return sum(float(v) for v in re.findall(r"^mta_%s(?:\{[^}]*\})? (\S+)$" % name, metrics, re.M))
syncs = m("fdatasync_seconds_count")
print("%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.3f\t%.3f\t%.0f" % (
    bin_, r["ok"] / r["elapsed_s"], rep["p50_us"] / 1e3, rep["p99_us"] / 1e3,
    rep["p99.9_us"] / 1e3, rep["max_us"] / 1e3, syncs,
    1e3 * m("fdatasync_seconds_sum") / max(syncs, 1),
    1e3 * m("reply_latency_seconds_sum") / max(m("reply_latency_seconds_count"), 1),
    1e6 * cpu_s / max(r["ok"], 1)))
EOF
}

echo "rate=$RATE n=$N shards=$SHARDS connections=$CONNS mode=$MODE"
printf 'binary\tmsg/s\tp50\tp99\tp99.9\tmax (ms)\tfdatasyncs\tmean fdatasync\tmean spool wait (ms)\tCPU/msg (us)\n'
for _ in $(seq "$RUNS"); do
  for b in "${BINS[@]}"; do run_once "$b"; done
done
echo "medians:"
python3 - "$WORK/results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows.setdefault(f[0], []).append([float(x) for x in f[1:]])
for b, rs in rows.items():
    med = [statistics.median(c) for c in zip(*rs)]
    print("%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.3f\t%.3f\t%.0f" % (b, *med))
EOF
