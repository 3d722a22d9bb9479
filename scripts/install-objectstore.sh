#!/usr/bin/env bash
# Build the S3-compatible object store that `pangeo-cloud up` serves the scratch
# bucket from (MinIO server), once, into the tool cache, and reuse it after.
#
# Why go install: these machines reach the Go module proxy but no download
# site, so MinIO's release binaries cannot be fetched. The first build takes a
# few minutes on 2 cores; later runs return at once. MinIO publishes no semver
# tags, so the pin is the module proxy's pseudo-version of a release commit.
#
# If the build fails, `pangeo-cloud up` falls back to moto's S3 server (a
# Python package already in the virtualenv) and says so when it starts.
set -euo pipefail

TOOLS_DIR="${PANGEO_TOOLS_DIR:-$HOME/.cache/pangeo-cloud/bin}"
MODULE="github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c"
stamp="$TOOLS_DIR/.minio.version"
mkdir -p "$TOOLS_DIR"

if [[ -x "$TOOLS_DIR/minio" && -f "$stamp" && "$(cat "$stamp")" == "$MODULE" ]]; then
  echo "object store ready: $TOOLS_DIR/minio"
  exit 0
fi
if [[ "${PANGEO_SKIP_OBJECTSTORE:-}" == "1" ]]; then
  echo "object store build skipped (PANGEO_SKIP_OBJECTSTORE=1); pangeo-cloud up will use moto"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "warning: go not found; pangeo-cloud up will use moto's S3 server instead of MinIO" >&2
  exit 0
fi
echo "==> building minio (S3-compatible scratch store) with go install (first time only)"
start=$(date +%s)
if GOBIN="$TOOLS_DIR" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$MODULE"; then
  echo "$MODULE" > "$stamp"
  echo "    minio built in $(( $(date +%s) - start ))s"
else
  echo "warning: building minio failed; pangeo-cloud up will use moto's S3 server" >&2
fi
