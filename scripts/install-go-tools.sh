#!/usr/bin/env bash
# Build the Go command-line tools the project needs (helm, sops, age, actionlint)
# once, into a cache outside the repository, and reuse them on later runs.
#
# Why go install: these machines reach the Go module proxy but no download
# site, so prebuilt release binaries cannot be fetched. Building from the
# module proxy is slow the first time (minutes on 2 cores) and instant after.
#
# The cache directory is $PANGEO_TOOLS_DIR (default: ~/.cache/pangeo-cloud/bin).
# Pinned versions are listed below; bump them here and nowhere else.
set -euo pipefail

TOOLS_DIR="${PANGEO_TOOLS_DIR:-$HOME/.cache/pangeo-cloud/bin}"
mkdir -p "$TOOLS_DIR"

# name  module@version  (the binary name is the last path element before @)
TOOLS=(
  "helm helm.sh/helm/v3/cmd/helm@v3.19.0"
  "sops github.com/getsops/sops/v3/cmd/sops@v3.13.3"
  "age filippo.io/age/cmd/age@v1.2.1"
  "age-keygen filippo.io/age/cmd/age-keygen@v1.2.1"
  "actionlint github.com/rhysd/actionlint/cmd/actionlint@v1.7.7"
)

for entry in "${TOOLS[@]}"; do
  name="${entry%% *}"
  module="${entry#* }"
  version="${module##*@}"
  stamp="$TOOLS_DIR/.$name.version"
  if [[ -x "$TOOLS_DIR/$name" && -f "$stamp" && "$(cat "$stamp")" == "$module" ]]; then
    continue
  fi
  echo "==> building $name $version with go install (first time only)"
  start=$(date +%s)
  GOBIN="$TOOLS_DIR" CGO_ENABLED=0 go install -ldflags "-s -w" "$module"
  echo "$module" > "$stamp"
  echo "    $name built in $(( $(date +%s) - start ))s"
done
echo "Go tools ready in $TOOLS_DIR"
