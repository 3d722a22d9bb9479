#!/usr/bin/env bash
# Install what the project needs outside Python and Go, idempotently:
#   - configurable-http-proxy (npm), JupyterHub's proxy, into the tool cache;
#   - Chromium from Debian's packages, for the browser tests;
#   - Prometheus from Debian's packages, for `up`'s metrics and the usage report.
# Safe to run again: each step checks first and does nothing when satisfied.
set -euo pipefail

CACHE="${PANGEO_CACHE_DIR:-$HOME/.cache/pangeo-cloud}"
CHP_VERSION="4.6.3"

if [[ ! -x "$CACHE/node/bin/configurable-http-proxy" ]]; then
  echo "==> installing configurable-http-proxy $CHP_VERSION (npm)"
  mkdir -p "$CACHE/node"
  npm install --silent --no-audit --no-fund --global --prefix "$CACHE/node" \
    "configurable-http-proxy@$CHP_VERSION"
fi

if [[ "${PANGEO_SKIP_CHROMIUM:-}" != "1" && ! -x /usr/bin/chromium ]]; then
  echo "==> installing chromium (Debian package) for the browser tests"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
fi
if [[ "${PANGEO_SKIP_PROMETHEUS:-}" != "1" && ! -x /usr/bin/prometheus ]]; then
  echo "==> installing prometheus (Debian package) for metrics and the usage report"
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # --no-install-recommends: the server only (no node exporter, no service start).
  $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
echo "system tools ready"
