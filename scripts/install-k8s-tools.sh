#!/usr/bin/env bash
# Build the binaries of the loopback Kubernetes control plane used by the test
# suite (src/pangeo_cloud/testing/k8s.py) once, into a cache outside the
# repository, and reuse them on later runs:
#
#   etcd                     go.etcd.io/etcd/server/v3
#   kube-apiserver           k8s.io/kubernetes/cmd/kube-apiserver
#   kube-controller-manager  k8s.io/kubernetes/cmd/kube-controller-manager
#   kube-scheduler           k8s.io/kubernetes/cmd/kube-scheduler
#   kubectl                  k8s.io/kubernetes/cmd/kubectl
#   kwok                     sigs.k8s.io/kwok/cmd/kwok (simulated nodes and pods)
#   kwok-stages.yaml         kwok's "fast" node/pod stages plus node leases, taken
#                            from the pinned kwok module (kwok refuses to start
#                            without stages; they are not compiled into it)
#
# Versions are pinned in scripts/k8s-tools/go.mod (and nowhere else); that
# module replaces every k8s.io/* staging module with its published tag. All
# missing or outdated binaries are compiled by ONE `go build` so that they
# share the compilation of client-go, apiserver and friends.
#
# The cache is $PANGEO_TOOLS_DIR (default: ~/.cache/pangeo-cloud/bin), the same
# as scripts/install-go-tools.sh. Next to each binary, .NAME.version records
# the module@version it was built from; a binary is rebuilt only when that
# pin changes. A cold build took 8 min on 2 cores (module download included;
# the timing is printed at the end); later runs return at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod_dir="$here/k8s-tools"
TOOLS_DIR="${PANGEO_TOOLS_DIR:-$HOME/.cache/pangeo-cloud/bin}"
mkdir -p "$TOOLS_DIR"

log() { printf '==> %s\n' "$*"; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  # apt_install CMD PACKAGE: install PACKAGE with apt-get unless CMD exists.
  command -v "$1" >/dev/null 2>&1 && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $1 is missing and there is no apt-get; install $2 by hand" >&2
    exit 1
  fi
  if [[ $apt_updated -eq 0 ]]; then
    log "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install $2"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# openssl makes the certificates at start-up; go builds everything else.
apt_install openssl openssl
apt_install go golang-go
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
if [[ "$go_minor" -lt 21 ]]; then
  # Go >= 1.21 fetches the toolchain named by go.mod from the module proxy.
  echo "error: $(go env GOVERSION) is too old to build scripts/k8s-tools (need go >= 1.21)" >&2
  exit 1
fi

# module version, read from the require block of scripts/k8s-tools/go.mod
pinned() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$mod_dir/go.mod"; }
K8S_VERSION=$(pinned k8s.io/kubernetes)
ETCD_VERSION=$(pinned go.etcd.io/etcd/server/v3)
KWOK_VERSION=$(pinned sigs.k8s.io/kwok)
for v in K8S_VERSION ETCD_VERSION KWOK_VERSION; do
  [[ -n "${!v}" ]] || { echo "error: cannot read $v from $mod_dir/go.mod" >&2; exit 1; }
done

# name  package  stamp
TOOLS=(
  "etcd go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes@$K8S_VERSION"
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes@$K8S_VERSION"
  "kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes@$K8S_VERSION"
  "kubectl k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes@$K8S_VERSION"
  "kwok sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok@$KWOK_VERSION"
)

# kwok-stages.yaml: the Stage documents of kwok's kustomize/stage/fast set
# (node/fast, node/heartbeat-with-lease, pod/fast) of the pinned kwok version,
# concatenated from the Go module cache. Generated, never committed.
write_kwok_stages() {
  local stamp="sigs.k8s.io/kwok@$KWOK_VERSION" dest="$TOOLS_DIR/kwok-stages.yaml"
  if [[ -f "$dest" && -f "$TOOLS_DIR/.kwok-stages.yaml.version" \
        && "$(cat "$TOOLS_DIR/.kwok-stages.yaml.version")" == "$stamp" ]]; then
    return 0
  fi
  local kwok_dir
  kwok_dir=$(cd "$mod_dir" && go mod download sigs.k8s.io/kwok \
             && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  local f n=0
  : >"$dest.tmp"
  for f in "$kwok_dir"/kustomize/stage/node/fast/*.yaml \
           "$kwok_dir"/kustomize/stage/node/heartbeat-with-lease/*.yaml \
           "$kwok_dir"/kustomize/stage/pod/fast/*.yaml; do
    grep -q '^kind: Stage$' "$f" || continue
    { echo "---"; cat "$f"; } >>"$dest.tmp"
    n=$((n + 1))
  done
  if [[ $n -eq 0 ]]; then
    echo "error: no kwok Stage documents found under $kwok_dir/kustomize/stage" >&2
    exit 1
  fi
  mv "$dest.tmp" "$dest"
  echo "$stamp" >"$TOOLS_DIR/.kwok-stages.yaml.version"
  log "wrote $n kwok stages to $dest"
}
write_kwok_stages

todo_names=()
todo_pkgs=()
for entry in "${TOOLS[@]}"; do
  read -r name pkg stamp <<<"$entry"
  if [[ -x "$TOOLS_DIR/$name" && -f "$TOOLS_DIR/.$name.version" \
        && "$(cat "$TOOLS_DIR/.$name.version")" == "$stamp" ]]; then
    continue
  fi
  todo_names+=("$name")
  todo_pkgs+=("$pkg")
done

if [[ ${#todo_names[@]} -eq 0 ]]; then
  log "k8s tools up to date in $TOOLS_DIR (kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
  exit 0
fi

log "building ${todo_names[*]} (kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
log "one go build, $(nproc) cores; a cold build (empty Go caches) took about 8 min on 2 cores"
start=$(date +%s)

# Version stamps that Kubernetes' own build (hack/lib/version.sh) sets; without
# them the binaries report v0.0.0 and charts with a kubeVersion constraint
# (z2jh: >=1.28.0-0) refuse to install.
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

out="$(mktemp -d "$TOOLS_DIR/.k8s-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT
(
  cd "$mod_dir"
  log "go mod download"
  go mod download
  log "go build -o $out/ ${todo_pkgs[*]}"
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/" "${todo_pkgs[@]}"
)
# go names a binary after its package path, dropping a /vN suffix: etcd's
# main package go.etcd.io/etcd/server/v3 becomes "server".
[[ -f "$out/server" ]] && mv "$out/server" "$out/etcd"

for entry in "${TOOLS[@]}"; do
  read -r name pkg stamp <<<"$entry"
  [[ " ${todo_names[*]} " == *" $name "* ]] || continue
  if [[ ! -x "$out/$name" ]]; then
    echo "error: go build did not produce $name" >&2
    exit 1
  fi
  mv -f "$out/$name" "$TOOLS_DIR/$name"
  echo "$stamp" >"$TOOLS_DIR/.$name.version"
done

log "built ${todo_names[*]} in $(( $(date +%s) - start ))s into $TOOLS_DIR"
