#!/usr/bin/env bash
# Tunnel benchmark, in one run (see bench/tunnel/README.md): Causeway (stub + agent) against
# the L7 tunnels users pick — a remotedialer hub built as Rancher's cluster proxy and frp's
# HTTP vhost — against rathole (L4) and against direct, on the same machine, same load
# generator, same minutes:
#  1. kube-apiserver (testbed cluster `bench`): small GET at c=1 and c=32 (p50/p99, req/s),
#     ~10 MiB lists at c=4, 1,000 idle watches (RSS per watch of the tunnel's processes),
#     exec and port-forward byte throughput through kubectl;
#  2. plain HTTP (nginx, 1 KiB and 1 MiB, wrk -t2 -c32, and -t1 -c1).
# Every row: CPU µs per request of all the path's tunnel processes (/proc/<pid>/stat before
# and after) and the machine's load during the row (/proc/stat busy %, the share of it
# outside this benchmark's processes, loadavg). One table side by side at the end.
#
#   bench/tunnel/run.sh [--quick] [--no-build] [--part api|plain|all] [--perf]
#     --quick: 3 s runs instead of 10-15 s; --part: only one half (default all);
#     --perf: flat `perf record` profiles of the stub and agent during Causeway's rows
#     (perf-*.data, and perf-*.txt: shares by process, crate and symbol, from table.py perf).
#   (CAUSEWAY_BIN overrides the release binary used; CAUSEWAY_BUILT_FROM names its source in the report)
#
# Needs: nginx, wrk, openssl, curl, python3, Go (the peers and the load generator are built
# from Go modules into .cache/, once per pinned version), the testbed binaries in
# .cache/bin, and rathole (`cargo install rathole --root .cache/rathole`; skipped with a
# note if absent). Everything listens on 127.0.0.1 only; every load run is bounded by its
# duration or count and by an outer timeout.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/tunnel
quick=0; build=1; part=all; perf=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1;; --no-build) build=0;; --perf) perf=1;;
    --part) part=${2:-}; shift; case $part in api|plain|all) ;; *) echo "--part: api, plain or all" >&2; exit 2;; esac;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac; shift
done
d_lat=10; d_wrk=15; d_big=10; hold=8; [ $quick = 1 ] && { d_lat=3; d_wrk=3; d_big=3; hold=4; }
out=$root/bench/out/tunnel-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
report=$out/report.md
results=$out/results.jsonl
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${nginx_conf:-}" ] && nginx -c "$nginx_conf" -s stop 2>/dev/null || true
  "$bin" testbed down --state-dir "$out/testbed" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for t in nginx wrk openssl curl python3 go; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install -y nginx wrk openssl curl python3 (and Go)" >&2; exit 1; }
done

if [ $build = 1 ]; then
  echo "==> building (release)"
  (cd "$root" && cargo build --release -j2 --bin causeway) >"$out/build.log" 2>&1
fi
bin=${CAUSEWAY_BIN:-$root/target/release/causeway}
kubectl=$root/.cache/bin/kubectl

# The peers and the load generator, from Go modules, cached in .cache/ like the testbed's
# binaries: built only when the binary for the pinned version (and our source's hash) is
# missing. remotedialer v0.6.2's go.mod says `go 1.27.3`: GOTOOLCHAIN=go1.27.3 has the go
# command fetch that toolchain through the module proxy (it is served as a module).
rd_version=v0.6.2; frp_version=v0.61.1
srchash() { cat "$@" | sha256sum | cut -c1-10; }
hubsrc=$here/peers/remotedialer-hub
hubbin=$root/.cache/remotedialer-hub-$rd_version-$(srchash "$hubsrc"/go.mod "$hubsrc"/go.sum "$hubsrc"/main.go)/remotedialer-hub
if [ ! -x "$hubbin" ]; then
  echo "==> building remotedialer-hub (remotedialer $rd_version, Go 1.27.3)"
  (cd "$hubsrc" && GOTOOLCHAIN=go1.27.3 GOFLAGS=-mod=readonly go build -trimpath -o "$hubbin" .) >"$out/build-hub.log" 2>&1
