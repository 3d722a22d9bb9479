"""What a deploy would change: rendered manifests against the live release.

This module owns ``pangeo-cloud diff DEPLOYMENT STAGE``: it renders the stage
with the same values a deploy uses (``helm template`` with the decrypted layers,
``--dry-run=server`` so z2jh's ``lookup`` reads the live generated secrets), reads
what the release last applied (``helm get manifest``), and prints a unified diff
object by object (kind/namespace/name), so ordering never shows as a change.

Secret values never reach the output: every value under ``data`` and
``stringData`` of a Secret is replaced by ``<masked>`` (``<masked-changed>``
on the rendered side when it differs from the live one), and any string that
contains a value decrypted from a sops layer is masked wherever it appears.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from pangeo_cloud.config import Target
from pangeo_cloud.config.layering import SOPS_MASK, Layer, merge_all, values_layers
from pangeo_cloud.deploy import cluster, helm
from pangeo_cloud.deploy.sops import SopsDecryptor
from pangeo_cloud.deploy.tools import ToolError, find_tool, last_line, run

MASK = "<masked>"
MASK_CHANGED = "<masked-changed>"
SOPS_VALUE_MASK = "<sops-value>"
MIN_SECRET_LEN = 4  # shorter decrypted values (e.g. "true") are not masked as substrings

Key = tuple[str, str, str]


@dataclass
class DiffResult:
    text: str
    changed: list[str]
    live_found: bool
    note: str = ""


def sops_values(layers: Iterable[Layer]) -> set[str]:
    """Every string leaf of the decrypted secrets layers."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            if len(text) >= MIN_SECRET_LEN and text != SOPS_MASK:
                found.add(text)

    for layer in layers:
        if layer.kind == "secrets":
            walk({k: v for k, v in layer.data.items() if k != "sops"})
    return found


def _key(obj: dict[str, Any], default_ns: str) -> Key:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind")), str(meta.get("namespace") or default_ns), str(meta.get("name")))


def objects(stream: str, namespace: str) -> dict[Key, dict[str, Any]]:
    out = {}
    for doc in yaml.safe_load_all(stream):
        if isinstance(doc, dict) and doc:
            out[_key(doc, namespace)] = doc
    return out


def _mask_strings(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _mask_strings(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_strings(v, secrets) for v in value]
    if isinstance(value, str) and secrets:
        for secret in sorted(secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, SOPS_VALUE_MASK)
    return value


def mask_pair(
    rendered: dict | None, live: dict | None, secrets: set[str]
) -> tuple[dict | None, dict | None]:
    """Masked copies of one object's two versions (see the module docstring)."""

    def secret_fields(obj: dict | None) -> dict[str, dict[str, Any]]:
        if not obj or obj.get("kind") != "Secret":
            return {}
        return {f: dict(obj.get(f) or {}) for f in ("data", "stringData") if obj.get(f)}

    rendered_fields, live_fields = secret_fields(rendered), secret_fields(live)
    out = []
    for obj, own, other, is_rendered in (
        (rendered, rendered_fields, live_fields, True),
        (live, live_fields, rendered_fields, False),
    ):
        if obj is None:
            out.append(None)
            continue
        obj = dict(obj)
        for name, values in own.items():
            masked = {}
            for key, value in values.items():
                same = other.get(name, {}).get(key) == value
                masked[key] = MASK if same or not is_rendered else MASK_CHANGED
            obj[name] = masked
        out.append(_mask_strings(obj, secrets))
    return out[0], out[1]


def _dump(obj: dict | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, width=100).splitlines(keepends=True)


def unified_diff(
    rendered: dict[Key, dict], live: dict[Key, dict], secrets: set[str]
) -> tuple[str, list[str]]:
    chunks, changed = [], []
    for key in sorted(set(rendered) | set(live)):
        new, old = mask_pair(rendered.get(key), live.get(key), secrets)
        name = "/".join(key)
        lines = list(
            difflib.unified_diff(
                _dump(old),
                _dump(new),
                fromfile=f"live: {name}" if old is not None else "live: (absent)",
                tofile=f"rendered: {name}" if new is not None else "rendered: (removed)",
            )
        )
        if lines:
            changed.append(name)
            chunks.append("".join(lines))
    return "".join(chunks), changed


def live_manifest(release: str, namespace: str, kube_context: str | None) -> str | None:
    """What the release last applied; None when there is no such release."""
    result = run(
        [
            find_tool("helm"),
            "get",
            "manifest",
            release,
            "--namespace",
            namespace,
            *cluster.helm_context_args(kube_context),
        ],
        check=False,
        timeout=120,
    )
    if result.returncode == 0:
        return result.stdout
    line = last_line(result.stderr)
    if "not found" in line:
        return None
    raise ToolError(f"helm get manifest {release} failed: {line}")


def render_stage(
    target: Target,
    layers: list[Layer],
    *,
    server: bool,
    is_upgrade: bool,
) -> tuple[str, helm.ChartView]:
    """`helm template` with the deploy's values (written 0600 to a private temp dir)."""
    stage = target.stage
    extra = [*cluster.helm_context_args(stage.kube_context)]
    if server:
        extra.append("--dry-run=server")
    if is_upgrade:
        extra.append("--is-upgrade")
    with helm.chart_view(target.paths.chart) as view:
        stream = helm.template(
            view,
            merge_all(layers),
            release=stage.release,
            namespace=stage.namespace,
            kube_version=None if server else target.deployment.kubernetes_version,
            # `helm get manifest` holds no CRDs either: compare like with like.
            include_crds=False,
            extra_args=extra,
        )
    return stream, view


def diff_stage(
    target: Target,
    *,
    decrypt: bool = True,
    decryptor: SopsDecryptor | None = None,
) -> DiffResult:
    """Diff one stage's rendered manifests against its live release."""
    stage = target.stage
    find_tool("helm")
    cluster.check_with_helm(stage.namespace, stage.kube_context)
    decryptor = decryptor or (SopsDecryptor() if decrypt else None)
    try:
        layers = values_layers(target.deployment, stage, paths=target.paths, decrypt=decryptor)
        live = live_manifest(stage.release, stage.namespace, stage.kube_context)
        stream, view = render_stage(target, layers, server=True, is_upgrade=live is not None)
        text, changed = unified_diff(
            objects(stream, stage.namespace),
            objects(live or "", stage.namespace),
            sops_values(layers),
        )
    finally:
        if decryptor is not None:
            decryptor.clear()
    notes = []
    if live is None:
        notes.append(
            f"release {stage.release} not found in namespace {stage.namespace}: "
            "everything would be created"
        )
    if not view.full:
        notes.append(
            "subcharts not downloaded (run `helm dependency build`): only the "
            "umbrella's own templates were rendered, subchart objects show as removed"
        )
    if not decrypt:
        notes.append("secrets not decrypted (--no-decrypt): objects holding them show as changed")
    return DiffResult(text, changed, live is not None, "; ".join(notes))
