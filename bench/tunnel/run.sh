#!/usr/bin/env bash
# Tunnel benchmark, in one run (see bench/tunnel/README.md):
#  1. kube-apiserver direct vs through stub+agent: p50/p99 of a small GET at 1, 32, 128
#     concurrent; throughput of ~10 MiB list responses; RSS per idle watch with 1,000 watches.
#  2. plain HTTP (nginx, 1 KiB and 1 MiB, wrk -t2 -c32, and -c1) direct vs through
#     stub+agent vs through rathole with TLS (the peer), for the ratio to direct.
#
#   bench/tunnel/run.sh [--quick] [--no-build] [--part api|plain|all] [--perf]
#     --quick: 3 s runs instead of 10-15 s; --part: only one half (default all);
#     --perf: record `perf record -g` profiles of the stub and agents during the
#     tunnel's c=32 runs (perf-*.data beside the report).
#   (CAUSEWAY_BIN / TUNNEL_BENCH_GEN override the release binaries used)
#
# Needs: nginx, wrk, openssl, curl (Debian packages), the testbed binaries in .cache/bin,
# and rathole (`cargo install rathole --root .cache/rathole`; skipped with a note if absent).
# Everything listens on 127.0.0.1 only; every load run is bounded by -d/--duration and timeout.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
quick=0; build=1; part=all; perf=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1;; --no-build) build=0;; --perf) perf=1;;
    --part) part=${2:-}; shift; case $part in api|plain|all) ;; *) echo "--part: api, plain or all" >&2; exit 2;; esac;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac; shift
done
d_lat=10; d_wrk=15; d_big=10; [ $quick = 1 ] && { d_lat=3; d_wrk=3; d_big=3; }
out=$root/bench/out/tunnel-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
report=$out/report.md
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${nginx_conf:-}" ] && nginx -c "$nginx_conf" -s stop 2>/dev/null || true
  "$bin" testbed down --state-dir "$out/testbed" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for t in nginx wrk openssl curl; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install -y nginx wrk openssl curl" >&2; exit 1; }
done

if [ $build = 1 ]; then
  echo "==> building (release)"
  (cd "$root" && cargo build --release -j2 --bin causeway && cargo build --release -j2 -p causeway-tunnel --example tunnel_bench) >"$out/build.log" 2>&1
fi
bin=${CAUSEWAY_BIN:-$root/target/release/causeway}
gen=${TUNNEL_BENCH_GEN:-$root/target/release/examples/tunnel_bench}
echo "binaries: $bin, $gen" >"$out/binaries.txt"
kubectl=$root/.cache/bin/kubectl

echo "==> stub"
mkdir -p "$out/stub"
cat >"$out/policy.yaml" <<YAML
apiVersion: causeway.dev/v1alpha1
kind: AccessPolicy
metadata: {name: bench}
spec:
  rules:
  - subjects: {groups: [dev]}
    clusters: ["*"]
YAML
echo 'bench-token-0123456789abcdef0123456789,bench,bench-uid,"dev"' >"$out/tokens.csv"
cat >"$out/stub.yaml" <<YAML
apiVersion: causeway.dev/v1alpha1
kind: StubConfig
metadata: {name: bench}
spec:
  stateDir: $out/stub/state
  listen: {users: "127.0.0.1:0", agents: "127.0.0.1:0", metrics: "127.0.0.1:0"}
  accessPolicy: $out/policy.yaml
  tokenFile: $out/tokens.csv
  audit: {path: $out/stub-audit.log}
