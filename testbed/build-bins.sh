#!/usr/bin/env bash
# Builds the testbed's real Kubernetes binaries from Go modules into a git-ignored cache.
#
#   testbed/build-bins.sh [--with-chart-tools]
#
# Pins live in testbed/go/*/go.mod (Kubernetes v1.36.3, kubectl v1.29.15, etcd v3.6.8, kwok
# v0.8.0, metrics-server v0.8.0; helm and kubeconform with --with-chart-tools). A group is
# rebuilt only when its go.mod/go.sum or its build command (the build function, flags,
# outputs) change.
# Output: ${CAUSEWAY_BIN_DIR:-.cache/bin}/{kube-apiserver,kube-controller-manager,kube-scheduler,
# kubectl,kubectl-1.29,etcd,kwok,metrics-server[,helm,kubeconform]}, kwok-stages.yaml and
# BUILD-INFO with build times. kubectl-1.29 is an old kubectl that uses SPDY for exec/attach/port-forward (>= 1.31
# use WebSocket), for the tunnel tests.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CAUSEWAY_BIN_DIR:-$root/.cache/bin}
mkdir -p "$bin"
export GOFLAGS="${GOFLAGS:-} -trimpath"
jobs=${GO_BUILD_JOBS:-$(nproc)}

# k8s_ldflags GROUP: link flags that make `version` print the k8s.io/kubernetes version pinned
# in testbed/go/GROUP/go.mod.
k8s_ldflags() {
  local version minor flags="-s -w" pkg
  version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' "$root/testbed/go/$1/go.mod")
  [ -n "$version" ] || { echo "error: no k8s.io/kubernetes in testbed/go/$1/go.mod" >&2; return 1; }
  minor=$(echo "$version" | cut -d. -f2)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}
k8s_ldflags=$(k8s_ldflags k8s)
kubectl_129_ldflags=$(k8s_ldflags kubectl-1.29)
# metrics-server prints client-go's version (as its Makefile sets it), taken from its pin.
metrics_server_version=$(awk '$1=="require" && $2=="sigs.k8s.io/metrics-server" {print $3}' \
  "$root/testbed/go/metrics-server/go.mod")
metrics_server_ldflags="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$metrics_server_version"

# build GROUP "LDFLAGS" OUTPUT_NAME=PACKAGE...
build() {
  local group=$1 ldflags=$2; shift 2
  local dir=$root/testbed/go/$group
  local stamp
  # What decides the output: the pins, this function, the flags and the outputs. (Not the
  # whole script, so that adding a group does not rebuild the others.)
  stamp=$( { cat "$dir/go.mod" "$dir/go.sum"; declare -f build; echo "$GOFLAGS|$ldflags|$*"; } |
    sha256sum | cut -c1-16)
  local all_there=1 spec
  for spec in "$@"; do [ -x "$bin/${spec%%=*}" ] || all_there=0; done
  if [ "$all_there" = 1 ] && [ "$(cat "$bin/.stamp-$group" 2>/dev/null)" = "$stamp" ]; then
    echo "==> $group: up to date ($(printf '%s ' "${@%%=*}"))"
    return
  fi
  echo "==> $group: building $(printf '%s ' "${@%%=*}")(first build of Kubernetes takes 10-20 min on 2 cores)"
  local start=$SECONDS
  (cd "$dir" && go mod download)
  for spec in "$@"; do
    local out=${spec%%=*} pkg=${spec#*=} t=$SECONDS
    echo "    go build $pkg"
    (cd "$dir" && go build -p "$jobs" -ldflags "$ldflags" -o "$bin/$out.tmp" "$pkg")
    mv "$bin/$out.tmp" "$bin/$out"
    echo "    built $out in $((SECONDS - t)) s"
  done
  echo "$stamp" > "$bin/.stamp-$group"
  echo "$group: $((SECONDS - start)) s on $(nproc) cores, $(date -u +%FT%TZ)" >> "$bin/BUILD-INFO"
  echo "==> $group: done in $((SECONDS - start)) s"
}

command -v go >/dev/null || { echo "error: go is not installed (need Go >= 1.26)" >&2; exit 1; }

build k8s "$k8s_ldflags" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
  kubectl=k8s.io/kubernetes/cmd/kubectl
# An old kubectl, the last v1.29 patch: it uses SPDY for exec, attach and port-forward (WebSocket
# is the default from 1.31), so the tunnel tests run a real client of each kind.
build kubectl-1.29 "$kubectl_129_ldflags" kubectl-1.29=k8s.io/kubernetes/cmd/kubectl
build etcd "-s -w" etcd=go.etcd.io/etcd/server/v3
build kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v0.8.0" kwok=sigs.k8s.io/kwok/cmd/kwok
# metrics-server serves metrics.k8s.io (HPAs, `kubectl top`) from kwok's simulated pod usage.
# Its own group: it pins the Kubernetes v0.33 libraries, so it shares little with the above.
build metrics-server "$metrics_server_ldflags" \
  metrics-server=sigs.k8s.io/metrics-server/cmd/metrics-server
# kwok ships no stages inside its binary: without them nodes never go Ready and pods never
# Running. Take the default ones (what kwokctl uses) from the pinned kwok module.
# (`go mod download` also fetches the module when the Go module cache is empty.)
kwok_dir=$(cd "$root/testbed/go/kwok" && go mod download -json sigs.k8s.io/kwok |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -d "$kwok_dir/kustomize/stage" ] || { echo "error: kwok module not found ($kwok_dir)" >&2; exit 1; }
{
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$kwok_dir/kustomize/stage/$f.yaml"
  done
} > "$bin/kwok-stages.yaml.tmp"
mv "$bin/kwok-stages.yaml.tmp" "$bin/kwok-stages.yaml"
echo "==> kwok default stages: $bin/kwok-stages.yaml"
if [ "${1:-}" = "--with-chart-tools" ]; then
  build tools "-s -w" helm=helm.sh/helm/v3/cmd/helm kubeconform=github.com/yannh/kubeconform/cmd/kubeconform
fi
echo "binaries in $bin"
