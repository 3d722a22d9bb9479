"""The tool cache: where the install scripts put the programs we run, and finding them.

``~/.cache/pangeo-cloud`` (``$PANGEO_CACHE_DIR``), outside any repository:
``bin/`` (``$PANGEO_TOOLS_DIR``) holds the Go tools (helm, sops, age, MinIO, the
Kubernetes control-plane binaries and kwok), ``node/bin/`` the npm
configurable-http-proxy, ``k8s/`` (``$PANGEO_K8S_STATE``) the loopback control
plane's state. A program on ``$PATH`` wins over the cached one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def cache_dir() -> Path:
    """The cache's root (scripts/install-system.sh and the Makefile use the same)."""
    return Path(os.environ.get("PANGEO_CACHE_DIR", Path.home() / ".cache" / "pangeo-cloud"))


def tools_dir() -> Path:
    """Where scripts/install-go-tools.sh and install-k8s-tools.sh build the Go tools."""
    return Path(os.environ.get("PANGEO_TOOLS_DIR", cache_dir() / "bin"))


def node_dir() -> Path:
    """The npm prefix of configurable-http-proxy (scripts/install-system.sh)."""
    return cache_dir() / "node"


def k8s_state_dir() -> Path:
    """Where the loopback control plane keeps certificates, kubeconfig, etcd data, logs."""
    return Path(os.environ.get("PANGEO_K8S_STATE", cache_dir() / "k8s"))


def find(name: str, directory: Path | None = None) -> str | None:
    """`name` on $PATH, else the executable in `directory` (default: :func:`tools_dir`)."""
    found = shutil.which(name)
    if found:
        return found
    candidate = (directory or tools_dir()) / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None
