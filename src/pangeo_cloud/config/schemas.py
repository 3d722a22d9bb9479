"""Validate merged values against the charts' JSON schemas, offline.

The upstream schemas (z2jh, dask-gateway) come from the subchart archives under
the chart's `charts/` when `helm dependency build` has fetched them, else from a
directory holding `<chart>-<version>/values.yaml` and `values.schema.yaml`
(given by `--upstream-dir`, $PANGEO_UPSTREAM_DIR, or ../shared/upstream). As
Helm does, each subchart's schema is applied to its defaults merged with ours.
"""

from __future__ import annotations

import difflib
import functools
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pangeo_cloud.config.errors import ConfigError, format_key_path
from pangeo_cloud.config.layering import Layer, merge, origin
from pangeo_cloud.config.paths import Paths


@dataclass(frozen=True)
class UpstreamChart:
    """An upstream subchart's default values and values schema."""

    name: str
    version: str
    values: dict[str, Any]
    schema: dict[str, Any]
    source: str
    app_version: str | None = None


def _from_archive(archive: Path, name: str, version: str) -> UpstreamChart:
    with tarfile.open(archive) as tar:

        def read(member: str) -> str | None:
            try:
                handle = tar.extractfile(f"{name}/{member}")
            except KeyError:
                return None
            return handle.read().decode() if handle else None

        values = yaml.safe_load(read("values.yaml") or "{}") or {}
        raw_schema = read("values.schema.json")
        schema = json.loads(raw_schema) if raw_schema else {}
        meta = yaml.safe_load(read("Chart.yaml") or "{}") or {}
    return UpstreamChart(name, version, values, schema, str(archive), meta.get("appVersion"))


def _from_directory(directory: Path, name: str, version: str) -> UpstreamChart:
    values = yaml.safe_load((directory / "values.yaml").read_text()) or {}
    schema_file = directory / "values.schema.yaml"
    if not schema_file.is_file():
        schema_file = directory / "values.schema.json"
    # Some charts ship no schema (grafana, kube-state-metrics): then {} (callers check keys).
    schema = yaml.safe_load(schema_file.read_text()) or {} if schema_file.is_file() else {}
    # In the published charts the appVersion is the release number (see DESIGN.md).
    return UpstreamChart(name, version, values, schema, str(directory), version)


@functools.lru_cache(maxsize=16)
def _load_cached(source: Path, mtime_ns: int, name: str, version: str) -> UpstreamChart:
    """Parsing the upstream schemas takes most of a check's time: once per file version."""
    if source.is_file():
        return _from_archive(source, name, version)
    return _from_directory(source, name, version)


@functools.lru_cache(maxsize=16)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)


def _chart_version(directory: Path) -> str | None:
    try:
        chart = yaml.safe_load((directory / "Chart.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return str(chart.get("version")) if isinstance(chart, dict) else None


def find_upstream(
    name: str, version: str, paths: Paths, explicit: str | Path | None = None
) -> UpstreamChart:
    """The upstream chart `name`-`version`, from the first place that has it."""
    tried = []
    for base in paths.upstream_dirs(explicit):
        archive = base / f"{name}-{version}.tgz"
        if archive.is_file():
            return _load_cached(archive, archive.stat().st_mtime_ns, name, version)
        for directory in (base / f"{name}-{version}", base / name):
            # charts/<name>/ is an unpacked subchart (as helm and render accept
            # it): only if its Chart.yaml is the pinned version.
            if directory.name == name and _chart_version(directory) != version:
                continue
            if (directory / "values.yaml").is_file():
                mtime = (directory / "values.yaml").stat().st_mtime_ns
                return _load_cached(directory, mtime, name, version)
        tried.append(str(base))
    raise ConfigError(
        f"no values schema for {name} {version}: looked in {', '.join(tried)}; run "
        "`helm dependency build helm-chart/pangeo-cloud` (needs network) or pass "
        "--upstream-dir DIR / set PANGEO_UPSTREAM_DIR to a directory holding "
        f"{name}-{version}/values.schema.yaml"
    )


def chart_dependencies(paths: Paths) -> list[tuple[str, str]]:
    meta = yaml.safe_load((paths.chart / "Chart.yaml").read_text())
    return [(d["name"], str(d["version"])) for d in meta.get("dependencies") or []]


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        hint = f"; allowed: {', '.join(allowed)}" if allowed and len(allowed) <= 40 else ""
        extra = (
            sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        )
        close = difflib.get_close_matches(extra[0], allowed, n=1) if extra else []
        guess = f"; did you mean {close[0]}?" if close else ""
        return f"{error.message}{guess}{hint}"
    return error.message


def schema_errors(
    values: Any, schema: dict[str, Any], prefix: tuple[str | int, ...], layers: list[Layer]
) -> list[ConfigError]:
    """Every violation of `schema`, located in the file and line that set it.

    Items of one list that fail the same way on the same line (a flow list
    like `[1, 2, 3]`) are reported once, at the list.
    """
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors: list[ConfigError] = []
    # (file, line, validator, list path) -> [first error of the group, repeats]
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.path))):
        key_path = (*prefix, *error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            extra = sorted(set(error.instance) - set(error.schema.get("properties") or {}))
            if extra:
                key_path = (*key_path, extra[0])
        file, line = origin(layers, key_path)
        found = ConfigError(
            _describe(error), file=file, line=line, key_path=format_key_path(key_path)
        )
        if key_path and isinstance(key_path[-1], int):
            group = (str(file), line, error.validator, key_path[:-1])
            if group in groups:
                groups[group][1] += 1
                continue
            groups[group] = [found, 0]
        errors.append(found)
    for (_, _, _, parent), (first, repeats) in groups.items():
        if repeats:
            first.key_path = format_key_path(parent)
            first.message += f" (and {repeats} more items of this list on the same line)"
    return errors


def validate_subchart(
    values: dict[str, Any], upstream: UpstreamChart, layers: list[Layer]
) -> list[ConfigError]:
    """Our values for one subchart, merged onto its defaults, against its schema."""
    merged = merge(upstream.values, values.get(upstream.name) or {})
    return schema_errors(merged, upstream.schema, (upstream.name,), layers)


def validate_umbrella(
    values: dict[str, Any], paths: Paths, layers: list[Layer]
) -> list[ConfigError]:
    """The merged values against the umbrella's own values.schema.json."""
    schema = json.loads((paths.chart / "values.schema.json").read_text())
    return schema_errors(values, schema, (), layers)
