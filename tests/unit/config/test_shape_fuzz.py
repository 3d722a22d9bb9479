"""Wrong shapes anywhere never crash `validate`: each check passes or fails with a message.

For every key path of each deployment's merged values (and of each
deployment.yaml) the value is replaced by a string, a list, a mapping, null
and a number, in a values layer placed where an operator's file would be. The
value checks run on the result; anything but a ConfigError is a crash.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pangeo_cloud.config import ConfigError, load_deployment
from pangeo_cloud.config.layering import Layer, gateway_hooks_layer, merge_all, values_layers
from pangeo_cloud.config.model import parse_deployment
from pangeo_cloud.config.yamlpos import Document, KeyPath, dig, load_yaml
from pangeo_cloud.deploy.checks import CHECKS, RENDERING_CHECKS, StageContext
from pangeo_cloud.deploy.checks import scrubber as _scrubber
from pangeo_cloud.deploy.tools import ToolError
from pangeo_cloud.deploy.validate import _first_report, _Reported

SHAPES: list[Any] = ["not-the-right-shape", ["a", "list"], {"a": "mapping"}, None, 12345]
TARGETS = [("gcp-us-central1-b", "prod"), ("aws-us-west-2", "staging"), ("local", "dev")]
VALUE_CHECKS = [(name, check) for name, check in CHECKS if name not in RENDERING_CHECKS]


def key_paths(value: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """Every node's key path below the top."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from key_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from key_paths(item, (*path, index))


def _set(container: Any, path: KeyPath, value: Any) -> None:
    for key in path[:-1]:
        container = container[key]
    container[path[-1]] = value


def override_at(values: dict[str, Any], path: KeyPath, shape: Any) -> dict[str, Any]:
    """A values layer setting `path` to `shape` (a list is replaced whole, as in Helm)."""
    cut = next((i for i, key in enumerate(path) if isinstance(key, int)), None)
    if cut is None:
        leaf_path, leaf = path, shape
    else:
        leaf_path = path[:cut]
        leaf = copy.deepcopy(dig(values, leaf_path))
        _set(leaf, path[cut:], shape)
    layer: dict[str, Any] = {}
    node = layer
    for key in leaf_path[:-1]:
        node = node.setdefault(key, {})
    node[leaf_path[-1]] = leaf
    return layer


def _fuzz_layer(data: dict[str, Any], file: Path) -> Layer:
    lines = {path: n for n, path in enumerate(key_paths(data), 2)}
    return Layer("values: fuzz.yaml", data, Document(file, data, {(): 1, **lines}))


def _run_checks(ctx: StageContext) -> Iterator[str]:
    """Crashes (not ConfigError/ToolError) of the value checks, as text."""
    scrub = _scrubber(ctx.layers)
    for name, check in VALUE_CHECKS:
        try:
            errors, _ = check(ctx)
        except (ConfigError, ToolError):
            continue
        except Exception:
            yield f"{name}: {traceback.format_exc(limit=-3)}"
            continue
        try:  # what validate_stage does with the errors: report each spot once, scrub
            reported = _Reported()
            texts = [scrub(e) for e in errors if _first_report(e, name, reported, ctx.values)]
        except Exception:
            yield f"{name} (reporting): {traceback.format_exc(limit=-3)}"
            continue
        if errors and not texts or any(not text.strip() for text in texts):
            yield f"{name}: failed without a message"


@pytest.mark.parametrize(("name", "stage"), TARGETS, ids=[f"{d}/{s}" for d, s in TARGETS])
def test_wrong_shapes_in_values_never_crash(repo_paths, upstream_dir, tmp_path, name, stage):
    deployment = load_deployment(name, repo_paths)
    layers = values_layers(deployment, stage, paths=repo_paths)[:-1]  # without the hooks
    values = merge_all(layers)
    crashes: list[str] = []
    tried = 0
    for path in key_paths(values):
        for shape in SHAPES:
            fuzzed = [*layers, _fuzz_layer(override_at(values, path, shape), tmp_path / "f.yaml")]
            try:
                fuzzed.append(gateway_hooks_layer(merge_all(fuzzed)))
            except Exception:
                crashes.append(f"{path} = {shape!r}: hooks: {traceback.format_exc(limit=-3)}")
                continue
            ctx = StageContext(
                deployment,
                deployment.stage(stage),
                repo_paths,
                str(upstream_dir),
                fuzzed,
                merge_all(fuzzed),
            )
            crashes += [f"{path} = {shape!r}: {crash}" for crash in _run_checks(ctx)]
            tried += 1
    assert tried > 500, f"only {tried} variants of {name}/{stage}"
    assert not crashes, f"{len(crashes)} crashes, first ones:\n" + "\n".join(crashes[:5])


@pytest.mark.parametrize("name", [d for d, _ in TARGETS])
def test_wrong_shapes_in_deployment_yaml_never_crash(repo_paths, name):
    doc = load_yaml(repo_paths.deployments / name / "deployment.yaml")
    crashes = []
    for path in key_paths(doc.data):
        for shape in [*SHAPES, 1.30, -1, ".."]:
            data = copy.deepcopy(doc.data)
            _set(data, path, shape)
            try:
                parse_deployment(Document(doc.path, data, doc.lines))
            except ConfigError as exc:
                assert str(exc).startswith(str(doc.path)), exc
            except Exception:
                crashes.append(f"{path} = {shape!r}: {traceback.format_exc(limit=-3)}")
    assert not crashes, f"{len(crashes)} crashes, first ones:\n" + "\n".join(crashes[:5])
