"""What every promise check shares: the merged values, where each value was set, the errors.

:class:`PromiseChecker` reads the merged values and reports a violation at the
file and line of the layer that set the value; the small predicates below are
shared by the checks in :mod:`pangeo_cloud.config.promises` and
:mod:`pangeo_cloud.config.promises_dask`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pangeo_cloud.config.errors import ConfigError, format_key_path
from pangeo_cloud.config.layering import Layer, origin
from pangeo_cloud.config.model import Deployment, NodePool
from pangeo_cloud.config.units import parse_byte_spec
from pangeo_cloud.config.yamlpos import dig

KeyPath = tuple[str | int, ...]


class PromiseChecker:
    """Collects promise violations, each located where the value was set."""

    def __init__(
        self,
        deployment: Deployment,
        values: dict[str, Any],
        layers: list[Layer],
        image_file: Path | None,
        gateway_app_version: str | None,
    ) -> None:
        self.d = deployment
        self.v = values
        self.layers = layers
        self.image_file = image_file
        self.gateway_app_version = gateway_app_version
        self.errors: list[ConfigError] = []

    def fail(self, path: KeyPath, message: str) -> None:
        file, line = origin(self.layers, path)
        error = ConfigError(message, file=file, line=line, key_path=format_key_path(path))
        if error not in self.errors:
            self.errors.append(error)

    def get(self, *path: str | int, default: Any = None) -> Any:
        return dig(self.v, path, default)

    def mapping(self, *path: str | int) -> dict[str, Any]:
        """The mapping at `path`; {} when absent or of another shape (schemas say so)."""
        value = self.get(*path)
        return value if isinstance(value, dict) else {}

    def sequence(self, *path: str | int) -> list[Any] | None:
        """The list at `path` ([] when absent); None, reported once, if not a list."""
        value = self.get(*path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {kind_of(value)}")
            return None
        return value


def kind_of(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resource(trait: str, value: Any) -> float:
    """A profile's CPU (cores) or memory (bytes, as KubeSpawner reads it)."""
    if trait.startswith("mem_"):
        return float(parse_byte_spec(value))
    if not is_number(value) or value < 0:
        raise ValueError(f"must be a number of CPU cores such as 2 or 0.5, got {value!r}")
    return float(value)


def matches(pool: NodePool, selector: dict[str, Any]) -> bool:
    return all(pool.labels.get(k) == str(v) for k, v in selector.items())


def tolerated(taint: str, tolerations: list[Any]) -> bool:
    """Whether Kubernetes lets a pod with `tolerations` onto a node with `taint`."""
    key_value, effect = taint.rsplit(":", 1)
    key, _, value = key_value.partition("=")
    for t in tolerations:
        if not isinstance(t, dict) or t.get("effect") not in (None, "", effect):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", key):
            return True
        if t.get("key") == key and str(t.get("value", "")) == value:
            return True
    return False


def strings(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, (*path, i))
    elif isinstance(value, str):
        yield path, value
