#!/usr/bin/env bash
# Accepting only, side by side on loopback: Postfix's smtp-sink (answers every command, stores
# nothing, syncs nothing) against mta with delivery held (spool sync = "always": every `250`
# after the fdatasync that covers it). The same load source, message size, recipients and
# concurrency against each, runs alternating; prints each run and, per scenario, the ratio
# mta / smtp-sink of messages accepted per second with its spread.
#
# usage: benches/peers/accept.sh [-m MTA] [-g LOADGEN] [-n N] [-c CONC] [-r RUNS] [-s SHARDS]
#                                [-S "SCENARIOS"]
#   SCENARIO = SOURCE:SIZE:RECIPIENTS, SOURCE one of
#     pipelined    loadgen send --threads 1, PIPELINING, connections reused
#     lockstep     loadgen send --threads 1 --no-pipelining --per-connection 1
#     smtp-source  Postfix's smtp-source (lock-step, a new connection per message)
#   defaults: -m target/release/mta -g target/release/loadgen -n 30000 -c 50 -r 3
#     -s 0 (mta's default: one shard per core) -S "pipelined:4096:1 lockstep:4096:1"
#
# Rate = messages / wall time of the load source (start to exit), counted only when every
# message got its 2xx (the load source exits 0). CPU = the server's process tree, peak memory
# its proportional set size sampled twice a second. mta starts afresh for every run (an empty
# spool under PEER_DIR); smtp-sink too. smtp-sink comes with the Debian postfix package, which
# benches/peers/postfix.sh installs when missing (without configuring the system's Postfix).
# Every target is 127.0.0.1; every run is bounded by MAX_RUN_S (default 600 s).
# Environment: PEER_DIR (default /var/tmp/mta-peers), SINK_PORT (2626), MTA_PORT (2627),
# MTA_EXTRA (TOML appended to mta's configuration).
set -uo pipefail
ARGS=$( (($#)) && printf '%q ' "$@") STARTED=$(date -u '+%Y-%m-%d %H:%M')
ARGS=${ARGS% }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MTA=$ROOT/target/release/mta LOADGEN=$ROOT/target/release/loadgen
N=30000 CONC=50 RUNS=3 SHARDS=0
SCENARIOS="pipelined:4096:1 lockstep:4096:1"
while getopts "m:g:n:c:r:s:S:" o; do
  case $o in m) MTA=$OPTARG;; g) LOADGEN=$OPTARG;; n) N=$OPTARG;; c) CONC=$OPTARG;;
             r) RUNS=$OPTARG;; s) SHARDS=$OPTARG;; S) SCENARIOS=$OPTARG;; *) sed -n 2,25p "$0"; exit 2;; esac
done
export PEER_DIR=${PEER_DIR:-/var/tmp/mta-peers}
SINK_PORT=${SINK_PORT:-2626} MTA_PORT=${MTA_PORT:-2627} MAX_RUN_S=${MAX_RUN_S:-600}
W=$PEER_DIR/accept
mkdir -p "$W"
HZ=$(getconf CLK_TCK)

# shellcheck source=benches/peers/lib.sh
source "$HERE/lib.sh"

[[ -x $MTA && -x $LOADGEN ]] || die "build first: cargo build --release -p mta -p loadgen (or give -m and -g)"
for p in "$SINK_PORT" "$MTA_PORT"; do listening "$p" && die "port $p is in use"; done
if ! command -v smtp-sink >/dev/null || ! command -v smtp-source >/dev/null; then
  "$HERE/postfix.sh" setup >/dev/null || die "installing Postfix's tools failed"
fi
command -v smtp-sink >/dev/null || die "smtp-sink missing (Debian package postfix)"

SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server PEER: starts smtp-sink or mta afresh, sets SERVER_PID and PORT.
start_server() {
  case $1 in
    smtp-sink)
      PORT=$SINK_PORT
      # -u: the user it runs as after binding (root may not keep running it).
      smtp-sink -u postfix "127.0.0.1:$PORT" 1000 >"$W/server.log" 2>&1 &
      SERVER_PID=$! ;;
    mta)
      PORT=$MTA_PORT
      rm -rf "$W/spool" "$W/log"
      cat >"$W/mta.toml" <<CF
hostname = "mta.accept.test"
shards = $SHARDS
[[listeners]]
address = "127.0.0.1:$PORT"
[spool]
path = "$W/spool"
sync = "always"
[smtp]
max_connections_per_ip = 0
[delivery]
hold = true
[log]
dir = "$W/log"
${MTA_EXTRA:-}
CF
      "$MTA" run --config "$W/mta.toml" >"$W/server.log" 2>&1 &
      SERVER_PID=$! ;;
  esac
  wait_port "$PORT" 30 || die "$1 did not listen: $(tail -3 "$W/server.log")"
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=
}

# one_run PEER SOURCE SIZE RCPTS COUNT -> "rate cpu_us_per_msg peak_pss_mib complete"
one_run() {
  local peer=$1 src=$2 size=$3 k=$4 n=$5 t0 t1 c0 c1 rc complete=yes
  start_server "$peer"
  echo 0 >"$W/rss"
  sample_pss "$SERVER_PID" "$W/rss" & local sampler=$!
  c0=$(tree_ticks "$SERVER_PID"); t0=$(now)
  case $src in
    pipelined|lockstep)
      local flags=(); [[ $src == lockstep ]] && flags=(--no-pipelining --per-connection 1)
      timeout "$MAX_RUN_S" "$LOADGEN" send --target "127.0.0.1:$PORT" -c "$CONC" -n "$n" -s "$size" \
        --recipients "$k" --threads 1 --quiet "${flags[@]}" >"$W/load.out" 2>&1 ;;
    smtp-source)
      timeout "$MAX_RUN_S" smtp-source -s "$CONC" -m "$n" -l "$size" -r "$k" -M load.accept.test \
        -f from@load.accept.test -t to@d0.loadgen.test "127.0.0.1:$PORT" >"$W/load.out" 2>&1 ;;
    *) die "unknown load source $src" ;;
  esac
  rc=$?
  t1=$(now); c1=$(tree_ticks "$SERVER_PID")
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  if ((rc != 0)); then
    complete=no
    log "$peer: load source exit $rc: $(tail -2 "$W/load.out" | tr '\n' ' ')"
  fi
  stop_server
  awk -v n="$n" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$HZ" -v rss="$(cat "$W/rss")" -v ok="$complete" \
    'BEGIN { printf "%.1f %.1f %.1f %s\n", n / (t1 - t0), c / hz * 1e6 / n, rss / 1024, ok }'
}

log "host: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(df -T "$PEER_DIR" | awk 'NR==2{print $2}') at $PEER_DIR"
log "smtp-sink on :$SINK_PORT, mta $("$MTA" --version 2>/dev/null | head -1) (shards $SHARDS) on :$MTA_PORT"

echo "# $(date -u +%Y-%m-%dT%H:%MZ) n=$N conc=$CONC runs=$RUNS shards=$SHARDS; rate = messages accepted/s"
run_scenarios smtp-sink msg
report smtp-sink "messages accepted" "smtp-sink" accept.sh
