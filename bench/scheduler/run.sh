#!/usr/bin/env bash
# bench/scheduler/run.sh: the planner's time per round and an observe round's memory.
#
# Usage: bench/scheduler/run.sh [--no-build] [--rounds R] [--steady] [--observe]
#   --no-build  use target/release/examples/plan_bench as it is
#   --rounds R  timed rounds per plan run (default 10)
#   --steady    also 160 rounds at 1,000 x 10,000, so the 300 s scale-down windows
#               fill (150 rounds of 2 s) and Memory reaches its steady size
#   --observe   also observe's watches (scheduler/tests/watch.rs, ignored tests): the
#               heap of the watch tables per pod and node, and the requests and bytes a
#               round costs at a real stub, listing vs watching (a testbed, ~2 min)
#
# Runs scheduler/examples/plan_bench pinned to core 0 (taskset -c 0): the planner at
# 100 clusters x 1,000 policies and at 1,000 x 10,000 (the target: <= 1 s a round), then
# the list memory of one cluster (1,000 nodes, 10,000 pods; and 100 / 1,000 to check
# it scales linearly) extrapolated to 100 clusters (the target: <= 1 GiB).
# Writes bench/out/scheduler-<UTC time>.md (report) and .log (raw output); prints the
# report. See bench/scheduler/README.md.
set -euo pipefail

ARGS="$*"
BUILD=1 ROUNDS=10 STEADY=0 OBSERVE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --rounds) shift; ROUNDS=${1:?--rounds needs a value} ;;
    --steady) STEADY=1 ;;
    --observe) OBSERVE=1 ;;
    -h|--help) sed -n 2,19p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$ROUNDS" in ''|*[!0-9]*) echo "--rounds must be a number" >&2; exit 2 ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUTDIR="$ROOT/bench/out"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
REPORT="$OUTDIR/scheduler-$STAMP.md"
LOG="$OUTDIR/scheduler-$STAMP.log"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/plan_bench"
mkdir -p "$OUTDIR"

for t in taskset timeout awk; do
  command -v "$t" >/dev/null || { echo "bench/scheduler: $t not found (util-linux, coreutils, gawk)" >&2; exit 1; }
done

# What is built: the commit and any uncommitted edits in scheduler/ (others may be
# editing the planner while this runs; the build takes the working tree as it is).
HEAD_AT_BUILD=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')
DIRTY=$(cd "$ROOT" && git status --short -- scheduler 2>/dev/null | tr '\n' ' ' || true)
if [ "$BUILD" = 1 ]; then
  (cd "$ROOT" && timeout 3600 cargo build --release -j2 -p causeway-scheduler --example plan_bench)
fi
[ -x "$BIN" ] || { echo "bench/scheduler: $BIN missing (run without --no-build)" >&2; exit 1; }

: >"$LOG"
# run TIMEOUT_SECONDS ARGS...: one pinned, bounded run; output to the log and the terminal.
run() {
  local secs=$1; shift
  echo "## plan_bench $* (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"
  timeout "$secs" taskset -c 0 "$BIN" "$@" 2>&1 | tee -a "$LOG"
}

run 300 --mode plan --clusters 100 --policies 1000 --rounds "$ROUNDS"
run 1800 --mode plan --clusters 1000 --policies 10000 --rounds "$ROUNDS"
if [ "$STEADY" = 1 ]; then
  run 3600 --mode plan --clusters 1000 --policies 10000 --rounds 160
fi
# 100 clusters of 10 nodes / 100 pods (the target read as fleet totals), of 100 / 1,000
# (checks that the cost per object does not depend on the list's length), and of
# 1,000 / 10,000 (the target read per cluster).
run 300 --mode lists --nodes 10 --pods 100 --target-clusters 100
run 300 --mode lists --nodes 100 --pods 1000 --target-clusters 100
run 300 --mode lists --nodes 1000 --pods 10000 --target-clusters 100
if [ "$OBSERVE" = 1 ]; then
  # Debug test build (the tables' sizes do not depend on optimisation); one thread, so the
  # counting allocator sees one test at a time.
  echo "## cargo test --test watch -- --ignored (load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"
  (cd "$ROOT" && timeout 1200 cargo test -j2 -p causeway-scheduler --test watch -- \
    --ignored --test-threads 1 --nocapture 2>&1) | tee -a "$LOG"
fi

# field KEY: the value of KEY=... in the current RESULT line (awk helper).
AWK_FIELD='function f(k,  i, kv) { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) return kv[2] } return "" }'

