#!/usr/bin/env bash
# Records a named scenario with `perf record` (software cpu-clock event: works on VMs without
# hardware counters) and renders an SVG flamegraph with inferno.
#
# usage: flamegraphs/record.sh SCENARIO [N]
#   accept   mta (2 shards, sync on, delivery on hold) receiving N pipelined 4 KiB messages
#            from `loadgen send` (50 connections)                       default N=60000
#   relay    mta (1 shard, sync on, benches/relay.toml's shape) relaying N pipelined 4 KiB
#            messages from `loadgen send` (50 connections) to `loadgen sink --no-chunking`
#            (PIPELINING without CHUNKING, like Postfix's smtp-sink)    default N=60000
#   lockstep mta as in `accept` receiving N 4 KiB messages from `loadgen send` (50 connections)
#            without PIPELINING and on a new connection per message: every command waits for
#            its reply, every message pays a connect, greeting, EHLO and QUIT  default N=30000
# Output: flamegraphs/<scenario>.svg ; perf data stays in /tmp (never committed).
# Needs: perf (Debian package linux-perf), inferno (`cargo install inferno`), a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENARIO=${1:?scenario (accept|relay|lockstep)}
DEFAULT_N=60000
[ "$SCENARIO" = lockstep ] && DEFAULT_N=30000
N=${2:-$DEFAULT_N}
# Extra `loadgen send` options of the scenario.
SEND_EXTRA=()
[ "$SCENARIO" = lockstep ] && SEND_EXTRA=(--no-pipelining --per-connection 1)
command -v perf >/dev/null || { echo "need perf (apt-get install linux-perf)"; exit 2; }
command -v inferno-flamegraph >/dev/null || cargo install inferno --version 0.12.3
cargo build --release --workspace -q
WORK=$(mktemp -d /tmp/flame.XXXXXX)
SINK=
trap 'kill $MTA $SINK 2>/dev/null || true; rm -rf "$WORK/spool"' EXIT
# Starts mta on $WORK/mta.toml, records it with perf (PERF), and sends N messages to it.
start_mta_and_send() {
  target/release/mta run --config "$WORK/mta.toml" 2> "$WORK/mta.log" &
  MTA=$!
  for _ in $(seq 100); do grep -q ready "$WORK/mta.log" && break; sleep 0.1; done
  ADDR=$(grep -o 'listening on [0-9.:]*' "$WORK/mta.log" | head -1 | awk '{print $3}')
  perf record -e cpu-clock -F 999 -g -p "$MTA" -o "$WORK/perf.data" -- sleep 600 > /dev/null 2>&1 &
  PERF=$!
  sleep 0.5
  target/release/loadgen send --target "$ADDR" -c 50 -n "$N" -s 4096 --threads 1 -q "${SEND_EXTRA[@]}"
}
case $SCENARIO in
  accept|lockstep)
    cat > "$WORK/mta.toml" <<EOT
hostname = "flame.test"
shards = 2
[[listeners]]
address = "127.0.0.1:0"
[spool]
path = "$WORK/spool"
[delivery]
hold = true
[log]
dir = "$WORK/log"
EOT
    start_mta_and_send
    kill -INT $PERF; wait $PERF || true
    ;;
  relay)
    target/release/loadgen sink --listen 127.0.0.1:0 --threads 1 --no-chunking > "$WORK/sink.log" 2>&1 &
    SINK=$!
    for _ in $(seq 100); do grep -q listening "$WORK/sink.log" && break; sleep 0.1; done
    SINK_ADDR=$(grep -o 'listening on [0-9.:]*' "$WORK/sink.log" | awk '{print $3}')
    cat > "$WORK/mta.toml" <<EOT
hostname = "flame.test"
shards = 1
[[listeners]]
address = "127.0.0.1:0"
[spool]
path = "$WORK/spool"
[delivery]
relay_host = "$SINK_ADDR"
max_connections = 50
[log]
dir = "$WORK/log"
[admin]
listen = "127.0.0.1:0"
EOT
    start_mta_and_send
    sleep 2
    kill -INT $PERF; wait $PERF || true
    ;;
  *) echo "unknown scenario $SCENARIO"; exit 2;;
esac
perf script -i "$WORK/perf.data" 2>/dev/null | inferno-collapse-perf > "$WORK/folded"
inferno-flamegraph --title "mta: $SCENARIO ($N x 4 KiB, $(git rev-parse --short HEAD))" \
  < "$WORK/folded" > "flamegraphs/$SCENARIO.svg"
echo "wrote flamegraphs/$SCENARIO.svg"
