#!/usr/bin/env bash
# bench/dns/run.sh: dnsperf against causeway, Knot and gdnsd serving the same zone, in the same run.
#
# Usage: bench/dns/run.sh [--quick] [--no-build] [--keep] [--knot-only] [--only gslb] [--runs N]
#   --quick     ~5 minutes: 1 short run per point instead of 3 x 15 s (full: ~18 minutes)
#   --no-build  use target/release/causeway as it is
#   --keep      keep the work directory (configs, logs, raw dnsperf output)
#   --knot-only only the Knot half (checks the bench itself against peer-baselines.md)
#   --only gslb only the GSLB comparison: unpinned max rate for gslb-ecs and miss-ecs, the
#               CPU-per-answer rounds (static, gslb-ecs, miss-ecs); no pinned/latency,
#               zero-loss, memory or signed runs (quick ~2 minutes, full ~10 minutes)
#   --runs N    N runs per max-rate and CPU point instead of 3 (quick: 1); the median is shown
#
# Method: /work/shared/peer-baselines.md §1 (same zone, same query mix, same dnsperf flags).
# Writes a markdown report to bench/out/dns-<UTC date>.md and prints it. See bench/dns/README.md.
set -euo pipefail

QUICK=0 BUILD=1 KEEP=0 KNOT_ONLY=0 ONLY=all RUNS=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --knot-only) KNOT_ONLY=1; BUILD=0 ;;
    --only)
      [ "${2:-}" = gslb ] || { echo "--only takes: gslb" >&2; exit 2; }
      ONLY=gslb; shift ;;
    --runs)
      case "${2:-}" in [1-9] | [1-9][0-9]) RUNS=$2 ;; *) echo "--runs takes 1..99" >&2; exit 2 ;; esac
      shift ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUTDIR="$ROOT/bench/out"
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
REPORT="$OUTDIR/dns-$STAMP.md"
WORK=$(mktemp -d /tmp/causeway-dnsbench.XXXXXX)
mkdir -p "$OUTDIR"

# Addresses of this bench only (127.0.54.0/24), non-default ports.
KNOT_ADDR=127.0.54.1 KNOT_PORT=5301
CW_ADDR=127.0.54.2 CW_PORT=5302 CW_API=127.0.54.2:5380
MEM_ADDR=127.0.54.3 MEM_PORT=5303 MEM_API=127.0.54.3:5381
GD_ADDR=127.0.54.4 GD_PORT=5304                              # gdnsd (both GSLB names)
MISS_ADDR=127.0.54.5 MISS_PORT=5305 MISS_API=127.0.54.5:5382 # causeway, 100k-prefix map

if [ "$QUICK" = 1 ]; then
  MAX_RUNS=1 MAX_SECS=5 FIX_SECS=5
else
  MAX_RUNS=3 MAX_SECS=15 FIX_SECS=10
fi
[ -z "$RUNS" ] || MAX_RUNS=$RUNS
CPU_RATE=50000   # fixed rate for CPU µs per query (peer-baselines: 50k, unpinned)
LAT_RATE=20000   # fixed rate for latency percentiles (peer-baselines: 20k, pinned)
MEM_NAMES=10000 MEM_PREFIXES=100000

die() { echo "bench/dns: $*" >&2; exit 1; }
for t in knotd kdig dnsperf python3 taskset timeout curl; do
  command -v "$t" >/dev/null || die "$t not found: apt-get install -y knot knot-dnsutils dnsperf python3 util-linux coreutils curl"
done
# gdnsd (the peer for computed GSLB answers) is optional: without it its rows are left out.
GDNSD=0
if [ "$KNOT_ONLY" = 0 ]; then
  if command -v gdnsd >/dev/null; then GDNSD=1; else
    echo "bench/dns: gdnsd not found (apt-get install -y gdnsd): no gdnsd rows" >&2
  fi
fi

