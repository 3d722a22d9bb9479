"""Validate rendered manifests offline against the Kubernetes API schemas.

Built-in kinds are checked with the OpenAPI schemas of the deployment's
Kubernetes version (the `kubernetes-validate` package ships them, so no cluster
is needed); custom resources against the openAPIV3Schema of their CRDs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from pangeo_cloud.config.errors import ConfigError


def load_crds(paths: list[Path]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> openAPIV3Schema for every CRD in the given files."""
    schemas: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            add_crd(schemas, doc)
    return schemas


def add_crd(schemas: dict[tuple[str, str, str], dict[str, Any]], doc: Any) -> None:
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        return
    spec = doc["spec"]
    for version in spec.get("versions", []):
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"}
        schemas[(spec["group"], version["name"], spec["names"]["kind"])] = schema


def _name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def _supported_version(kube_version: str) -> str:
    wanted = f"{kube_version}.0"
    try:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}},
            wanted,
            strict=True,
        )
        return wanted
    except kubernetes_validate.utils.VersionNotSupportedError:
        return kubernetes_validate.latest_version()


def validate_manifests(
    docs: list[dict[str, Any]], kube_version: str, crds: dict[tuple[str, str, str], dict[str, Any]]
) -> list[ConfigError]:
    """Every schema violation in the rendered documents, named by kind/name."""
    version = _supported_version(kube_version)
    for doc in docs:
        add_crd(crds, doc)  # CRDs rendered with the chart
    errors: list[ConfigError] = []
    for doc in docs:
        api = str(doc.get("apiVersion", ""))
        group, _, ver = api.rpartition("/")
        crd_schema = crds.get((group, ver, str(doc.get("kind"))))
        try:
            if crd_schema is not None:
                jsonschema.validate(doc, crd_schema)
            else:
                kubernetes_validate.validate(doc, version, strict=True)
        except (ValidationError, jsonschema.ValidationError) as exc:
            where = ".".join(str(p) for p in exc.path) if hasattr(exc, "path") else ""
            errors.append(
                ConfigError(
                    f"{exc.message}",
                    key_path=f"{_name(doc)} {where}".strip(),
                    file="rendered manifests",
                )
            )
        except SchemaNotFoundError:
            errors.append(
                ConfigError(
                    f"no schema for {api} {doc.get('kind')} in Kubernetes {version} "
                    "(unknown kind or API version removed)",
                    key_path=_name(doc),
                    file="rendered manifests",
                )
            )
    return errors