fi
lgsrc=$here/peers/loadgen
loadgen=$root/.cache/loadgen-$(srchash "$lgsrc"/go.mod "$lgsrc"/main.go)/loadgen
if [ ! -x "$loadgen" ]; then
  echo "==> building loadgen"
  (cd "$lgsrc" && go build -trimpath -o "$loadgen" .) >"$out/build-loadgen.log" 2>&1
fi
frpdir=$root/.cache/frp-$frp_version/bin
if [ ! -x "$frpdir/frps" ] || [ ! -x "$frpdir/frpc" ]; then
  # `go install …/frps@v0.61.1` asks the proxy for frp's version list (deprecation check),
  # which it refuses here (403); the module itself downloads, so build inside its
  # module-cache copy with its own go.sum.
  echo "==> building frp $frp_version"
  (frpmod=$(cd "$(mktemp -d)" && go mod download -json "github.com/fatedier/frp@$frp_version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
   cd "$frpmod" && go build -trimpath -o "$frpdir/" ./cmd/frps ./cmd/frpc) >"$out/build-frp.log" 2>&1
fi
echo "binaries: $bin; $hubbin; $frpdir/{frps,frpc}; $loadgen" >"$out/binaries.txt"

# Load accounting: sample before and after each row (table.py sample/rec).
tp=$here/table.py
sample() { python3 "$tp" sample "$out" "$@"; }
# gen PATH TEST MODE CONC DUR PROCS -- loadgen args: one loadgen run, recorded in results.jsonl.
gen() {
  local path=$1 test=$2 mode=$3 c=$4 d=$5 procs=$6; shift 7
  local s0 s1 j
  s0=$(sample $procs)
  j=$(timeout $((d + 30)) "$loadgen" "$mode" -c "$c" -d "$d" "$@") || j='{"requests":0,"errors":-1,"note":"no result: timed out or failed"}'
  s1=$(sample $procs)
  python3 "$tp" rec "$results" "$path" "$test" "$j" "$s0" "$s1"
  echo "   $path $test: $j"
}
# perf_start NAME PIDS: a flat profile (no call graph: our release binaries have no frame
# pointers) of the given processes for D seconds; perf_stop waits and writes the top entries.
perf_pid=
perf_start() {
  [ $perf = 1 ] || return 0
  perf record -F 999 -p "$2" -o "$out/perf-$1.data" -- sleep "$3" >/dev/null 2>&1 & perf_pid=$!; perf_name=$1
  perf_names=; local p t
  for p in ${2//,/ }; do
    for t in /proc/"$p"/task/*; do perf_names="$perf_names ${t##*/}=$([ "$p" = "$stub_pid" ] && echo stub || echo agent)"; done
  done
}
perf_stop() {
  [ -n "$perf_pid" ] || return 0
  wait "$perf_pid" || true; perf_pid=
  python3 "$tp" perf "$out/perf-$perf_name.data" $perf_names >"$out/perf-$perf_name.txt" 2>&1 || true
}

# hsum URL METRIC: "sum count" of a histogram summed over its labels.
hsum() { curl -s "$1/metrics" | awk -v m="$2" '$1 ~ "^"m"_sum" {s+=$2} $1 ~ "^"m"_count" {c+=$2} END {print s+0, c+0}'; }

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

# The remotedialer hub's PKI (its own CA: server certificate, alice's client certificate
# CN=alice O=dev), the agents' registration token, frp's passwords.
mkdir -p "$out/hub"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=hub-ca -keyout "$out/hub/ca.key" -out "$out/hub/ca.crt" 2>/dev/null
hubleaf() { # NAME SUBJECT EXT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" -keyout "$out/hub/$1.key" -out "$out/hub/$1.csr" 2>/dev/null
  printf '%s\nbasicConstraints=CA:FALSE\n' "$3" >"$out/hub/$1.cnf"
  openssl x509 -req -in "$out/hub/$1.csr" -CA "$out/hub/ca.crt" -CAkey "$out/hub/ca.key" -CAcreateserial -days 2 \
    -extfile "$out/hub/$1.cnf" -out "$out/hub/$1.crt" 2>/dev/null
}
hubleaf server /CN=hub subjectAltName=IP:127.0.0.1
hubleaf alice "/CN=alice/O=dev" extendedKeyUsage=clientAuth
hub_agent_token=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
"$hubbin" hub -listen 127.0.0.1:0 -cert "$out/hub/server.crt" -key "$out/hub/server.key" -client-ca "$out/hub/ca.crt" \
  -tokens "$out/tokens.csv" -agent-token "$hub_agent_token" -allow 'dev=*' -audit "$out/hub-audit.log" 2>"$out/hub.log" & pids+=($!); hub_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$out/hub.log" && break; sleep 0.1; done
hub=$(grep -o 'listening on https://[0-9.:]*' "$out/hub.log" | awk '{print $3}')
# start_hub_agent CLUSTER SERVER CA TOKEN-FILE: a remotedialer agent for one cluster; sets hub_agent_pid.
start_hub_agent() {
  "$hubbin" agent -hub "wss://${hub#https://}/v3/connect" -hub-ca "$out/hub/ca.crt" -cluster "$1" -agent-token "$hub_agent_token" \
    -apiserver "$2" ${3:+-apiserver-ca "$3"} -token-file "$4" 2>"$out/hub-agent-$1.log" & pids+=($!); hub_agent_pid=$!
}
# frp: frps with an HTTP vhost port; one frpc per target (TLS to frps, the default, with yamux).
frps_port=27100; frp_vhost=27180; frp_pass=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
frp_token=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
cat >"$out/frps.toml" <<TOML
bindAddr = "127.0.0.1"
bindPort = $frps_port
proxyBindAddr = "127.0.0.1"
vhostHTTPPort = $frp_vhost
auth.token = "$frp_token"
log.to = "$out/frps.log"
log.level = "warn"
TOML
"$frpdir/frps" -c "$out/frps.toml" >/dev/null 2>&1 & pids+=($!); frps_pid=$!
# start_frpc NAME DOMAIN PROXY-TOML-LINES: one frpc whose `type = "http"` proxy answers DOMAIN
# with basic auth alice:$frp_pass; sets frpc_pid.
start_frpc() {
  cat >"$out/frpc-$1.toml" <<TOML
serverAddr = "127.0.0.1"
serverPort = $frps_port
auth.token = "$frp_token"
loginFailExit = false
log.to = "$out/frpc-$1.log"
log.level = "warn"

[[proxies]]
name = "$1"
type = "http"
customDomains = ["$2"]
httpUser = "alice"
httpPassword = "$frp_pass"
$3
TOML
  "$frpdir/frpc" -c "$out/frpc-$1.toml" >/dev/null 2>&1 & pids+=($!); frpc_pid=$!
}
basic="Authorization: Basic $(printf 'alice:%s' "$frp_pass" | base64 -w0)"
bearer="Authorization: Bearer bench-token-0123456789abcdef0123456789"
# wait_ok URL CURL-ARGS...: up to 20 s for a 2xx.
wait_ok() { local u=$1; shift; for _ in $(seq 100); do curl -sf -o /dev/null "$@" "$u" && return 0; sleep 0.2; done; echo "not ready: $u" >&2; return 1; }
rss() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/VmRSS/{print $2}' /proc/"$p"/status))); done; echo $t; }

# nginx (the plain HTTP target, and port-forward's target in the API part).
mkdir -p "$out/nginx/www" "$out/nginx/tmp"
head -c 1024 /dev/urandom >"$out/nginx/www/1k.bin"; head -c 1048576 /dev/urandom >"$out/nginx/www/1m.bin"
pf_mib=64; [ $quick = 1 ] && pf_mib=32
head -c $((pf_mib << 20)) /dev/urandom >"$out/nginx/www/big.bin"
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
# A running pod (kwok) for exec and port-forward; its port 80 forwards to nginx.
$K -n bench create deployment web --image=registry.invalid/web:1 >/dev/null
ca_direct=$tbdir/pki/ca.crt; cert_direct=$tbdir/pki/admin.crt; key_direct=$tbdir/pki/admin.key

echo "==> agents for the testbed cluster: causeway, remotedialer, frpc, rathole"
NO_COLOR=1 CAUSEWAY_LOG=warn "$bin" agent --stub "$agents" --cluster bench --token "$tok" --ca-hash "$hash" \
  --state-dir "$out/agent" --kubeconfig "$tbkc" --token-file "$out/sa.token" --metrics-listen 127.0.0.1:19445 \
  2>"$out/agent.log" & pids+=($!); agent_pid=$!
stub_metrics=$(grep -o 'listening on metrics http://[0-9.:]*' "$out/stub.log" | awk '{print $4}')
start_hub_agent bench "$api" "$ca_direct" "$out/sa.token"; hub_agent_api_pid=$hub_agent_pid
# frp: the http2https plugin re-issues the request to the API server over TLS with the
# agent's token and alice's impersonation headers (frp has no per-user identity: one
# httpUser per proxy). Header names are TOML keys.
start_frpc api api.bench "[proxies.plugin]
type = \"http2https\"
localAddr = \"${api#https://}\"
hostHeaderRewrite = \"${api#https://}\"
requestHeaders.set.Authorization = \"Bearer $(cat "$out/sa.token")\"
requestHeaders.set.Impersonate-User = \"alice\"
requestHeaders.set.Impersonate-Group = \"dev\"

# kubectl (client-go) no longer sends basic auth: exec and port-forward through frp use
# this second proxy of the same frpc, the same plugin without httpUser.
[[proxies]]
name = \"api-kubectl\"
type = \"http\"
customDomains = [\"127.0.0.1\"]
[proxies.plugin]
type = \"http2https\"
localAddr = \"${api#https://}\"
hostHeaderRewrite = \"${api#https://}\"
requestHeaders.set.Authorization = \"Bearer $(cat "$out/sa.token")\"
requestHeaders.set.Impersonate-User = \"alice\"
requestHeaders.set.Impersonate-Group = \"dev\""; frpc_api_pid=$frpc_pid
api_hostport=${api#https://}; api_host=${api_hostport%:*}
rh_api=
if [ $have_rathole = 1 ]; then
  start_rathole api 127.0.0.1:2336 "$api_host:16443" "$api_hostport"; rh_api_pids="$rh_server_pid $rh_client_pid"
  wait_ok "https://$api_host:16443/version" --cacert "$ca_direct" --cert "$cert_direct" --key "$key_direct" && rh_api=https://$api_host:16443
fi
wait_ok "$users/clusters/bench/version" --cacert "$out/stub-ca.crt" --cert "$out/alice.crt" --key "$out/alice.key"
wait_ok "$hub/k8s/clusters/bench/version" --cacert "$out/hub/ca.crt" --cert "$out/hub/alice.crt" --key "$out/hub/alice.key"
wait_ok "http://127.0.0.1:$frp_vhost/api/v1/namespaces/default/configmaps?limit=1" -H "$basic" -H "Host: api.bench"

small=/api/v1/namespaces/default/configmaps?limit=1
big=/api/v1/namespaces/bench/configmaps
watch='/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=600'
api_paths="direct impersonated causeway remotedialer-hub remotedialer-hub-h2 frp"; [ -n "$rh_api" ] && api_paths="$api_paths rathole"
# setp PATH URL-PATH: A = the loadgen's arguments for that path, P = its tunnel processes.
setp() {
  case $1 in
    direct) A=(-url "$api$2" -ca "$ca_direct" -cert "$cert_direct" -key "$key_direct"); P=;;
    impersonated) A=(-url "$api$2" -ca "$ca_direct" -token-file "$out/sa.token" -header "Impersonate-User: alice"
                     -header "Impersonate-Group: dev" -header "Impersonate-Group: system:authenticated"); P=;;
    causeway) A=(-url "$users/clusters/bench$2" -ca "$out/stub-ca.crt" -cert "$out/alice.crt" -key "$out/alice.key"); P="$stub_pid $agent_pid";;
    remotedialer-hub) A=(-url "$hub/k8s/clusters/bench$2" -ca "$out/hub/ca.crt" -cert "$out/hub/alice.crt" -key "$out/hub/alice.key"); P="$hub_pid $hub_agent_api_pid";;
    remotedialer-hub-h2) A=(-url "$hub/k8s/clusters-h2/bench$2" -ca "$out/hub/ca.crt" -cert "$out/hub/alice.crt" -key "$out/hub/alice.key"); P="$hub_pid $hub_agent_api_pid";;
    frp) A=(-url "http://127.0.0.1:$frp_vhost$2" -host api.bench -h1 -basic "alice:$frp_pass"); P="$frps_pid $frpc_api_pid";;
    rathole) A=(-url "$rh_api$2" -ca "$ca_direct" -cert "$cert_direct" -key "$key_direct"); P="$rh_api_pids";;
  esac
}
echo "==> kube-apiserver: small GET, lists"
declare -A split
for c in 1 32; do
  for p in $api_paths; do
    setp $p "$small"
    if [ $p = causeway ]; then
      read -r ss0 sc0 < <(hsum "$stub_metrics" causeway_tunnel_response_headers_seconds)
      read -r as0 ac0 < <(hsum http://127.0.0.1:19445 causeway_agent_response_headers_seconds)
      perf_start "api-get-c$c" "${P// /,}" "$d_lat"
    fi
    gen $p "GET c=$c" latency $c $d_lat "$P" -- "${A[@]}"
    if [ $p = causeway ]; then
      perf_stop
      read -r ss1 sc1 < <(hsum "$stub_metrics" causeway_tunnel_response_headers_seconds)
      read -r as1 ac1 < <(hsum http://127.0.0.1:19445 causeway_agent_response_headers_seconds)
      split[$c]=$(python3 -c "print(f'stub {($ss1-$ss0)/max($sc1-$sc0,1)*1e6:.0f} µs, agent {($as1-$as0)/max($ac1-$ac0,1)*1e6:.0f} µs')")
    fi
  done
done
echo "==> 1,000 idle watches"
for p in $api_paths; do
  [ $p = direct ] || [ $p = impersonated ] && continue
  setp $p "$watch"
  sleep 2
  r0=$(rss $P)
  timeout 180 "$loadgen" watches -count 1000 -conns 20 -hold $hold "${A[@]}" >"$out/watches-$p.json" &
  wpid=$!
  for _ in $(seq 900); do [ -s "$out/watches-$p.json" ] && break; sleep 0.1; done; sleep 2
  r1=$(rss $P)
  wait $wpid || true
  [ -s "$out/watches-$p.json" ] || echo '{"mode":"watches","open":0,"failed":1000,"note":"no answer within 90 s"}' >"$out/watches-$p.json"
  python3 -c "import json,sys; a=sys.argv; d=json.load(open(a[1])); r0,r1=int(a[3]),int(a[4]); d.update(path=a[2], test='1,000 idle watches', kib_per_watch=round((r1-r0)/1000,1), rss_before_kib=r0, rss_after_kib=r1); open(a[5],'a').write(json.dumps(d)+'\\n')" \
    "$out/watches-$p.json" $p "$r0" "$r1" "$results"
  echo "   $p watches: $(cat "$out/watches-$p.json"), RSS $r0 → $r1 KiB"
done

echo "==> ~10 MiB lists"
for p in $api_paths; do
  setp $p "$big"
  [ $p = causeway ] && perf_start api-list "${P// /,}" "$d_big"
  gen $p "list 10 MiB c=4" throughput 4 $d_big "$P" -- "${A[@]}"
  [ $p = causeway ] && perf_stop
done

echo "==> exec and port-forward through kubectl"
# mkkc PATH: a kubeconfig for kubectl on that path.
mkkc() {
  local f=$out/kc-$1 server ca= user
  case $1 in
    direct) server=$api; ca=$ca_direct; user="client-certificate: $cert_direct
    client-key: $key_direct";;
    causeway) server=$users/clusters/bench; ca=$out/stub-ca.crt; user="client-certificate: $out/alice.crt
    client-key: $out/alice.key";;
    remotedialer-hub) server=$hub/k8s/clusters/bench; ca=$out/hub/ca.crt; user="client-certificate: $out/hub/alice.crt
    client-key: $out/hub/alice.key";;
    frp) server=http://127.0.0.1:$frp_vhost; user="token: unused";;
    rathole) server=$rh_api; ca=$ca_direct; user="client-certificate: $cert_direct
    client-key: $key_direct";;
  esac
  cat >"$f" <<KC
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: $server
${ca:+    certificate-authority: $ca}
users:
- name: u
  user:
    $user
