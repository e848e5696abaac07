#!/usr/bin/env bash
# Postfix and mta side by side on loopback: the same load source, message size, recipients and
# concurrency against each, runs alternating, relayed to the same sink; prints each run and, per
# scenario, the ratio mta / Postfix of recipients delivered per second with its spread.
#
# usage: benches/peers/compare.sh [-m MTA] [-g LOADGEN] [-n N] [-c CONC] [-r RUNS] [-d DOMAINS]
#                                 [-s SHARDS] [-S "SCENARIOS"]
#   SCENARIO = SOURCE:SIZE:RECIPIENTS, SOURCE one of
#     pipelined    loadgen send, PIPELINING, connections reused
#     lockstep     loadgen send --no-pipelining --per-connection 1 (a new connection per message)
#     smtp-source  Postfix's smtp-source (lock-step, a new connection per message)
#   defaults: -m target/release/mta -g target/release/loadgen -n 10000 -c 50 -r 3 -d 500
#     -s 0 (mta's default: one shard per core)
#     -S "pipelined:4096:1 lockstep:4096:1 smtp-source:4096:1 pipelined:102400:1 pipelined:4096:50"
#
# Postfix is a private, durable, tuned instance (benches/peers/postfix.sh: installed from Debian
# packages when missing; the system's own Postfix is left alone). mta runs with its default
# configuration plus a listener, relay_host, spool (sync = "always") and log directory, and no
# per-address connection limit (Postfix's is off too). The sink is `loadgen sink`, started
# afresh for each run; it stops when it has counted every recipient. Delivered rate = recipients
# / (sink done - load start). CPU = the server's process tree (Postfix: master, its children and
# the children it reaped). Peak memory = the tree's proportional set size (PSS: shared pages
# divided among the processes that share them), sampled twice a second.
# Every target is 127.0.0.1; every run is bounded by MAX_RUN_S (default 600 s).
# Environment: PEER_DIR (default /var/tmp/mta-peers: Postfix's queue and mta's spool, on a disk),
# PF_PORT (2625), SINK_PORT (2626), MTA_PORT (2627), MTA_EXTRA (TOML appended to mta's config).
set -uo pipefail
ARGS=$( (($#)) && printf '%q ' "$@") STARTED=$(date -u '+%Y-%m-%d %H:%M')
ARGS=${ARGS% }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MTA=$ROOT/target/release/mta LOADGEN=$ROOT/target/release/loadgen
N=10000 CONC=50 RUNS=3 DOMAINS=500 SHARDS=0
SCENARIOS="pipelined:4096:1 lockstep:4096:1 smtp-source:4096:1 pipelined:102400:1 pipelined:4096:50"
while getopts "m:g:n:c:r:d:s:S:" o; do
  case $o in m) MTA=$OPTARG;; g) LOADGEN=$OPTARG;; n) N=$OPTARG;; c) CONC=$OPTARG;; r) RUNS=$OPTARG;;
             d) DOMAINS=$OPTARG;; s) SHARDS=$OPTARG;; S) SCENARIOS=$OPTARG;; *) sed -n 2,27p "$0"; exit 2;; esac
done
export PEER_DIR=${PEER_DIR:-/var/tmp/mta-peers}
export PF_PORT=${PF_PORT:-2625} SINK_PORT=${SINK_PORT:-2626}
MTA_PORT=${MTA_PORT:-2627} MAX_RUN_S=${MAX_RUN_S:-600}
W=$PEER_DIR/work
mkdir -p "$W"
HZ=$(getconf CLK_TCK)

# shellcheck source=benches/peers/lib.sh
source "$HERE/lib.sh"

[[ -x $MTA && -x $LOADGEN ]] || die "build first: cargo build --release -p mta -p loadgen (or give -m and -g)"
for p in "$PF_PORT" "$SINK_PORT" "$MTA_PORT"; do listening "$p" && die "port $p is in use"; done
"$HERE/postfix.sh" setup >/dev/null || die "Postfix setup failed"
command -v smtp-source >/dev/null || die "smtp-source missing (Debian package postfix)"

