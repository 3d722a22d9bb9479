#!/usr/bin/env bash
# Build the Go command-line tools the project needs (helm, sops, age, actionlint)
# once, into a cache outside the repository, reuse them on later runs, and check
# every binary, built or reused, against scripts/tool-checksums.txt.
#
# Why go install: these machines reach the Go module proxy but no download
# site, so prebuilt release binaries cannot be fetched. Building from the
# module proxy is slow the first time (minutes on 2 cores) and instant after.
#
# Why the checksums hold: `go install` checks every module it downloads against
# sum.golang.org (GOSUMDB; refused below if switched off), and the builds are
# reproducible: -trimpath, an empty build id, CGO off, GOFLAGS cleared and no
# toolchain switch give the same bytes for the same module version, Go version
# and platform on any machine. So a binary from a cache that someone else
# wrote (a poisoned CI cache, a tampered file) fails the check. A tool built
# with a Go version or platform that has no recorded line is reported; with
# PANGEO_TOOLS_VERIFY=strict (the deploy job) that is an error too.
# Record lines for a new version with scripts/install-go-tools.sh --record.
#
# The cache directory is $PANGEO_TOOLS_DIR (default: ~/.cache/pangeo-cloud/bin).
# Pinned versions are listed below; bump them here and nowhere else.
set -euo pipefail

TOOLS_DIR="${PANGEO_TOOLS_DIR:-$HOME/.cache/pangeo-cloud/bin}"
CHECKSUMS="$(cd "$(dirname "$0")" && pwd)/tool-checksums.txt"
VERIFY="${PANGEO_TOOLS_VERIFY:-warn}"
RECORD=0
[[ "${1:-}" == "--record" ]] && RECORD=1
mkdir -p "$TOOLS_DIR"

# name  module@version  (the binary name is the last path element before @)
TOOLS=(
  "helm helm.sh/helm/v3/cmd/helm@v3.19.0"
  "sops github.com/getsops/sops/v3/cmd/sops@v3.13.3"
  "age filippo.io/age/cmd/age@v1.2.1"
  "age-keygen filippo.io/age/cmd/age-keygen@v1.2.1"
  "actionlint github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"
)

# Module checksums are verified against the checksum database, or nothing is built.
if [[ "$(go env GOSUMDB)" == "off" || -n "$(go env GONOSUMDB)$(go env GONOSUMCHECK)$(go env GOINSECURE)" ]]; then
  echo "refusing to build: GOSUMDB is off or GONOSUMDB/GONOSUMCHECK/GOINSECURE is set," \
    "so downloaded modules would not be checked against sum.golang.org" >&2
  exit 1
fi
export GOFLAGS="" GOTOOLCHAIN=local CGO_ENABLED=0
GO_VERSION="$(go env GOVERSION)"
PLATFORM="$(go env GOOS)/$(go env GOARCH)"
BUILD="$GO_VERSION $PLATFORM -trimpath"

recorded() {  # name module -> the recorded sha256 for this Go version and platform
  awk -v n="$1" -v m="$2" -v g="$GO_VERSION" -v p="$PLATFORM" \
    '$1 == n && $2 == m && $3 == g && $4 == p { print $5 }' "$CHECKSUMS"
}

for entry in "${TOOLS[@]}"; do
  name="${entry%% *}"
  module="${entry#* }"
  version="${module##*@}"
  stamp="$TOOLS_DIR/.$name.version"
  if ! [[ -x "$TOOLS_DIR/$name" && -f "$stamp" && "$(cat "$stamp")" == "$module $BUILD" ]]; then
    echo "==> building $name $version with go install (first time only)"
    start=$(date +%s)
    GOBIN="$TOOLS_DIR" go install -trimpath -ldflags "-s -w -buildid=" "$module"
    echo "$module $BUILD" > "$stamp"
    echo "    $name built in $(( $(date +%s) - start ))s"
  fi
  actual="$(sha256sum "$TOOLS_DIR/$name" | cut -d' ' -f1)"
  expected="$(recorded "$name" "$module")"
  if [[ "$RECORD" == 1 && -z "$expected" ]]; then
    echo "$name $module $GO_VERSION $PLATFORM $actual" >> "$CHECKSUMS"
    echo "    recorded $name $actual"
  elif [[ -z "$expected" ]]; then
    message="$name: no checksum recorded for $module with $GO_VERSION on $PLATFORM in $CHECKSUMS"
    if [[ "$VERIFY" == strict ]]; then
      echo "error: $message (PANGEO_TOOLS_VERIFY=strict)" >&2
      exit 1
    fi
    echo "note: $message; its modules were checked against sum.golang.org only"
  elif [[ "$actual" != "$expected" ]]; then
    rm -f "$TOOLS_DIR/$name" "$stamp"
    echo "error: $TOOLS_DIR/$name has sha256 $actual, but $CHECKSUMS records $expected" \
      "for $module with $GO_VERSION on $PLATFORM; removed it (rebuild with this script)" >&2
    exit 1
  fi
done
echo "Go tools ready in $TOOLS_DIR"
