"""Ordered values layers and Helm's merge semantics.

The order, lowest first, is fixed and shown by `pangeo-cloud render --layers`:

1. the umbrella chart's ``values.yaml`` (federation defaults)
2. the generated stage wiring (gateway Service names from release and namespace,
   the hub proxy's in-cluster address from the proxy's HTTPS mode: computed from
   the layers above it, placed here so that any file may still override it)
3. each file of the stage's ``valuesFiles`` (``values/common.yaml``, ``values/<stage>.yaml``)
4. each file of the stage's ``secretsFiles`` (sops-encrypted; masked unless decrypted)
5. the generated layer that ships ``src/pangeo_cloud/gateway`` to dask-gateway

Merging follows Helm: maps merge key by key, a later scalar or list replaces the
earlier one (lists are never concatenated), and ``null`` removes a key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.model import Deployment, Stage
from pangeo_cloud.config.paths import Paths
from pangeo_cloud.config.wiring import stage_wiring
from pangeo_cloud.config.yamlpos import Document, KeyPath, load_yaml

SOPS_MASK = "<sops-encrypted>"

# Decrypts a sops file to its plaintext YAML text.
Decryptor = Callable[[Path], str]


@dataclass
class Layer:
    """One values layer: where it came from and what it holds."""

    name: str
    data: dict[str, Any]
    document: Document | None = None

    @property
    def path(self) -> Path | None:
        return self.document.path if self.document else None


def merge(base: Any, override: Any) -> Any:
    """Merge `override` onto `base` with Helm's rules; inputs are not modified."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    return copy.deepcopy(override)


def merge_all(layers: Iterable[Layer]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for layer in layers:
        result = merge(result, layer.data)
    return result


def _mask_sops(value: Any) -> Any:
    """Replace sops ciphertexts by a mask, keeping the key structure."""
    if isinstance(value, dict):
        return {k: _mask_sops(v) for k, v in value.items() if k != "sops"}
    if isinstance(value, list):
        return [_mask_sops(v) for v in value]
    if isinstance(value, str) and value.startswith("ENC["):
        return SOPS_MASK
    return value


def _load_layer(path: Path, name: str, text: str | None = None) -> Layer:
    doc = load_yaml(path, text=text)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise doc.error((), "a values file must be a mapping at the top level")
    return Layer(name=name, data=data, document=doc)


def _secrets_layer(path: Path, decrypt: Decryptor | None) -> Layer:
    layer = _load_layer(path, f"secrets: {path.name}")
    if "sops" not in layer.data:
        raise ConfigError(
            "secrets file is not sops-encrypted (no `sops` metadata); encrypt it with "
            "`sops --encrypt --in-place` before committing",
            file=path,
        )
    if decrypt is None:
        layer.data = _mask_sops(layer.data)
        return layer
    return _load_layer(path, f"secrets: {path.name} (decrypted)", text=decrypt(path))


def values_layers(
    deployment: Deployment,
    stage: Stage | str,
    *,
    paths: Paths | None = None,
    decrypt: Decryptor | None = None,
    generated: bool = True,
) -> list[Layer]:
    """The ordered layers for one stage (see the module docstring)."""
    paths = paths or Paths.discover()
    if isinstance(stage, str):
        stage = deployment.stage(stage)
    layers = [_load_layer(paths.chart / "values.yaml", "chart defaults")]
    for file in stage.values_files:
        layers.append(_load_layer(file, f"values: {file.name}"))
    for file in stage.secrets_files:
        layers.append(_secrets_layer(file, decrypt))
    wiring = stage_wiring(stage, merge_all(layers))
    layers.insert(1, Layer(name="generated: stage wiring (release, namespace, proxy)", data=wiring))
    if generated:
        from pangeo_cloud.config.hooks import gateway_hooks_layer

        layers.append(gateway_hooks_layer(merge_all(layers), paths))
    return layers


def merged_values(
    deployment: Deployment | str,
    stage: Stage | str,
    *,
    paths: Paths | None = None,
    decrypt: Decryptor | None = None,
) -> dict[str, Any]:
    """The values Helm receives for one stage, merged in layer order."""
    if isinstance(deployment, str):
        from pangeo_cloud.config.model import load_deployment

        deployment = load_deployment(deployment, paths)
    return merge_all(values_layers(deployment, stage, paths=paths, decrypt=decrypt))


def origin(layers: list[Layer], key_path: KeyPath) -> tuple[Path | None, int | None]:
    """The file and line that last set `key_path` (or its nearest parent)."""
    for n in range(len(key_path), -1, -1):
        prefix = tuple(key_path[:n])
        for layer in reversed(layers):
            if (
                layer.document is not None
                and prefix in layer.document.lines
                and (n > 0 or layer is layers[0])
            ):
                return layer.path, layer.document.lines[prefix]
    return None, None