MTA_PID=
cleanup() {
  "$HERE/postfix.sh" stop
  if [[ -n $MTA_PID ]]; then kill "$MTA_PID" 2>/dev/null; wait "$MTA_PID" 2>/dev/null; fi
  [[ -n ${SINK_PID:-} ]] && kill "$SINK_PID" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mta: default configuration, routed to the sink.
rm -rf "$PEER_DIR/mta" && mkdir -p "$PEER_DIR/mta"
cat >"$PEER_DIR/mta/mta.toml" <<CF
hostname = "mta.peer.test"
shards = $SHARDS
[[listeners]]
address = "127.0.0.1:$MTA_PORT"
[spool]
path = "$PEER_DIR/mta/spool"
sync = "always"
[smtp]
max_connections_per_ip = 0
[delivery]
relay_host = "127.0.0.1:$SINK_PORT"
[log]
dir = "$PEER_DIR/mta/log"
[admin]
listen = "127.0.0.1:0"
${MTA_EXTRA:-}
CF
"$MTA" run --config "$PEER_DIR/mta/mta.toml" >"$W/mta.log" 2>&1 &
MTA_PID=$!
wait_port "$MTA_PORT" 30 || die "mta did not listen: $(tail -3 "$W/mta.log")"
"$HERE/postfix.sh" start || die "Postfix did not start"
wait_port "$PF_PORT" 30 || die "Postfix did not listen on $PF_PORT"
PF_PID=$("$HERE/postfix.sh" pid)
log "host: $(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), kernel $(uname -r), $(df -T "$PEER_DIR" | awk 'NR==2{print $2}') at $PEER_DIR"
log "postfix $(postconf -d -h mail_version) (pid $PF_PID) on :$PF_PORT, mta $("$MTA" --version 2>/dev/null | head -1) (pid $MTA_PID) on :$MTA_PORT, sink on :$SINK_PORT"

# one_run PEER SOURCE SIZE RCPTS COUNT -> "rate cpu_us_per_rcpt peak_pss_mib complete"
one_run() {
  local peer=$1 src=$2 size=$3 k=$4 n=$5 port pid
  case $peer in postfix) port=$PF_PORT pid=$PF_PID;; mta) port=$MTA_PORT pid=$MTA_PID;; esac
  local want=$((n * k)) t0 t2 c0 c1 rc complete=yes
  "$LOADGEN" sink --listen "127.0.0.1:$SINK_PORT" --threads 1 --count-recipients "$want" \
    --json "$W/sink.json" >/dev/null 2>"$W/sink.err" &
  SINK_PID=$!
  wait_port "$SINK_PORT" 10 || die "sink did not start: $(cat "$W/sink.err")"
  echo 0 >"$W/rss"
  sample_pss "$pid" "$W/rss" & local sampler=$!
  c0=$(tree_ticks "$pid"); t0=$(now)
  case $src in
    pipelined|lockstep)
      local flags=(); [[ $src == lockstep ]] && flags=(--no-pipelining --per-connection 1)
      timeout "$MAX_RUN_S" "$LOADGEN" send --target "127.0.0.1:$port" -c "$CONC" -n "$n" -s "$size" \
        --recipients "$k" --generated-domains "$DOMAINS" --threads 1 --quiet "${flags[@]}" >"$W/load.out" 2>&1 ;;
    smtp-source)
      timeout "$MAX_RUN_S" smtp-source -s "$CONC" -m "$n" -l "$size" -r "$k" -M load.peer.test \
        -f from@load.peer.test -t to@d0.loadgen.test "127.0.0.1:$port" >"$W/load.out" 2>&1 ;;
    *) die "unknown load source $src" ;;
  esac
  rc=$?
  ((rc == 0)) || log "$peer: load source exit $rc: $(tail -2 "$W/load.out" | tr '\n' ' ')"
  local i
  for ((i = 0; i < MAX_RUN_S * 20; i++)); do kill -0 "$SINK_PID" 2>/dev/null || break; sleep 0.05; done
  t2=$(now); c1=$(tree_ticks "$pid")
  if kill -0 "$SINK_PID" 2>/dev/null; then complete=no; kill "$SINK_PID"; fi
  wait "$SINK_PID" 2>/dev/null; SINK_PID=
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  local got; got=$(python3 -c "import json; print(json.load(open('$W/sink.json'))['recipients'])" 2>/dev/null || echo 0)
  ((got >= want)) || complete=no
  awk -v g="$got" -v t0="$t0" -v t2="$t2" -v c="$((c1 - c0))" -v hz="$HZ" -v rss="$(cat "$W/rss")" -v ok="$complete" \
    'BEGIN { printf "%.1f %.1f %.1f %s\n", g / (t2 - t0), c / hz * 1e6 / (g > 0 ? g : 1), rss / 1024, ok }'
}

# Warm-up: each server's processes and connections, proven end to end.
for peer in postfix mta; do
  read -r rate _ _ ok < <(one_run "$peer" pipelined 4096 1 1000)
  [[ $ok == yes ]] || die "warm-up through $peer did not complete"
  log "warm-up through $peer: 1000 messages delivered ($rate/s)"
done

echo "# $(date -u +%Y-%m-%dT%H:%MZ) n=$N conc=$CONC runs=$RUNS domains=$DOMAINS; rate = recipients delivered/s"
run_scenarios postfix rcpt
report Postfix "recipients delivered" "Postfix $(postconf -d -h mail_version)" compare.sh