YAML
NO_COLOR=1 CAUSEWAY_LOG=warn,causeway_tunnel::stub=info "$bin" stub --config "$out/stub.yaml" 2>"$out/stub.log" & pids+=($!); stub_pid=$!
for _ in $(seq 100); do grep -q "listening on metrics" "$out/stub.log" && break; sleep 0.1; done
users=$(grep -o 'listening on users https://[0-9.:]*' "$out/stub.log" | awk '{print $4}')
agents=$(grep -o 'listening on agents https://[0-9.:]*' "$out/stub.log" | awk '{print $4}')
"$bin" cluster add bench --state-dir "$out/stub/state" --stub-url "$agents" >"$out/join.txt"
tok=$(awk '/^token:/{print $2}' "$out/join.txt"); hash=$(awk '/^ca-hash:/{print $2}' "$out/join.txt")
"$bin" user add alice --group dev --clusters '*' --state-dir "$out/stub/state" --stub-url "$users" --out "$out/alice.kubeconfig" >/dev/null
getb64() { awk -v k="$1:" '$1==k{print $2; exit}' "$out/alice.kubeconfig" | base64 -d; }
getb64 client-certificate-data >"$out/alice.crt"; getb64 client-key-data >"$out/alice.key"; getb64 certificate-authority-data >"$out/stub-ca.crt"