PIDS=()
PROBED=0
cleanup() {
  [ "$PROBED" = 0 ] || perf probe -q -d 'probe_cwprobed:*' 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$KEEP" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }

# CPU ticks (utime+stime, all threads) of PID and its descendants.
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
    [ -r "/proc/$p/stat" ] || continue
    # fields after "(comm)": state is $1, utime $12, stime $13
    total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}
# UDP receive-buffer drops of the whole host (kernel counter, /proc/net/snmp).
rcvbuf_errors() { awk '/^Udp:/ {n++; if (n == 1) for (i = 1; i <= NF; i++) h[$i] = i; else print $h["RcvbufErrors"]}' /proc/net/snmp; }
# Host CPU ticks: "busy total" over all CPUs (/proc/stat; busy excludes idle and iowait).
host_ticks() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat; }
# CPU ticks used so far by this shell's finished children (bash `times`, 2nd line; it
# must run in this shell, not in a $(...) subshell, hence the file). Sets CHILD_TICKS.
child_ticks() {
  times >"$WORK/times.txt"
  CHILD_TICKS=$(awk -v hz="$HZ" 'NR == 2 {
    for (i = 1; i <= 2; i++) { split($i, t, "m"); sub("s", "", t[2]); s += t[1] * 60 + t[2] }
    printf "%d", s * hz }' "$WORK/times.txt")
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build + generate
CW_BIN="$ROOT/target/release/causeway"
if [ "$BUILD" = 1 ]; then
  echo "== cargo build --release -j2 (load $(load))" >&2
  (cd "$ROOT" && timeout 1800 cargo build --release -j2 --bin causeway) || die "release build failed"
fi
[ "$KNOT_ONLY" = 1 ] || [ -x "$CW_BIN" ] || die "$CW_BIN missing (drop --no-build)"

python3 "$HERE/gen.py" static "$WORK"
python3 "$HERE/gen.py" gslb "$WORK"
[ "$ONLY" = gslb ] || python3 "$HERE/gen.py" memory "$WORK" "$MEM_NAMES" "$MEM_PREFIXES"
# Miss-heavy: one GSLB name over MEM_PREFIXES /24s, 200k queries (each /24 twice); the
# expected reply-cache miss fraction is simulated for one fixed-rate run's query count.
[ "$KNOT_ONLY" = 1 ] || python3 "$HERE/gen.py" miss "$WORK" "$MEM_PREFIXES" $((CPU_RATE * FIX_SECS))
[ "$GDNSD" = 0 ] || python3 "$HERE/gen.py" gdnsd "$WORK" $GD_ADDR $GD_PORT "$MEM_PREFIXES"

# ---------------------------------------------------------------- servers
mkdir -p "$WORK/knot"
cat >"$WORK/knot/knot.conf" <<EOF
server:
  listen: $KNOT_ADDR@$KNOT_PORT
  udp-workers: 2
  tcp-workers: 1
  background-workers: 1
  rundir: $WORK/knot
log:
  - target: stderr
    any: warning
database:
  storage: $WORK/knot
template:
  - id: default
    storage: $WORK
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: svc.example
    file: svc.example.zone
EOF

# wait_answer ADDR PORT NAME SECS: until kdig gets an answer (NOERROR with data).
wait_answer() {
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    if kdig +time=1 +retry=0 @"$1" -p "$2" "$3" A 2>/dev/null | grep -q "status: NOERROR" &&
       kdig +short +time=1 +retry=0 @"$1" -p "$2" "$3" A 2>/dev/null | grep -q .; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

echo "== starting knotd on $KNOT_ADDR:$KNOT_PORT" >&2
knotd -c "$WORK/knot/knot.conf" 2>"$WORK/knot.log" &
KNOT_PID=$!; PIDS+=("$KNOT_PID")
wait_answer $KNOT_ADDR $KNOT_PORT www.svc.example. 20 || die "knotd does not answer; see $WORK/knot.log"

# start_causeway CONFIG ADDR PORT API LOG: sets STARTED_PID (a child of this shell).
start_causeway() {
  "$CW_BIN" --log warn,causeway=info,causeway_dns=info dns --config "$1" --listen "$2:$3" \
    --api-listen "$4" >"$5" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
}
if [ "$KNOT_ONLY" = 0 ]; then
echo "== starting causeway dns on $CW_ADDR:$CW_PORT" >&2
start_causeway "$WORK/causeway.yaml" $CW_ADDR $CW_PORT $CW_API "$WORK/causeway.log"
CW_PID=$STARTED_PID
wait_answer $CW_ADDR $CW_PORT www.svc.example. 30 ||
  die "causeway does not answer on $CW_ADDR:$CW_PORT; its log:
$(tail -20 "$WORK/causeway.log")"

# Both must give the same static answers (and causeway a GSLB answer) before any load.
for q in www.svc.example. h0000.svc.example. h0999.svc.example.; do
  k=$(kdig +short @$KNOT_ADDR -p $KNOT_PORT "$q" A); c=$(kdig +short @$CW_ADDR -p $CW_PORT "$q" A)
  [ "$k" = "$c" ] || die "answers differ for $q: knot '$k' causeway '$c'"
done
for s in "$KNOT_ADDR $KNOT_PORT" "$CW_ADDR $CW_PORT"; do
  set -- $s
  kdig @"$1" -p "$2" nx1.svc.example. A | grep -q "status: NXDOMAIN" || die "$1:$2: nx1 is not NXDOMAIN"
done
GSLB_CHECK=$(kdig +short @$CW_ADDR -p $CW_PORT +subnet=10.0.0.0/24 app.svc.example. A || true)
[ -n "$GSLB_CHECK" ] || die "causeway gives no answer for app.svc.example. with ECS"

# causeway with the 100k-prefix map and the one GSLB name of the miss-heavy file.
echo "== starting causeway dns (miss-heavy config) on $MISS_ADDR:$MISS_PORT" >&2
start_causeway "$WORK/causeway-miss.yaml" $MISS_ADDR $MISS_PORT $MISS_API "$WORK/causeway-miss.log"
MISS_PID=$STARTED_PID
wait_answer $MISS_ADDR $MISS_PORT www.svc.example. 120 ||
  die "causeway (miss-heavy config) does not answer; its log:
$(tail -20 "$WORK/causeway-miss.log")"

if [ "$GDNSD" = 1 ]; then
  echo "== starting gdnsd on $GD_ADDR:$GD_PORT" >&2
  gdnsd -c "$WORK/gdnsd" start >"$WORK/gdnsd.log" 2>&1 &
  GD_PID=$!; PIDS+=("$GD_PID")
  wait_answer $GD_ADDR $GD_PORT www.svc.example. 60 || die "gdnsd does not answer; its log:
$(tail -20 "$WORK/gdnsd.log")"
  for q in www.svc.example. h0000.svc.example. h0999.svc.example.; do
    k=$(kdig +short @$KNOT_ADDR -p $KNOT_PORT "$q" A); g=$(kdig +short @$GD_ADDR -p $GD_PORT "$q" A)
    [ "$k" = "$g" ] || die "answers differ for $q: knot '$k' gdnsd '$g'"
  done
  kdig @$GD_ADDR -p $GD_PORT nx1.svc.example. A | grep -q "status: NXDOMAIN" || die "gdnsd: nx1 is not NXDOMAIN"
fi

# The same computed answer from both GSLB servers: sampled subnets of each map (and one
# outside every prefix) with the A record the latency order gives (gen.py expected.tsv).
CHECKED=0
while IFS=$'\t' read -r subnet name want; do
  case "$name" in app.*) a=$CW_ADDR p=$CW_PORT ;; *) a=$MISS_ADDR p=$MISS_PORT ;; esac
  c=$(kdig +short +time=2 @"$a" -p "$p" +subnet="$subnet" "$name" A || true)
  [ "$c" = "$want" ] || die "causeway answers '$c' for $name from $subnet, expected '$want'"
  if [ "$GDNSD" = 1 ]; then
    g=$(kdig +short +time=2 @$GD_ADDR -p $GD_PORT +subnet="$subnet" "$name" A || true)
    [ "$g" = "$want" ] || die "gdnsd answers '$g' for $name from $subnet, expected '$want' (causeway: '$c')"
  fi
  CHECKED=$((CHECKED + 1))
