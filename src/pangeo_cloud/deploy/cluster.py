"""Reaching the Kubernetes cluster of a stage, or saying clearly why not.

This module owns the read-only preflight that every cluster-touching command
(deploy, diff) runs before anything else reaches the cluster: which kubeconfig
and context are used (``$KUBECONFIG`` or ``~/.kube/config``, and the stage's
``kubeContext``), and whether the API server answers. Failures are one line
naming the kubeconfig, the context and the tool's own error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pangeo_cloud.deploy.tools import ToolError, find_tool, last_line, run

CHECK_TIMEOUT = 30  # seconds


class ClusterUnreachable(ToolError):
    """The stage's cluster cannot be reached (one line)."""


def kubeconfig_description() -> str:
    """Where the kubeconfig comes from, for messages."""
    env = os.environ.get("KUBECONFIG")
    if env:
        files = [f for f in env.split(os.pathsep) if f]
        missing = [f for f in files if not Path(f).is_file()]
        return f"KUBECONFIG={env}" + (" (file missing)" if missing else "")
    default = Path.home() / ".kube" / "config"
    return f"{default}" + ("" if default.is_file() else " (absent; KUBECONFIG is unset)")


def helm_context_args(kube_context: str | None) -> list[str]:
    return ["--kube-context", kube_context] if kube_context else []


def kubectl_context_args(kube_context: str | None) -> list[str]:
    return ["--context", kube_context] if kube_context else []


def _unreachable(kube_context: str | None, detail: str) -> ClusterUnreachable:
    context = kube_context or "the current context"
    return ClusterUnreachable(
        f"cannot reach the Kubernetes cluster ({kubeconfig_description()}, {context}): {detail}"
    )


def check_with_helm(namespace: str, kube_context: str | None = None) -> None:
    """Raise ClusterUnreachable unless helm can list releases in `namespace`."""
    args = [
        find_tool("helm"),
        "list",
        "--namespace",
        namespace,
        "--short",
        *helm_context_args(kube_context),
    ]
    try:
        result = run(args, check=False, timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise _unreachable(kube_context, f"no answer within {CHECK_TIMEOUT} s") from None
    if result.returncode != 0:
        raise _unreachable(kube_context, last_line(result.stderr or result.stdout))


def check_with_kubectl(kube_context: str | None = None) -> None:
    """Raise ClusterUnreachable unless kubectl gets an answer from the API server."""
    args = [
        find_tool("kubectl"),
        "version",
        "--output=json",
        f"--request-timeout={CHECK_TIMEOUT}s",
        *kubectl_context_args(kube_context),
    ]
    try:
        result = run(args, check=False, timeout=CHECK_TIMEOUT + 5)
    except subprocess.TimeoutExpired:
        raise _unreachable(kube_context, f"no answer within {CHECK_TIMEOUT} s") from None
    if result.returncode != 0 or '"serverVersion"' not in result.stdout:
        raise _unreachable(kube_context, last_line(result.stderr or result.stdout))
