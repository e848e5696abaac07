# Shared by the side-by-side scripts of this directory (sourced, not run): logging, ports,
# process trees' CPU and memory, the median with the range of a list of numbers, the loop over
# the scenarios and the Markdown report of its runs. Needs HZ (clock ticks per second) and
# MAX_RUN_S (the bound of every loop) set by the caller; run_scenarios and report also use the
# caller's one_run, W, N, RUNS, CONC, SCENARIOS, SHARDS, MTA, HERE, ROOT, PEER_DIR, STARTED
# and ARGS.

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN; }
wait_port() { local i; for ((i = 0; i < $2 * 10; i++)); do listening "$1" && return 0; sleep 0.1; done; return 1; }
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '{ par[$1] = $2 } END {
    want[root] = 1; changed = 1
    while (changed) { changed = 0; for (p in par) if (!(p in want) && (par[p] in want)) { want[p] = 1; changed = 1 } }
    for (p in want) print p }'
}
# CPU ticks of a process tree, children it already reaped included.
tree_ticks() {
  local p t=0 s
  for p in $(descendants "$1"); do
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    s=${s##*) }
    t=$((t + $(awk '{print $12 + $13 + $14 + $15}' <<<"$s")))
  done
  echo "$t"
}
tree_pss_kib() {
  local p t=0 r
  for p in $(descendants "$1"); do
    r=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) && t=$((t + ${r:-0}))
  done
  echo "$t"
}
# sample_pss ROOT OUT: keeps the peak in OUT until killed (bounded by MAX_RUN_S).
sample_pss() {
  local peak=0 r start=$SECONDS
  while ((SECONDS - start < MAX_RUN_S)); do
    r=$(tree_pss_kib "$1"); ((r > peak)) && peak=$r && echo "$peak" >"$2"
    sleep 0.5
  done
}
# machine DIR: the host in one line (cores, CPU, kernel, the file system DIR is on).
machine() {
  echo "$(nproc) cores, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), Linux $(uname -r), $(df -T "$1" | awk 'NR==2{print $2}')"
}
# build MTA: its version and, when this is a git checkout, the commit it was built from.
build() {
  local v c
  v=$("$1" --version 2>/dev/null | head -1)
  c=$(git -C "$ROOT" describe --always --dirty 2>/dev/null) && v="$v, tree $c"
  echo "$v"
}
stats() { # "median min max" of the numbers on stdin
  sort -g | awk '{a[NR] = $1} END { if (NR == 0) { print "NA NA NA"; exit }
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f %.2f %.2f\n", m, a[1], a[NR] }'
}
# run_scenarios PEER PER: each scenario of $SCENARIOS ("SOURCE:SIZE:RECIPIENTS"), $RUNS times,
# PEER then mta, with one_run (defined by the caller: "rate cpu_us peak_pss_mib complete");
# prints each run and the medians per scenario (PER: what the CPU is counted per), and keeps
# the runs in $W/rows.tsv for report.
run_scenarios() {
  local peer=$1 per=$2 sc src size k r ratio rm rlo rhi pm mm
  local pr pc pp pok mr mc mp mok
  : >"$W/rows.tsv"
  for sc in $SCENARIOS; do
    IFS=: read -r src size k <<<"$sc"
    local ratios=() peer_rates=() mta_rates=()
    for ((r = 1; r <= RUNS; r++)); do
      read -r pr pc pp pok < <(one_run "$peer" "$src" "$size" "$k" "$N")
      read -r mr mc mp mok < <(one_run mta "$src" "$size" "$k" "$N")
      ratio=$(awk -v a="$mr" -v b="$pr" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
      ratios+=("$ratio") peer_rates+=("$pr") mta_rates+=("$mr")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$r" "$pr" "$pc" "$pp" "$pok" \
        "$mr" "$mc" "$mp" "$mok" >>"$W/rows.tsv"
      echo "$src size=$size rcpts=$k run $r: $peer $pr/s (${pc} us/$per, PSS ${pp} MiB, complete=$pok)  mta $mr/s (${mc} us/$per, PSS ${mp} MiB, complete=$mok)  ratio ${ratio}x"
    done
    read -r rm rlo rhi < <(printf '%s\n' "${ratios[@]}" | stats)
    read -r pm _ _ < <(printf '%s\n' "${peer_rates[@]}" | stats)
    read -r mm _ _ < <(printf '%s\n' "${mta_rates[@]}" | stats)
    echo "== $src size=$size rcpts=$k conc=$CONC n=$N: $peer $pm/s, mta $mm/s (medians): ratio ${rm}x (runs ${rlo}-${rhi}x)"
  done
}
# report NAME UNIT PEER_VERSION SCRIPT: the runs of run_scenarios again as Markdown, one table
# per scenario (what docs/BENCHMARKS.md quotes), headed by the time span since $STARTED, the
# machine, the build, mta's shards ($SHARDS, 0 = one per core), the peer and the command ($ARGS).
report() {
  local shards="$SHARDS shard(s)"
  ((SHARDS == 0)) && shards="$(nproc) shards (the default)"
  echo
  python3 "$HERE/report.py" "$1" "$2" "$W/rows.tsv" \
    "$STARTED-$(date -u +%H:%M) UTC; $(machine "$PEER_DIR"); $(build "$MTA"), $shards; $3; \`benches/peers/$4 $ARGS\`"
}