done <"$WORK/expected.tsv"
echo "== GSLB answers agree for $CHECKED sampled (name, subnet) pairs" >&2

fi

# ---------------------------------------------------------------- measuring
RESULTS="$WORK/results.tsv"   # one line per run, see header
printf 'scenario\tserver\tmode\trate\tqps\tsent\tcompleted\tlost\trcvbuf_errors\tavg_ms\tp50_ms\tp99_ms\tcpu_us_per_q\trss_mib\tload\tother_cores\n' >"$RESULTS"

# measure SCENARIO SERVER PID ADDR PORT DATAFILE MODE RATE SECS [PASSES]
#   PASSES: dnsperf -n, passes over the data file (default 1000: the time limit ends the run)
#   MODE: unpinned | pinned | latency (pinned, -v for percentiles) | steady (unpinned, a
#         window of 100 outstanding queries so that dnsperf's opening burst does not
#         overflow a default-sized socket receive buffer; for the zero-loss runs)
#   RATE: max or a number of queries per second
measure() {
  local scen=$1 name=$2 pid=$3 addr=$4 port=$5 data=$6 mode=$7 rate=$8 secs=$9 passes=${10:-1000}
  local out="$WORK/dnsperf-$scen-$name-$mode-$rate-$RANDOM.txt" fmt=() pin=() args=()
  case "$data" in *.bin) fmt=(-B) ;; esac
  case "$mode" in
    unpinned) args=(-c 4 -T 2 -q 500) ;;
    steady) args=(-c 4 -T 2 -q 100) ;;
    pinned | latency) pin=(taskset -c 0); args=(-c 4 -T 1 -q 200) ;;
  esac
  [ "$mode" = latency ] && args+=(-v)
  [ "$rate" != max ] && args+=(-Q "$rate")
  local l0 t0 t1
  local r0 r1
  local h0 h1 c0 c1
  l0=$(load); t0=$(cpu_ticks "$pid"); r0=$(rcvbuf_errors); h0=$(host_ticks); child_ticks; c0=$CHILD_TICKS
  timeout $((secs + 30)) "${pin[@]}" dnsperf -s "$addr" -p "$port" -d "$data" "${fmt[@]}" \
    -l "$secs" -n "$passes" "${args[@]}" >"$out" 2>&1 || echo "dnsperf exit $? ($out)" >&2
  t1=$(cpu_ticks "$pid"); r1=$(rcvbuf_errors); h1=$(host_ticks); child_ticks; c1=$CHILD_TICKS
  # Cores used by everything except this server and dnsperf during the run (other
  # work on the machine; also kernel threads such as ksoftirqd).
  local other
  other=$(awk -v h0="$h0" -v h1="$h1" -v s=$((t1 - t0)) -v c=$((c1 - c0)) -v n="$(nproc)" 'BEGIN {
    split(h0, a, " "); split(h1, b, " "); wall = (b[2] - a[2]) / n
    if (wall <= 0) { print "-"; exit } o = (b[1] - a[1] - s - c) / wall; if (o < 0) o = 0; printf "%.2f", o }')
  local sent completed lost qps avg p50=- p99=-
  sent=$(awk '/Queries sent:/ {print $3}' "$out")
  completed=$(awk '/Queries completed:/ {print $3}' "$out")
  lost=$(awk '/Queries lost:/ {print $3}' "$out")
  qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$out")
  avg=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' "$out")
  if [ "$mode" = latency ]; then
    read -r p50 p99 < <(awk '/^> / {print $NF}' "$out" | sort -g |
      awk 'function q(f,  i) { i = int(NR * f); if (i < 1) i = 1; return a[i] * 1000 }
           {a[NR] = $1} END {if (NR) printf "%.3f %.3f\n", q(0.50), q(0.99); else print "- -"}')
  fi
  local cpu=-
  [ "${completed:-0}" -gt 0 ] && cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$completed" 'BEGIN {printf "%.2f", d / hz * 1e6 / n}')
  local rss
  rss=$(awk -v k="$(rss_kib "$pid")" 'BEGIN {printf "%.1f", k / 1024}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$name" "$mode" "$rate" \
    "${qps:--}" "${sent:--}" "${completed:--}" "${lost:--}" "$((r1 - r0))" "${avg:--}" "$p50" "$p99" "$cpu" "$rss" \
    "$l0" "$other" >>"$RESULTS"
  echo "   $scen $name $mode rate=$rate: qps=${qps:--} lost=${lost:--} rcvbuf_err=$((r1 - r0)) avg=${avg:--}ms p99=${p99}ms cpu=${cpu}us/q rss=${rss}MiB load=$l0 other_cores=$other" >&2
}

# Median of the max-rate runs: the line of RESULTS whose qps is the median for (scen, server).
pin_server() { taskset -a -p -c "$2" "$1" >/dev/null; }

# cold_cache PID API: empties causeway's reply caches before a miss-ecs run. Otherwise a
# run would start with the previous run's tail in the caches: dnsperf starts every run at
# the top of the file, which the previous run has just sent (a 5 s run sends 1.25 passes),
# and the measured miss fraction drops to 80-85 %. SIGHUP reloads the config (docs/dns.md),
# the new snapshot generation makes every worker drop its cache on its next query
# (dns/src/handler.rs); wait until /metrics shows the new generation, then 1 s for the
# reload thread to finish, so the reload's CPU falls before the run. The simulated
# fraction (gen.py) also starts from empty caches.
cold_cache() {
  local g0 g i
  gen_of() { curl -s --max-time 2 "http://$1/metrics" | awk '/^causeway_dns_snapshot_generation / {print $2}'; }
  g0=$(gen_of "$2")
  [ -n "$g0" ] || die "no causeway_dns_snapshot_generation at http://$2/metrics"
  kill -HUP "$1"
  for ((i = 0; i < 600; i++)); do
    g=$(gen_of "$2")
    if [ -n "$g" ] && [ "$g" -gt "$g0" ]; then sleep 1; return 0; fi
    sleep 0.1
  done
  die "causeway $1 did not reload within 60 s after SIGHUP"
}

# servers_for SCEN: sets SERVERS to "name pid addr port" of every server of SCEN (for
# miss-ecs, "causeway" is the instance with the 100k-prefix map).
servers_for() {
  SERVERS=("knot $KNOT_PID $KNOT_ADDR $KNOT_PORT")
  [ "$KNOT_ONLY" = 1 ] && return
  if [ "$1" = miss-ecs ]; then
    SERVERS+=("causeway $MISS_PID $MISS_ADDR $MISS_PORT")
  else
    SERVERS+=("causeway $CW_PID $CW_ADDR $CW_PORT")
  fi
  [ "$GDNSD" = 0 ] || SERVERS+=("gdnsd $GD_PID $GD_ADDR $GD_PORT")
}

# The servers alternate run by run (knot, causeway, gdnsd, knot, ...), so that load
# from other work on the machine, which drifts over minutes, falls on all alike.
run_point_set() { # SCEN DATAFILE
  local scen=$1 data=$2 s i
  servers_for "$scen"
  local servers=("${SERVERS[@]}")
  echo "== $scen" >&2
  for ((i = 0; i < MAX_RUNS; i++)); do
    for s in "${servers[@]}"; do
      set -- $s
      [ "$scen/$1" != miss-ecs/causeway ] || cold_cache "$2" $MISS_API
      measure "$scen" "$1" "$2" "$3" "$4" "$data" unpinned max $MAX_SECS
    done
  done
  [ "$ONLY" = gslb ] && return
  for s in "${servers[@]}"; do
    set -- $s
    # pinned: server on cpu1, dnsperf on cpu0 (Knot pins its own workers: re-pin after start)
    pin_server "$2" 1
    [ "$scen/$1" != miss-ecs/causeway ] || cold_cache "$2" $MISS_API
    measure "$scen" "$1" "$2" "$3" "$4" "$data" pinned max $MAX_SECS
    [ "$scen/$1" != miss-ecs/causeway ] || cold_cache "$2" $MISS_API
    measure "$scen" "$1" "$2" "$3" "$4" "$data" latency $LAT_RATE $FIX_SECS
    pin_server "$2" 0,1
  done
}

# CPU per query at a fixed rate: every (scenario, server) pair once per round, rounds
# repeated, so the issue's ratio (causeway GSLB vs Knot static) compares runs taken
# minutes apart at most, like the same-scenario ratios.
cpu_rounds() {
  local i s sc scens=("static $WORK/queries.txt" "gslb-ecs $WORK/queries-gslb-ecs.bin")
  [ "$KNOT_ONLY" = 1 ] || scens+=("miss-ecs $WORK/queries-miss-ecs.bin")
  echo "== CPU per query at $CPU_RATE qps" >&2
  for ((i = 0; i < MAX_RUNS; i++)); do
    for sc in "${scens[@]}"; do
      set -- $sc
      servers_for "$1"
      for s in "${SERVERS[@]}"; do
        set -- $sc $s
        [ "$1/$3" != miss-ecs/causeway ] || cold_cache "$4" $MISS_API
        measure "$1" "$3" "$4" "$5" "$6" "$2" unpinned $CPU_RATE $FIX_SECS
      done
    done
  done
}

# count_misses: the MEASURED reply-cache miss fraction of the miss-heavy file. A copy of
# the binary (so the probe touches no other causeway process on the machine) serves the
# miss config; a uprobe on causeway_dns::answer::prepare (called once per cache miss)
# is counted by `perf stat` during MAX_RUNS fixed-rate runs like the CPU ones: misses /
# completed queries. The uprobe's trap makes these runs' CPU figures useless (their
# scenario is miss-count, not miss-ecs). Needs root, perf with uprobes, nm and readelf;
# skipped with a note otherwise. Sets MISS_MEASURED.
MISS_MEASURED=-
count_misses() {
  local t bin="$WORK/cwprobed" off pid i n c out
  for t in perf nm readelf; do
    command -v "$t" >/dev/null || { echo "== miss count skipped: no $t" >&2; return 0; }
  done
  [ "$(id -u)" = 0 ] || { echo "== miss count skipped: needs root (uprobes)" >&2; return 0; }
  cp "$CW_BIN" "$bin"
  # The probe wants a file offset: the symbol's address minus its LOAD segment's
  # (address - offset).
  off=$(python3 - "$bin" <<'PY'
import subprocess, sys
b = sys.argv[1]
sym = [l.split() for l in subprocess.run(["nm", b], capture_output=True, text=True).stdout.splitlines()]
addr = [int(x[0], 16) for x in sym if len(x) == 3 and x[1] in "Tt" and "12causeway_dns6answer7prepare17h" in x[2]]
segs = [l.split() for l in subprocess.run(["readelf", "-lW", b], capture_output=True, text=True).stdout.splitlines()
        if l.split()[:1] == ["LOAD"]]
for a in addr[:1]:
    for _, o, v, _, fsz, *_ in segs:
        o, v, fsz = int(o, 16), int(v, 16), int(fsz, 16)
        if v <= a < v + fsz:
            print(hex(a - v + o))
PY
)
  [ -n "$off" ] || { echo "== miss count skipped: no causeway_dns::answer::prepare in $bin" >&2; return 0; }
  perf probe -q -x "$bin" -a "cwprep=$off" >"$WORK/perf-probe.log" 2>&1 ||
    { echo "== miss count skipped: perf probe failed: $(tail -1 "$WORK/perf-probe.log")" >&2; return 0; }
  PROBED=1
  kill "$MISS_PID" 2>/dev/null || true; wait "$MISS_PID" 2>/dev/null || true
  "$bin" --log warn,causeway=info,causeway_dns=info dns --config "$WORK/causeway-miss.yaml" \
    --listen $MISS_ADDR:$MISS_PORT --api-listen $MISS_API >"$WORK/cwprobed.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  wait_answer $MISS_ADDR $MISS_PORT www.svc.example. 120 || die "probed causeway does not answer"
  echo "== measured miss fraction (uprobe on answer::prepare)" >&2
  MISS_MEASURED=""
  for ((i = 0; i < MAX_RUNS; i++)); do
    out="$WORK/perf-stat-$i.txt"
    cold_cache "$pid" $MISS_API
    perf stat -x, -e probe_cwprobed:cwprep -p "$pid" -o "$out" -- sleep $((FIX_SECS + 2)) &
    local perf_pid=$!
    sleep 0.5
    measure miss-count causeway "$pid" $MISS_ADDR $MISS_PORT "$WORK/queries-miss-ecs.bin" unpinned $CPU_RATE $FIX_SECS
    wait "$perf_pid" || true
    n=$(awk -F, '/cwprep/ {print $1}' "$out")
    c=$(tail -1 "$RESULTS" | cut -f7)
    MISS_MEASURED+="$(awk -v n="${n:-0}" -v c="${c:-0}" 'BEGIN {if (c > 0) printf "%.3f ", n / c; else printf "- "}')"
    echo "   misses $n / completed $c" >&2
  done
  perf probe -q -d 'probe_cwprobed:*' 2>/dev/null || true
  PROBED=0
  MISS_PID=$pid
}

START=$(date +%s)
MEM_READY=- MEM_RSS_IDLE=- MEM_HWM=-
[ "$ONLY" = gslb ] || run_point_set static "$WORK/queries.txt"
run_point_set gslb-ecs "$WORK/queries-gslb-ecs.bin"
[ "$KNOT_ONLY" = 1 ] || run_point_set miss-ecs "$WORK/queries-miss-ecs.bin"
cpu_rounds
[ "$KNOT_ONLY" = 1 ] || count_misses

if [ "$KNOT_ONLY" = 0 ] && [ "$ONLY" = all ]; then
# Zero loss at half the max rate (GSLB with ECS, unpinned): half of causeway's median max.
half_rate() { # SCEN SERVER
  awk -F'\t' -v s="$1" -v n="$2" '$1 == s && $2 == n && $3 == "unpinned" && $4 == "max" {print $5}' "$RESULTS" |
    sort -n | awk '{a[NR] = $1} END {printf "%d", a[int((NR + 1) / 2)] / 2}'
}
HALF=$(half_rate gslb-ecs causeway)
echo "== half of max rate: $HALF qps" >&2
measure half-max causeway "$CW_PID" $CW_ADDR $CW_PORT "$WORK/queries-gslb-ecs.bin" steady "$HALF" $FIX_SECS

for p in "$CW_PID" "$MISS_PID" "$KNOT_PID" ${GD_PID:-}; do
  kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
done

# ---------------------------------------------------------------- memory test
echo "== memory: $MEM_NAMES GSLB names, $MEM_PREFIXES latency prefixes" >&2
MEM_T0=$(date +%s.%N)
start_causeway "$WORK/causeway-mem.yaml" $MEM_ADDR $MEM_PORT $MEM_API "$WORK/causeway-mem.log"
MEM_PID=$STARTED_PID
wait_answer $MEM_ADDR $MEM_PORT www.svc.example. 120 ||
  die "causeway (memory config) does not answer; its log:
$(tail -20 "$WORK/causeway-mem.log")"
MEM_READY=$(awk -v a="$MEM_T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
MEM_RSS_IDLE=$(awk -v k="$(rss_kib "$MEM_PID")" 'BEGIN {printf "%.1f", k / 1024}')
# Reply-cache misses vs hits, same rate, same queries: one pass over the 200k distinct
# (name, subnet) queries misses every worker's reply cache, a second pass hits (4 s each
# at 50k qps).
measure memory-cold causeway "$MEM_PID" $MEM_ADDR $MEM_PORT "$WORK/queries-mem-ecs.bin" steady $CPU_RATE 30 1
measure memory-warm causeway "$MEM_PID" $MEM_ADDR $MEM_PORT "$WORK/queries-mem-ecs.bin" steady $CPU_RATE 30 1
for ((i = 0; i < MAX_RUNS; i++)); do
  measure memory causeway "$MEM_PID" $MEM_ADDR $MEM_PORT "$WORK/queries-mem-ecs.bin" unpinned max $MAX_SECS
done
MEM_HALF=$(half_rate memory causeway)
measure memory-half causeway "$MEM_PID" $MEM_ADDR $MEM_PORT "$WORK/queries-mem-ecs.bin" steady "$MEM_HALF" $FIX_SECS
MEM_HWM=$(awk -v k="$(hwm_kib "$MEM_PID")" 'BEGIN {printf "%.1f", k / 1024}')
kill "$MEM_PID" 2>/dev/null || true; wait "$MEM_PID" 2>/dev/null || true

# Signed (DNSSEC, docs/dns.md): the same zone with a CSK, the same 200k queries with
# DO: misses sign (ECDSA P-256) each RRset not yet in the worker's signature cache,
# hits are served from the prepared replies.
echo "== signed: the memory config with spec.dnssec, queries with DO" >&2
rm -f "$WORK/bench-csk.pem"
"$CW_BIN" dns keygen --out "$WORK/bench-csk.pem"
sed "s|^  nameservers:|  dnssec: {csk: $WORK/bench-csk.pem}\n  nameservers:|" \
  "$WORK/causeway-mem.yaml" >"$WORK/causeway-mem-signed.yaml"
start_causeway "$WORK/causeway-mem-signed.yaml" $MEM_ADDR $MEM_PORT $MEM_API "$WORK/causeway-mem-signed.log"
SIG_PID=$STARTED_PID
wait_answer $MEM_ADDR $MEM_PORT www.svc.example. 120 ||
  die "causeway (signed memory config) does not answer; its log:
$(tail -20 "$WORK/causeway-mem-signed.log")"
measure memory-signed-cold causeway "$SIG_PID" $MEM_ADDR $MEM_PORT "$WORK/queries-mem-ecs-do.bin" steady $CPU_RATE 30 1
measure memory-signed-warm causeway "$SIG_PID" $MEM_ADDR $MEM_PORT "$WORK/queries-mem-ecs-do.bin" steady $CPU_RATE 30 1
kill "$SIG_PID" 2>/dev/null || true; wait "$SIG_PID" 2>/dev/null || true

fi
END=$(date +%s)

# ---------------------------------------------------------------- report
GD_VERSION=-
[ "$GDNSD" = 0 ] || GD_VERSION=$(gdnsd -h 2>&1 | awk '/^gdnsd version/ {print $3}' || true)
python3 "$HERE/report.py" "$RESULTS" \
  --stamp "$STAMP" --quick "$QUICK" --secs "$((END - START))" \
  --max-runs "$MAX_RUNS" --max-secs "$MAX_SECS" --fix-secs "$FIX_SECS" \
  --mem-names "$MEM_NAMES" --mem-prefixes "$MEM_PREFIXES" \
  --mem-ready "$MEM_READY" --mem-rss-idle "$MEM_RSS_IDLE" --mem-hwm "$MEM_HWM" \
  --causeway "$("$CW_BIN" --version 2>/dev/null || echo causeway)" \
  --commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo -)" \
  --knot "$(knotd -V 2>&1 | head -1)" --dnsperf "$(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')" \
  --gdnsd "$GD_VERSION" \
  --miss-fraction "$(sed -n 1p "$WORK/miss-fraction.txt" 2>/dev/null || true)" \
  --miss-note "$(sed -n 2p "$WORK/miss-fraction.txt" 2>/dev/null || true)" \
  --miss-measured "$MISS_MEASURED" \
  --only "$ONLY" \
  >"$REPORT"
cp "$RESULTS" "${REPORT%.md}.tsv"
cat "$REPORT"
echo "report: $REPORT (raw: ${REPORT%.md}.tsv)" >&2
