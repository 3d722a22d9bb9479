"""The Kubernetes version a deployment declares (``cluster.kubernetesVersion``).

It must be a quoted ``"1.N"`` that the manifest check has API schemas for (the
``kubernetes-validate`` package's versions): an unquoted ``1.30`` is the YAML
number 1.3, so it is refused with the fix.
"""

from __future__ import annotations

import re
from typing import Any

from pangeo_cloud.config.yamlpos import Document, KeyPath

DEFAULT_KUBERNETES_VERSION = "1.33"


def kubernetes_version(doc: Document, value: Any) -> str:
    """A quoted "1.N" that the manifest check has API schemas for."""
    path: KeyPath = ("cluster", "kubernetesVersion")
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise doc.error(
            path,
            f"is the number {value!r}: YAML reads an unquoted 1.30 as 1.3; quote the "
            f'version, e.g. kubernetesVersion: "{DEFAULT_KUBERNETES_VERSION}"',
        )
    if not isinstance(value, str) or not re.match(r"^1\.\d+$", value):
        raise doc.error(path, f'must be a quoted "1.N" version such as "1.33", got {value!r}')
    supported = supported_kubernetes_versions()
    if supported and value not in supported:
        raise doc.error(
            path,
            f"Kubernetes {value} is not supported: rendered manifests can be checked "
            f"against {supported[0]} to {supported[-1]}",
        )
    return value


def supported_kubernetes_versions() -> list[str]:
    """The "1.N" versions the manifest check has API schemas for (oldest first)."""
    try:
        from kubernetes_validate.utils import all_versions
    except ImportError:
        return []
    versions = {".".join(v.split(".")[:2]) for v in all_versions()}
    return sorted(versions, key=lambda v: int(v.split(".")[1]))