{
  echo "# bench/scheduler, $STAMP"
  echo
  echo "Command: \`bench/scheduler/run.sh${ARGS:+ $ARGS}\`, built at $HEAD_AT_BUILD$([ "$BUILD" = 1 ] || echo " (--no-build: the binary may be older)")" \
    "on $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), pinned to core 0."
  echo "Raw output: \`bench/out/$(basename "$LOG")\`."
  [ -z "$DIRTY" ] || echo "Uncommitted in scheduler/ when the build started: $DIRTY"
  echo
  echo "## Planner: plan::compute per round (target: 1,000 clusters x 10,000 policies <= 1 s on one core)"
  echo
  echo "| clusters | policies | rounds | first round ms | median ms (wall) | median ms (thread CPU) | max ms | Memory MiB | Plan MiB | Observed MiB | one compute leaves MiB | peak RSS MiB |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  grep '^RESULT kind=plan ' "$LOG" | awk "$AWK_FIELD"' {
    printf "| %s | %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f |\n",
      f("clusters"), f("policies"), f("rounds"), f("first_ms"), f("median_wall_ms"), f("median_cpu_ms"),
      f("max_ms"), f("memory_heap_bytes") / 1048576, f("plan_heap_bytes") / 1048576,
      f("observed_heap_bytes") / 1048576, f("compute_left_bytes") / 1048576, f("vmhwm_bytes") / 1048576 }'
  echo
  echo "Observed per cluster / per workload (heap + the struct, measured by cloning under a counting allocator):"
  echo
  grep '^RESULT kind=observed ' "$LOG" | awk '!seen[$0]++' | awk "$AWK_FIELD"' {
    printf "* %s clusters, %s workloads: %.0f B per cluster, %.0f B per workload\n",
      f("clusters"), f("workloads"), f("per_cluster_bytes"), f("per_workload_bytes") }'
  echo
  echo "## Lists of one observe round (kube Api::list: the body, then ObjectList<K>)"
  echo
  echo "| what | items | body MiB | B/item (JSON) | heap MiB | B/item (heap) | peak heap while parsing MiB | peak RSS rise MiB | parse ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  grep '^RESULT kind=list ' "$LOG" | awk "$AWK_FIELD"' {
    n = f("items"); if (n == 0) n = 1
    printf "| %s | %s | %.1f | %.0f | %.1f | %.0f | %.1f | %.1f | %s |\n",
      f("what"), f("items"), f("body_bytes") / 1048576, f("body_bytes") / n, f("heap_bytes") / 1048576,
      f("heap_bytes") / n, f("heap_peak_bytes") / 1048576, f("rss_peak_bytes") / 1048576, f("parse_ms") }'
  echo
  echo "## Extrapolation: every cluster's lists in memory at once (target <= 1 GiB for 100 clusters x 1,000 nodes x 10,000 pods)"
  echo
  grep '^RESULT kind=extrapolation ' "$LOG" | awk "$AWK_FIELD"' {
    printf "* %s clusters x %s nodes x %s pods, %s types: lists held %.1f MiB a cluster, %.2f GiB in all; with both bodies in flight twice (kube request_text) %.2f GiB\n",
      f("target_clusters"), f("nodes_per_cluster"), f("pods_per_cluster"), f("types"), f("held_per_cluster_bytes") / 1048576,
      f("held_total_bytes") / 1073741824, f("upper_total_bytes") / 1073741824 }'
  grep '^RESULT kind=paged ' "$LOG" | awk "$AWK_FIELD"' {
    printf "* %s clusters x %s nodes x %s pods, %s types, paged by %s and folded per page: %.1f MiB a cluster in flight, %.2f GiB in all\n",
      f("target_clusters"), f("nodes_per_cluster"), f("pods_per_cluster"), f("types"), f("page"),
      f("per_cluster_bytes") / 1048576, f("total_bytes") / 1073741824 }'
  if [ "$OBSERVE" = 1 ]; then
    echo
    echo "## Observe by watches (scheduler/tests/watch.rs)"
    echo
    grep -o 'RESULT kind=watch-tables .*' "$LOG" | awk "$AWK_FIELD"' {
      printf "* tables: %s pods in %s groups, %.0f B a pod; %s nodes, %.0f B a node; 100 clusters x (10,000 pods + 1,000 nodes): %.0f MiB\n",
        f("pods"), f("groups"), f("per_pod_bytes"), f("nodes"), f("per_node_bytes"), f("fleet_100_clusters_mib") }'
    grep -o 'RESULT kind=round-requests .*' "$LOG" | sed 's/^RESULT kind=round-requests /* a round at the stub: /'
  fi
} >"$REPORT"

cat "$REPORT"
echo
echo "report: $REPORT"