contexts:
- name: c
  context: {cluster: c, user: u, namespace: bench}
current-context: c
KC
  echo "$f"
}
$K -n bench wait --for=condition=Available deployment/web --timeout=60s >/dev/null
pod=$($K -n bench get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
printf '{"apiVersion":"kwok.x-k8s.io/v1alpha1","kind":"PortForward","metadata":{"name":"%s","namespace":"bench"},"spec":{"forwards":[{"ports":[80],"target":{"address":"127.0.0.1","port":18080}}]}}' "$pod" | $K apply -f - >/dev/null
sleep 2
exec_mib=$((pf_mib * 2))
for p in direct causeway remotedialer-hub frp rathole; do
  [ $p = rathole ] && [ -z "$rh_api" ] && continue
  kc=$(mkkc $p); setp $p x
  # exec: the pod's stdout is $exec_mib MiB of zeros (kwok runs the command on this machine).
  s0=$(sample $P); t0=$(date +%s.%N)
  n=$(timeout 120 $kubectl --kubeconfig "$kc" exec "$pod" -- head -c $((exec_mib << 20)) /dev/zero 2>"$out/exec-$p.err" | wc -c) || true
  t1=$(date +%s.%N); s1=$(sample $P)
  python3 "$tp" rec "$results" $p "exec stdout" "{\"requests\": $((n >> 20)), \"bytes\": $n, \"mib_per_s\": $(python3 -c "print(round($n/1048576/($t1-$t0),1))"), \"errors\": $([ "$n" = $((exec_mib << 20)) ] && echo 0 || echo 1)}" "$s0" "$s1"
  # port-forward: kubectl port-forward to the pod's port 80 (nginx), $pf_mib MiB downloaded twice.
  timeout 120 $kubectl --kubeconfig "$kc" port-forward "pod/$pod" 0:80 >"$out/pf-$p.log" 2>&1 & pfpid=$!
  for _ in $(seq 100); do grep -q 'Forwarding from 127.0.0.1' "$out/pf-$p.log" && break; sleep 0.1; done
  lport=$(grep -o 'Forwarding from 127.0.0.1:[0-9]*' "$out/pf-$p.log" | head -1 | awk -F: '{print $2}')
  n=0
  if [ -n "$lport" ]; then
    curl -s -o /dev/null "http://127.0.0.1:$lport/1k.bin" || true
    s0=$(sample $P); t0=$(date +%s.%N)
    for _ in 1 2; do n=$((n + $(timeout 60 curl -s "http://127.0.0.1:$lport/big.bin" | wc -c))); done
    t1=$(date +%s.%N); s1=$(sample $P)
  fi
  kill $pfpid 2>/dev/null || true; wait $pfpid 2>/dev/null || true
  [ -n "$lport" ] && python3 "$tp" rec "$results" $p "port-forward download" "{\"requests\": $((n >> 20)), \"bytes\": $n, \"mib_per_s\": $(python3 -c "print(round($n/1048576/($t1-$t0),1))"), \"errors\": $([ "$n" = $((pf_mib << 21)) ] && echo 0 || echo 1)}" "$s0" "$s1"
  echo "   $p: exec and port-forward done ($(tail -c 300 "$out/pf-$p.log" | tr '\n' ' '))"
done
fi

if [ $part != api ]; then
echo "==> plain HTTP: nginx through every path (wrk)"
# nginx stands in for an API server behind more agents: "web" reaches it over plain
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
start_hub_agent web http://127.0.0.1:18080 "" "$out/web.token"; hub_agent_web_pid=$hub_agent_pid
start_frpc web web.bench "localIP = \"127.0.0.1\"
localPort = 18080"; frpc_web_pid=$frpc_pid
for c in web webtls; do
  wait_ok "$users/clusters/$c/1k.bin" --cacert "$out/stub-ca.crt" -H "$bearer"
  curl -sf --cacert "$out/stub-ca.crt" -H "$bearer" "$users/clusters/$c/1m.bin" | cmp - "$out/nginx/www/1m.bin"
done
wait_ok "$hub/k8s/clusters/web/1k.bin" --cacert "$out/hub/ca.crt" -H "$bearer"
curl -sf --cacert "$out/hub/ca.crt" -H "$bearer" "$hub/k8s/clusters/web/1m.bin" | cmp - "$out/nginx/www/1m.bin"
wait_ok "http://127.0.0.1:$frp_vhost/1k.bin" -H "$basic" -H "Host: web.bench"
curl -sf -H "$basic" -H "Host: web.bench" "http://127.0.0.1:$frp_vhost/1m.bin" | cmp - "$out/nginx/www/1m.bin"
if [ $have_rathole = 1 ]; then
  start_rathole web 127.0.0.1:2335 127.0.0.1:18094 127.0.0.1:18080; rh_web_pids="$rh_server_pid $rh_client_pid"
  wait_ok http://127.0.0.1:18094/1k.bin
fi

# run_wrk PATH URL CONNS SIZE [wrk args]: one wrk run recorded in results.jsonl.
run_wrk() {
  local p=$1 url=$2 c=$3 size=$4; shift 4
  local procs=
  case $p in
    causeway) procs="$stub_pid $agent_web_pid";; causeway-tls) procs="$stub_pid $agent_webtls_pid";;
    remotedialer-hub) procs="$hub_pid $hub_agent_web_pid";; frp) procs="$frps_pid $frpc_web_pid";;
    rathole) procs="$rh_web_pids";;
  esac
  timeout 10 wrk -t2 -c"$c" -d2s "$@" "$url/$size" >/dev/null 2>&1 || true
  local test="nginx ${size%.bin} c=$c" tag=$p-${size%.bin}-c$c
  [ $p = causeway ] && perf_start "plain-${size%.bin}-c$c" "${procs// /,}" "$d_wrk"
  local s0 s1; s0=$(sample $procs)
  { time timeout $((d_wrk + 25)) wrk -t$([ "$c" = 1 ] && echo 1 || echo 2) -c"$c" -d${d_wrk}s --latency "$@" "$url/$size" >"$out/wrk-$tag.txt" 2>&1; } 2>"$out/time-$tag.txt" || true
  s1=$(sample $procs)
  [ $p = causeway ] && perf_stop
  python3 "$tp" rec "$results" "$p" "$test" "$(python3 "$tp" wrk "$out/wrk-$tag.txt" "$out/time-$tag.txt")" "$s0" "$s1"
  echo "   $p $test: $(grep -E 'Requests/sec' "$out/wrk-$tag.txt" | xargs)"
}
TIMEFORMAT='%3U %3S'
plain_paths="direct direct-tls causeway causeway-tls remotedialer-hub frp"; [ $have_rathole = 1 ] && plain_paths="$plain_paths rathole"
for size_c in "1k.bin 32" "1m.bin 32" "1k.bin 1"; do
  set -- $size_c
  for p in $plain_paths; do
    case $p in
      direct) run_wrk $p http://127.0.0.1:18080 $2 $1;;
      direct-tls) run_wrk $p https://127.0.0.1:18443 $2 $1;;
      causeway) run_wrk $p "$users/clusters/web" $2 $1 -H "$bearer";;
      causeway-tls) run_wrk $p "$users/clusters/webtls" $2 $1 -H "$bearer";;
      remotedialer-hub) run_wrk $p "$hub/k8s/clusters/web" $2 $1 -H "$bearer";;
      frp) run_wrk $p "http://127.0.0.1:$frp_vhost" $2 $1 -H "$basic" -H "Host: web.bench";;
      rathole) run_wrk $p http://127.0.0.1:18094 $2 $1;;
    esac
  done
done
fi

{
echo "# Tunnel benchmark $(date -u +%FT%TZ)"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); load generator, servers and all tunnels share them."
echo "Causeway: ${CAUSEWAY_BUILT_FROM:-commit $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- tunnel src || echo ' + uncommitted changes in tunnel/ or src/')}."
echo "Binaries: $(cat "$out/binaries.txt")."
echo
python3 "$tp" render "$results"
echo
if [ -n "${split[1]:-}" ]; then
  echo "Causeway, mean time to response headers: c=1 ${split[1]}; c=32 ${split[32]} (stub: request in → headers out; agent: request in → the API server's headers)."
  echo
fi
[ $have_rathole = 1 ] || echo "rathole was not found at $rathole: run \`cargo install rathole --root .cache/rathole\` for its rows."
echo "Raw: $out (results.jsonl, wrk-*.txt, watches-*.json, perf-*.txt)"
} >"$report"
echo
cat "$report"
for f in "$out"/perf-*.txt; do [ -e "$f" ] && { echo "== $f"; head -25 "$f"; }; done
exit 0