tunnel=(--ca "$out/stub-ca.crt" --cert "$out/alice.crt" --key "$out/alice.key")
small=/api/v1/namespaces/default/configmaps?limit=1
big=/api/v1/namespaces/bench/configmaps
j() { python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(d['$1'])"; }

{
echo "# Tunnel benchmark $(date -u +%FT%TZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); client, servers, stub and agent share them."
echo
echo "Binaries: \`$bin\`, \`$gen\`."
echo
} >"$report"

rathole=$root/.cache/rathole/bin/rathole
have_rathole=0
if [ -x "$rathole" ]; then
  have_rathole=1
  # rathole's TLS identity: a throwaway CA and a leaf (SAN localhost) as PKCS#12.
  mkdir -p "$out/rh"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rh-ca -keyout "$out/rh/ca.key" -out "$out/rh/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$out/rh/tls.key" -out "$out/rh/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$out/rh/ext.cnf"
  openssl x509 -req -in "$out/rh/tls.csr" -CA "$out/rh/ca.crt" -CAkey "$out/rh/ca.key" -CAcreateserial -days 2 \
    -extfile "$out/rh/ext.cnf" -out "$out/rh/tls.crt" 2>/dev/null
  openssl pkcs12 -export -out "$out/rh/identity.pfx" -inkey "$out/rh/tls.key" -in "$out/rh/tls.crt" -passout pass:1234 2>/dev/null
fi
# start_rathole NAME CONTROL-ADDR VISITOR-ADDR LOCAL-ADDR: a rathole server+client pair with
# TLS between them; sets rh_server_pid / rh_client_pid.
start_rathole() {
  cat >"$out/rh-$1-server.toml" <<TOML
[server]
bind_addr = "$2"
[server.transport]
type = "tls"
[server.transport.tls]
pkcs12 = "$out/rh/identity.pfx"
pkcs12_password = "1234"
[server.services.$1]
token = "bench"
bind_addr = "$3"
TOML
  cat >"$out/rh-$1-client.toml" <<TOML
[client]
remote_addr = "$2"
[client.transport]
type = "tls"
[client.transport.tls]
trusted_root = "$out/rh/ca.crt"
hostname = "localhost"
[client.services.$1]
token = "bench"
local_addr = "$4"
TOML
  "$rathole" -s "$out/rh-$1-server.toml" >"$out/rh-$1-server.log" 2>&1 & pids+=($!); rh_server_pid=$!
  "$rathole" -c "$out/rh-$1-client.toml" >"$out/rh-$1-client.log" 2>&1 & pids+=($!); rh_client_pid=$!
}

if [ $part != plain ]; then
echo "==> testbed"
NO_COLOR=1 timeout 300 "$bin" testbed up --clusters bench --nodes 1 --state-dir "$out/testbed" >"$out/testbed.log" 2>&1
tbkc=$out/testbed/bench/kubeconfig
tbdir=$out/testbed/bench
api=$(awk '/server:/{print $2; exit}' "$tbkc")
K="$kubectl --kubeconfig $tbkc"
$K apply -f "$root/examples/tunnel/agent-rbac.yaml" >/dev/null
$K create clusterrolebinding bench-dev --clusterrole=cluster-admin --group=dev >/dev/null
$K -n causeway-system create token causeway-agent --duration 2h >"$out/sa.token"
$K create namespace bench >/dev/null
# ~10 MiB list: 12 ConfigMaps of ~880 KiB each.
head -c 675000 /dev/urandom | base64 -w0 >"$out/blob"
for i in $(seq 1 12); do
  $K -n bench create configmap "big-$i" --from-file=blob="$out/blob" >/dev/null
done
# the direct client: the testbed admin certificate
ca_direct=$(ls "$tbdir"/pki/ca.crt); cert_direct=$(ls "$tbdir"/pki/admin.crt); key_direct=$(ls "$tbdir"/pki/admin.key)
direct=(--ca "$ca_direct" --cert "$cert_direct" --key "$key_direct")

echo "==> agent for the testbed cluster"
NO_COLOR=1 CAUSEWAY_LOG=warn "$bin" agent --stub "$agents" --cluster bench --token "$tok" --ca-hash "$hash" \
  --state-dir "$out/agent" --kubeconfig "$tbkc" --token-file "$out/sa.token" --metrics-listen 127.0.0.1:19445 \
  2>"$out/agent.log" & pids+=($!); agent_pid=$!
stub_metrics=$(grep -o 'listening on metrics http://[0-9.:]*' "$out/stub.log" | awk '{print $4}')
# hsum URL METRIC: "sum count" of a histogram summed over its labels.
hsum() { curl -s "$1/metrics" | awk -v m="$2" '$1 ~ "^"m"_sum" {s+=$2} $1 ~ "^"m"_count" {c+=$2} END {print s+0, c+0}'; }
for _ in $(seq 100); do $kubectl --kubeconfig "$out/alice.kubeconfig" get ns >/dev/null 2>&1 && break; sleep 0.2; done
# The peer in front of the same API server: rathole (L4, TLS between its halves) forwards
# the client's own TLS connection, so its row is what an extra L4 hop alone adds.
api_hostport=${api#https://}; api_host=${api_hostport%:*}
rh_api=
if [ $have_rathole = 1 ]; then
  start_rathole api 127.0.0.1:2336 "$api_host:16443" "$api_hostport"
  for _ in $(seq 50); do
    curl -s -o /dev/null --cacert "$ca_direct" --cert "$cert_direct" --key "$key_direct" "https://$api_host:16443/version" && { rh_api=https://$api_host:16443; break; }
    sleep 0.2
  done
fi
{
echo "## kube-apiserver: direct vs through stub+agent (HTTP/2, mTLS, ${d_lat} s per run)"
echo
echo "Direct = the testbed admin certificate (system:masters). Impersonated = direct with the"
echo "agent's own request: its ServiceAccount token plus Impersonate-User/Group for alice, so"
echo "the API server does the same authentication and impersonation checks as behind the"
echo "tunnel; tunnel − impersonated is what the stub and agent add. rathole = direct through"
echo "rathole with TLS (an L4 hop: the client's own TLS to the API server passes through it);"
echo "rathole − direct is what the peer's extra hop alone adds on this machine, in the same run."
echo
echo "| test | direct | impersonated | through tunnel | tunnel − direct | tunnel − impersonated | rathole | rathole − direct |"
echo "|---|---|---|---|---|---|---|---|"
} >>"$report"

imp=(--ca "$ca_direct" --token-file "$out/sa.token" --header "Impersonate-User: alice"
     --header "Impersonate-Group: dev" --header "Impersonate-Group: system:authenticated")
diff() { python3 -c "print(f'{$2-$1:+.0f}' if '$3'!='rps' else f'{$2/$1:.2f}x')"; }
declare -A split
for c in 1 32 128; do
  dj=$(timeout 120 "$gen" latency --url "$api$small" "${direct[@]}" --concurrency $c --duration $d_lat)
  ij=$(timeout 120 "$gen" latency --url "$api$small" "${imp[@]}" --concurrency $c --duration $d_lat)
  read -r ss0 sc0 < <(hsum "$stub_metrics" causeway_tunnel_response_headers_seconds)
  read -r as0 ac0 < <(hsum http://127.0.0.1:19445 causeway_agent_response_headers_seconds)
  tj=$(timeout 120 "$gen" latency --url "$users/clusters/bench$small" "${tunnel[@]}" --concurrency $c --duration $d_lat)
  read -r ss1 sc1 < <(hsum "$stub_metrics" causeway_tunnel_response_headers_seconds)
  read -r as1 ac1 < <(hsum http://127.0.0.1:19445 causeway_agent_response_headers_seconds)
  split[$c]=$(python3 -c "print(f'stub {($ss1-$ss0)/max($sc1-$sc0,1)*1e6:.0f} µs, agent {($as1-$as0)/max($ac1-$ac0,1)*1e6:.0f} µs')")
  rj=; [ -z "$rh_api" ] || rj=$(timeout 120 "$gen" latency --url "$rh_api$small" "${direct[@]}" --concurrency $c --duration $d_lat)
  echo "$dj" >>"$out/raw.jsonl"; echo "$ij" >>"$out/raw.jsonl"; echo "$tj" >>"$out/raw.jsonl"; [ -z "$rj" ] || echo "$rj" >>"$out/raw.jsonl"
  for f in p50_us p99_us rps; do
    dv=$(echo "$dj" | j $f); iv=$(echo "$ij" | j $f); tv=$(echo "$tj" | j $f)
    rv=–; rd=–; [ -z "$rj" ] || { rv=$(echo "$rj" | j $f); rd=$(diff $dv $rv $f); }
    echo "| small GET c=$c $f | $dv | $iv | $tv | $(diff $dv $tv $f) | $(diff $iv $tv $f) | $rv | $rd |" >>"$report"
  done
  echo "   c=$c p50/p99 us: direct $(echo "$dj" | j p50_us)/$(echo "$dj" | j p99_us), impersonated $(echo "$ij" | j p50_us)/$(echo "$ij" | j p99_us), tunnel $(echo "$tj" | j p50_us)/$(echo "$tj" | j p99_us)${rj:+, rathole $(echo "$rj" | j p50_us)/$(echo "$rj" | j p99_us)}"
done
for c in 1 32 128; do
  echo "| small GET c=$c: mean time to response headers, stub (request in → headers out) / agent (request in → the API server's headers) | | | ${split[$c]} | | | | |" >>"$report"
done
dj=$(timeout 120 "$gen" throughput --url "$api$big" "${direct[@]}" --concurrency 4 --duration $d_big)
tj=$(timeout 120 "$gen" throughput --url "$users/clusters/bench$big" "${tunnel[@]}" --concurrency 4 --duration $d_big)
rj=; [ -z "$rh_api" ] || rj=$(timeout 120 "$gen" throughput --url "$rh_api$big" "${direct[@]}" --concurrency 4 --duration $d_big)
echo "$dj" >>"$out/raw.jsonl"; echo "$tj" >>"$out/raw.jsonl"; [ -z "$rj" ] || echo "$rj" >>"$out/raw.jsonl"
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
dm=$(echo "$dj" | j mib_per_s); tm=$(echo "$tj" | j mib_per_s); rm_=–; rr=–
[ -z "$rj" ] || { rm_=$(echo "$rj" | j mib_per_s); rr=$(ratio "$rm_" "$dm"); }
echo "| ~10 MiB list, c=4, MiB/s | $dm | | $tm | $(ratio "$tm" "$dm") | | $rm_ | $rr |" >>"$report"

rss() { awk '/VmRSS/{print $2}' /proc/$1/status; }
api_pid=$(pgrep -f "kube-apiserver.*$tbdir" | head -1 || true)
watch='/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=600'
s0=$(rss $stub_pid); a0=$(rss $agent_pid); p0=$( [ -n "$api_pid" ] && rss $api_pid || echo 0)
# Measure once all 1,000 are open (the generator prints its line then) and have settled.
wait_open() { for _ in $(seq 600); do [ -s "$1" ] && break; sleep 0.1; done; sleep 3; }
timeout 180 "$gen" watches --url "$users/clusters/bench$watch" "${tunnel[@]}" --count 1000 --conns 20 --hold 8 >"$out/watches.json" &
wpid=$!; wait_open "$out/watches.json"
s1=$(rss $stub_pid); a1=$(rss $agent_pid); p1=$( [ -n "$api_pid" ] && rss $api_pid || echo 0)
wait $wpid || true
sleep 2
pd0=$( [ -n "$api_pid" ] && rss $api_pid || echo 0)
timeout 180 "$gen" watches --url "$api$watch" "${direct[@]}" --count 1000 --conns 20 --hold 8 >"$out/watches-direct.json" &
wpid=$!; wait_open "$out/watches-direct.json"
pd1=$( [ -n "$api_pid" ] && rss $api_pid || echo 0)
wait $wpid || true
{
echo "| 1,000 idle watches: KiB per watch | apiserver $(( (pd1-pd0) )) KiB total, $(( (pd1-pd0)/1000 )) KiB each | stub $(( (s1-s0)/1000 )) KiB, agent $(( (a1-a0)/1000 )) KiB each (apiserver $(( (p1-p0)/1000 ))) | $(cat "$out/watches.json") |"
echo
} >>"$report"

fi

if [ $part != api ]; then
echo "==> nginx, wrk, rathole"
mkdir -p "$out/nginx/www" "$out/nginx/tmp"
head -c 1024 /dev/urandom >"$out/nginx/www/1k.bin"; head -c 1048576 /dev/urandom >"$out/nginx/www/1m.bin"
# A throwaway CA and a leaf for nginx (rustls refuses a CA certificate as the server's).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout "$out/nginx/ca.key" -out "$out/nginx/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout "$out/nginx/tls.key" -out "$out/nginx/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$out/nginx/ext.cnf"
openssl x509 -req -in "$out/nginx/tls.csr" -CA "$out/nginx/ca.crt" -CAkey "$out/nginx/ca.key" -CAcreateserial -days 2 \
  -extfile "$out/nginx/ext.cnf" -out "$out/nginx/tls.crt" 2>/dev/null
nginx_conf=$out/nginx/nginx.conf
cat >"$nginx_conf" <<NGINX
worker_processes 2; daemon off; pid $out/nginx/nginx.pid; error_log $out/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path $out/nginx/tmp; proxy_temp_path $out/nginx/tmp; fastcgi_temp_path $out/nginx/tmp;
  uwsgi_temp_path $out/nginx/tmp; scgi_temp_path $out/nginx/tmp;
  server { listen 127.0.0.1:18080; root $out/nginx/www; }
  server { listen 127.0.0.1:18443 ssl http2; ssl_certificate $out/nginx/tls.crt; ssl_certificate_key $out/nginx/tls.key;
           http2_max_concurrent_streams 1000; root $out/nginx/www; }
}
NGINX
nginx -c "$nginx_conf" & pids+=($!)
sleep 0.5
# nginx stands in for an API server behind two more agents: "web" reaches it over plain
# HTTP/1.1 on loopback (as rathole's client does), "webtls" over TLS + HTTP/2 (as an
# agent reaches a real kube-apiserver).
echo unused >"$out/web.token"
start_web_agent() { # cluster server-url [agent flags]
  cat >"$out/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: $1, cluster: {server: "$2", certificate-authority: "$out/nginx/ca.crt"}}]
users: [{name: x, user: {token: unused}}]
contexts: [{name: $1, context: {cluster: $1, user: x}}]
current-context: $1
KC
  "$bin" cluster add "$1" --state-dir "$out/stub/state" --stub-url "$agents" >"$out/join-$1.txt"
  local tok; tok=$(awk '/^token:/{print $2}' "$out/join-$1.txt")
  NO_COLOR=1 CAUSEWAY_LOG=warn "$bin" agent --stub "$agents" --cluster "$1" --token "$tok" --ca-hash "$hash" \
    --state-dir "$out/agent-$1" --kubeconfig "$out/$1.kubeconfig" --token-file "$out/web.token" "${@:3}" 2>"$out/agent-$1.log" &
  pids+=($!)
}
start_web_agent web http://127.0.0.1:18080; agent_web_pid=$!
start_web_agent webtls https://127.0.0.1:18443; agent_webtls_pid=$!
start_web_agent webstreams http://127.0.0.1:18080 --data-connections 0; agent_webstreams_pid=$!
bearer="Authorization: Bearer bench-token-0123456789abcdef0123456789"
for c in web webtls webstreams; do
  for _ in $(seq 100); do curl -sfk -o /dev/null -H "$bearer" "$users/clusters/$c/1k.bin" && break; sleep 0.2; done
  curl -sf --cacert "$out/stub-ca.crt" -H "$bearer" "$users/clusters/$c/1m.bin" | cmp - "$out/nginx/www/1m.bin"
done

if [ $have_rathole = 1 ]; then
  start_rathole web 127.0.0.1:2335 127.0.0.1:18094 127.0.0.1:18080
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:18094/1k.bin && break; sleep 0.2; done
fi

wrk_rps() { awk '/Requests\/sec/{print $2}'; }
wrk_lat() { awk -v q="$1" '$1==q{print $2}'; }
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' /proc/"$p"/stat))); done; echo $t; }
declare -A CPU
run_wrk() { # name url conns size extra-header; CPU[name-size-c] = µs of the tunnel's processes per request
  local name=$1 url=$2 c=$3 size=$4; shift 4
  local procs=()
  case $name in
    tunnel) procs=("$stub_pid" "$agent_web_pid");; tunnel-tls) procs=("$stub_pid" "$agent_webtls_pid");;
    tunnel-streams) procs=("$stub_pid" "$agent_webstreams_pid");;
    rathole) procs=("$rh_server_pid" "$rh_client_pid");;
  esac
  timeout 10 wrk -t2 -c"$c" -d3s "$@" "$url/$size" >/dev/null 2>&1 || true
  local prof=
  if [ $perf = 1 ] && [ "$name" = tunnel ] && [ "$c" != 1 ]; then
    perf record -F 499 --call-graph dwarf,32768 -p "$stub_pid,$agent_web_pid" -o "$out/perf-$name-$size.data" -- sleep "$d_wrk" >/dev/null 2>&1 &
    prof=$!
  fi
  local t0=0; [ ${#procs[@]} = 0 ] || t0=$(cpu_ticks "${procs[@]}")
  timeout $((d_wrk + 25)) wrk -t$([ "$c" = 1 ] && echo 1 || echo 2) -c"$c" -d${d_wrk}s --latency "$@" "$url/$size" >"$out/wrk-$name-$size-c$c.txt" 2>&1
  if [ ${#procs[@]} != 0 ]; then
    local n; n=$(awk '/requests in/{print $1}' "$out/wrk-$name-$size-c$c.txt")
    CPU[$name-$size-c$c]=$(( ($(cpu_ticks "${procs[@]}") - t0) * 1000000 / $(getconf CLK_TCK) / n ))
  else
    CPU[$name-$size-c$c]="–"
  fi
  [ -z "$prof" ] || wait "$prof" || true
}
{
echo "## Plain HTTP (nginx), wrk, ${d_wrk} s per run"
echo
echo "direct-tls = wrk → nginx over TLS (HTTP/1.1): what TLS alone costs on this machine; the"
echo "stub must terminate users' TLS, while the direct and rathole paths are plaintext for wrk."
echo "tunnel = wrk → stub (TLS, bearer token, audit on) → agent → nginx over plain HTTP/1.1 on"
echo "loopback (short requests over the agent's HTTP/1.1 data connections when idle);"
echo "tunnel-streams = the same with --data-connections 0 (every request a stream of the"
echo "HTTP/2 session); tunnel-tls = agent → nginx over TLS + HTTP/2; rathole = wrk →"
echo "rathole server → (TLS) → rathole client → nginx. CPU = utime+stime of the two tunnel"
echo "processes per request (/proc), in µs."
echo
echo "| path | 1 KiB c=32 req/s | ratio | CPU | 1 MiB c=32 req/s | ratio | CPU | 1 KiB c=1 p50 / p99 | added p50 |"
echo "|---|---|---|---|---|---|---|---|---|"
} >>"$report"
declare -A R
paths="direct direct-tls tunnel tunnel-streams tunnel-tls"; [ $have_rathole = 1 ] && paths="$paths rathole"
for p in $paths; do
  case $p in
    direct) url=http://127.0.0.1:18080; hdr=();;
    direct-tls) url=https://127.0.0.1:18443; hdr=();;
    tunnel) url=$users/clusters/web; hdr=(-H "$bearer");;
    tunnel-tls) url=$users/clusters/webtls; hdr=(-H "$bearer");;
    tunnel-streams) url=$users/clusters/webstreams; hdr=(-H "$bearer");;
    rathole) url=http://127.0.0.1:18094; hdr=();;
  esac
  for size in 1k.bin 1m.bin; do run_wrk $p "$url" 32 $size "${hdr[@]}"; done
  run_wrk $p "$url" 1 1k.bin "${hdr[@]}"
  R[$p-1k]=$(wrk_rps <"$out/wrk-$p-1k.bin-c32.txt"); R[$p-1m]=$(wrk_rps <"$out/wrk-$p-1m.bin-c32.txt")
  R[$p-p50]=$(wrk_lat 50% <"$out/wrk-$p-1k.bin-c1.txt"); R[$p-p99]=$(wrk_lat 99% <"$out/wrk-$p-1k.bin-c1.txt")
  echo "   $p: 1k ${R[$p-1k]} req/s, 1m ${R[$p-1m]} req/s, c=1 p50 ${R[$p-p50]}"
done
us() { python3 -c "s='$1'; print(float(s[:-2])*1000 if s.endswith('ms') else float(s[:-2]) if s.endswith('us') else float(s[:-1])*1e6)"; }
for p in $paths; do
  r1=$(python3 -c "print(f'{${R[$p-1k]}/${R[direct-1k]}:.2f}')"); r2=$(python3 -c "print(f'{${R[$p-1m]}/${R[direct-1m]}:.2f}')")
  add=$(python3 -c "print(f'{$(us ${R[$p-p50]})-$(us ${R[direct-p50]}):+.0f} us')")
  echo "| $p | ${R[$p-1k]} | $r1 | ${CPU[$p-1k.bin-c32]} | ${R[$p-1m]} | $r2 | ${CPU[$p-1m.bin-c32]} | ${R[$p-p50]} / ${R[$p-p99]} | $add |" >>"$report"
done
[ $have_rathole = 1 ] || echo "rathole was not found at $rathole: run \`cargo install rathole --root .cache/rathole\` for the peer row." >>"$report"
echo >>"$report"
echo "Raw: $out (wrk-*.txt, raw.jsonl, watches*.json)" >>"$report"
echo
cat "$report"
fi
