"""Ordered values layers and Helm's merge semantics.

The order, lowest first, is fixed and shown by `pangeo-cloud render --layers`:

1. the umbrella chart's ``values.yaml`` (federation defaults)
2. the generated stage wiring (gateway Service names from release and namespace,
   the hub proxy's in-cluster address from the proxy's HTTPS mode: computed from
   the layers above it, placed here so that any file may still override it)
3. each file of the stage's ``valuesFiles`` (``values/common.yaml``, ``values/<stage>.yaml``)
4. each file of the stage's ``secretsFiles`` (sops-encrypted; masked unless decrypted)
5. the generated layer that ships ``src/pangeo_cloud/gateway`` to dask-gateway
6. the generated price table ``jupyterhub.custom.pangeo.costs`` (from
   deployment.yaml ``prices`` and node pools; :mod:`pangeo_cloud.config.costs`)
   and ``custom.pangeo.usage.deployment``/``stage`` (the metrics' labels)

Merging follows Helm: maps merge key by key, a later scalar or list replaces the
earlier one (lists are never concatenated), and ``null`` removes a key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.config.errors import ConfigError, ConfigErrors
from pangeo_cloud.config.model import Deployment, Stage
from pangeo_cloud.config.paths import Paths
from pangeo_cloud.config.secrets import (
    SOPS_MASK,
    creation_rule,
    encrypted_paths,
    sops_file_errors,
)
from pangeo_cloud.config.wiring import stage_wiring
from pangeo_cloud.config.yamlpos import Document, KeyPath, dig, load_yaml

# Decrypts a sops file to its plaintext YAML text.
Decryptor = Callable[[Path], str]


@dataclass
class Layer:
    """One values layer: where it came from and what it holds."""

    name: str
    data: dict[str, Any]
    document: Document | None = None
    # Secrets layers: key paths that hold ciphertext in the file (masked in output).
    secret_paths: list[KeyPath] = field(default_factory=list)
    # Decrypted secrets layers: the plaintext values, scrubbed from every message.
    secret_values: set[str] = field(default_factory=set)

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
    if doc.data is None:
        raise ConfigError(
            "empty values file: it should hold a mapping of chart values (e.g. "
            "`jupyterhub:` ...); write `{}` if this layer deliberately sets nothing, "
            "or drop it from the stage's valuesFiles",
            file=path,
        )
    if not isinstance(doc.data, dict):
        raise doc.error(
            (), f"a values file must be a mapping at the top level, got {type(doc.data).__name__}"
        )
    return Layer(name=name, data=doc.data, document=doc)


def _secret_strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {s for v in value.values() for s in _secret_strings(v)}
    if isinstance(value, list):
        return {s for v in value for s in _secret_strings(v)}
    return {str(value)} if value not in (None, "", True, False) else set()


def _mask_all(value: Any) -> Any:
    """Every leaf masked: a secrets file with problems may hold plaintext anywhere."""
    if isinstance(value, dict):
        return {k: _mask_all(v) for k, v in value.items() if k != "sops"}
    if isinstance(value, list):
        return [_mask_all(v) for v in value]
    return SOPS_MASK


def _secrets_layer(
    path: Path, decrypt: Decryptor | None, problems: list[ConfigError] | None = None
) -> Layer:
    """A sops file as a layer: checked offline, then masked or decrypted.

    With a `problems` list, what is wrong with the file is added to it and the
    layer comes back fully masked, so that the other checks can still run.
    """
    layer = _load_layer(path, f"secrets: {path.name}")
    assert layer.document is not None
    if "sops" not in layer.data:
        errors = [
            ConfigError(
                "secrets file is not sops-encrypted (no `sops` metadata); encrypt it with "
                "`sops encrypt --in-place` before committing",
                file=path,
            )
        ]
    else:
        errors = sops_file_errors(layer.document, creation_rule(path))
    plain = None
    if not errors and decrypt is not None:
        try:
            text = decrypt(path)
        except Exception as exc:  # sops failed (wrong key, MAC mismatch): one line
            if problems is None:
                raise
            errors = [ConfigError(str(exc))]
        else:
            plain = _load_layer(path, f"secrets: {path.name} (decrypted)", text=text)
    if errors:
        if problems is None:
            raise ConfigErrors(errors)
        problems.extend(errors)
        layer.data = _mask_all(layer.data)
        layer.secret_paths = [p for p, _ in _leaf_paths(layer.data)]
        return layer
    secret_paths = encrypted_paths(layer.data)
    if plain is None:
        layer.data = _mask_sops(layer.data)
        layer.secret_paths = secret_paths
        return layer
    plain.data.pop("sops", None)
    plain.secret_paths = secret_paths
    plain.secret_values = {s for p in secret_paths for s in _secret_strings(dig(plain.data, p))}
    return plain


def _leaf_paths(value: Any, path: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaf_paths(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaf_paths(v, (*path, i))]
    return [(path, value)]


def values_layers(
    deployment: Deployment,
    stage: Stage | str,
    *,
    paths: Paths | None = None,
    decrypt: Decryptor | None = None,
    generated: bool = True,
    secret_problems: list[ConfigError] | None = None,
) -> list[Layer]:
    """The ordered layers for one stage (see the module docstring).

    Problems of a secrets file raise, unless a `secret_problems` list collects
    them (the file's layer is then fully masked; `validate` goes on checking).
    """
    paths = paths or Paths.discover()
    if isinstance(stage, str):
        stage = deployment.stage(stage)
    layers = [_load_layer(paths.chart / "values.yaml", "chart defaults")]
    for file in stage.values_files:
        layers.append(_load_layer(file, f"values: {file.name}"))
    for file in stage.secrets_files:
        layers.append(_secrets_layer(file, decrypt, secret_problems))
    wiring = stage_wiring(stage, merge_all(layers))
    layers.insert(1, Layer(name="generated: stage wiring (release, namespace, proxy)", data=wiring))
    if generated:
        from pangeo_cloud.config.costs import costs_layer
        from pangeo_cloud.config.hooks import gateway_hooks_layer

        layers.append(gateway_hooks_layer(merge_all(layers), paths))
        layers.append(costs_layer(deployment, stage.name, merge_all(layers)))
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


def _sets(layer: Layer, key_path: KeyPath) -> bool:
    """Whether `layer` decides the merged value at `key_path`.

    It does when it holds the path itself, or replaces a prefix of it with a
    non-mapping (a list, scalar or null replaces the whole subtree in Helm).
    """
    value: Any = layer.data
    for key in key_path:
        if not isinstance(value, dict):
            return True
        if key not in value:
            return False
        value = value[key]
    return True


def origin(layers: list[Layer], key_path: KeyPath) -> tuple[Path | None, int | None]:
    """The file and line that last set `key_path` (or the value containing it).

    Layers are searched from the last: the first that holds the path, or
    replaces one of its parents wholesale, is blamed (on the deepest line it
    has for the path). A key nobody set is blamed on its nearest set parent.
    """
    for n in range(len(key_path), 0, -1):
        prefix = tuple(key_path[:n])
        for layer in reversed(layers):
            if _sets(layer, prefix):
                if layer.document is None:
                    return None, None  # generated: no file to point at
                return layer.path, layer.document.line_of(key_path)
    first = layers[0] if layers else None
    if first is not None and first.document is not None:
        return first.path, 1
    return None, None
