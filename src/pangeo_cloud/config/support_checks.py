"""Offline checks of a support release's merged values.

- schemas: each pinned upstream chart's part of the values, merged onto its
  defaults as Helm does. ``prometheus`` and ``alertmanager`` ship a
  ``values.schema.json`` and are validated against it; ``grafana``,
  ``kube-state-metrics``, ``prometheus-node-exporter`` and
  ``prometheus-pushgateway`` ship none (Helm checks nothing there), so every
  key we set is checked against the chart's default ``values.yaml`` instead,
  except below free-form maps (``grafana.ini``, maps that default to ``{}``).
  Then the whole against the support chart's own ``values.schema.json``.
- hub-login: Grafana logs in through the hub of ``support.loginStage`` only:
  its OAuth endpoints are that hub's, its client is that hub's ``grafana``
  service (same client id, redirect URI at Grafana's root URL, the service's
  URL is Grafana's in-cluster address), only hub admins get a role (with
  ``role_attribute_strict``), and no other way in is open (login form, basic
  auth, anonymous access, other OAuth providers). Every stage's hub grants its
  ``prometheus`` service ``read:metrics`` and nothing more, and the support
  release holds a token for each stage.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pangeo_cloud.config.errors import ConfigError, format_key_path
from pangeo_cloud.config.layering import Layer, merge, origin
from pangeo_cloud.config.paths import Paths
from pangeo_cloud.config.schemas import UpstreamChart, find_upstream, schema_errors
from pangeo_cloud.config.support import (
    GRAFANA_CLIENT_ID,
    GRAFANA_SERVICE,
    METRICS_SCOPE,
    PROMETHEUS_SERVICE,
    SupportRelease,
    grafana_root_url,
    grafana_service_url,
    hub_urls,
)

if TYPE_CHECKING:
    from pangeo_cloud.config.model import Deployment

# The prometheus chart's own dependencies, as its Chart.lock (29.27.0) pins them.
PROMETHEUS_SUBCHARTS = (
    ("alertmanager", "1.42.0"),
    ("kube-state-metrics", "8.4.0"),
    ("prometheus-node-exporter", "4.56.1"),
    ("prometheus-pushgateway", "3.8.0"),
)
UNVERSIONED = "http://json-schema.org/schema#"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
# Maps under which any key is allowed (checked against defaults otherwise).
FREE_FORM = {("grafana", "grafana.ini")}
# Grafana's other ways in, each must stay off.
OTHER_LOGINS = (
    "auth.github",
    "auth.gitlab",
    "auth.google",
    "auth.azuread",
    "auth.okta",
    "auth.jwt",
)


def find_support_upstream(
    name: str, version: str, paths: Paths, explicit: str | Path | None = None
) -> UpstreamChart:
    """An upstream chart of the support release: its charts/ (after `helm dependency
    build`, the prometheus chart's own charts/ for its subcharts), else the
    upstream data directories that `validate` uses for the hub chart."""
    from pangeo_cloud.config import schemas

    chart = paths.support_chart
    for base in (chart / "charts", chart / "charts" / "prometheus" / "charts"):
        archive = base / f"{name}-{version}.tgz"
        if archive.is_file():
            return schemas._load_cached(archive, archive.stat().st_mtime_ns, name, version)
        unpacked = base / name
        if schemas._chart_version(unpacked) == version and (unpacked / "values.yaml").is_file():
            mtime = (unpacked / "values.yaml").stat().st_mtime_ns
            return schemas._load_cached(unpacked, mtime, name, version)
    return find_upstream(name, version, paths, explicit)


def support_dependencies(paths: Paths) -> list[tuple[str, str]]:
    import yaml

    meta = yaml.safe_load((paths.support_chart / "Chart.yaml").read_text())
    return [(d["name"], str(d["version"])) for d in meta.get("dependencies") or []]


def _enabled(values: dict[str, Any], *keys: str) -> bool:
    node: Any = values
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return not isinstance(node, dict) or node.get("enabled", True) is not False


def unknown_keys(
    ours: Any, defaults: Any, prefix: tuple[str | int, ...], layers: list[Layer]
) -> list[ConfigError]:
    """Keys we set that a chart without a schema does not have in its values.yaml."""
    if not isinstance(ours, dict) or not isinstance(defaults, dict) or not defaults:
        return []
    if prefix[-2:] in FREE_FORM or prefix[:2] in FREE_FORM:
        return []
    errors = []
    for key, value in ours.items():
        path = (*prefix, key)
        if key not in defaults:
            close = difflib.get_close_matches(str(key), [str(k) for k in defaults], n=1)
            guess = f"; did you mean {close[0]}?" if close else ""
            file, line = origin(layers, path)
            errors.append(
                ConfigError(
                    f"unknown key {key!r}: not in the chart's default values.yaml (the chart "
                    f"ships no values schema, so its keys are checked against its defaults){guess}",
                    file=file,
                    line=line,
                    key_path=format_key_path(path),
                )
            )
            continue
        errors += unknown_keys(value, defaults[key], path, layers)
    return errors


def check_support_schemas(
    values: dict[str, Any], layers: list[Layer], paths: Paths, explicit: str | None = None
) -> tuple[list[ConfigError], str]:
    """The schemas check (module docstring); returns errors and what was checked."""
    errors: list[ConfigError] = []
    checked = []
    for name, version in support_dependencies(paths):
        if not _enabled(values, name):
            continue
        upstream = find_support_upstream(name, version, paths, explicit)
        ours = values.get(name) or {}
        errors += _check_chart(upstream, ours, (name,), layers)
        checked.append(f"{name} {version} ({'schema' if upstream.schema else 'default keys'})")
        if name != "prometheus":
            continue
        for sub, sub_version in PROMETHEUS_SUBCHARTS:
            if not _enabled(values, name, sub) or not _enabled(upstream.values, sub):
                continue
            nested = find_support_upstream(sub, sub_version, paths, explicit)
            if nested.schema:
                # As Helm: the parent's defaults for the subchart, then ours.
                sub_values = merge(upstream.values.get(sub) or {}, ours.get(sub) or {})
            else:
                # Only our keys: what the parent's defaults set is upstream's business.
                sub_values = ours.get(sub) or {}
            errors += _check_chart(nested, sub_values, (name, sub), layers)
            kind = "schema" if nested.schema else "default keys"
            checked.append(f"{sub} {sub_version} ({kind})")
    schema = json.loads((paths.support_chart / "values.schema.json").read_text())
    errors += schema_errors(values, schema, (), layers)
    return errors, "against " + ", ".join(checked) + " and the support schema"


def _check_chart(
    upstream: UpstreamChart, ours: dict[str, Any], prefix: tuple[str, ...], layers: list[Layer]
) -> list[ConfigError]:
    if upstream.schema:
        merged = merge(upstream.values, ours)
        schema = upstream.schema
        if schema.get("$schema") == UNVERSIONED:
            # The prometheus chart names no draft; its defaults validate under draft-07.
            schema = {**schema, "$schema": DRAFT_07}
        return schema_errors(merged, schema, prefix, layers)
    # `enabled` is the parent's condition (Chart.yaml), not a key of the chart.
    ours = {k: v for k, v in ours.items() if k != "enabled"}
    return unknown_keys(ours, upstream.values, prefix, layers)


# --- hub-login ----------------------------------------------------------------------


def _get(values: Any, *keys: str) -> Any:
    for key in keys:
        values = values.get(key) if isinstance(values, dict) else None
    return values


def grafana_attribute(role_attribute_path: str, user: dict[str, Any]) -> Any:
    """What a Grafana `*_attribute_path` (JMESPath) gives for a hub user model, as in Grafana."""
    import jmespath

    return jmespath.search(role_attribute_path, user)


class _Problems:
    """Errors located in the support release's or the login stage's layers."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self.errors: list[ConfigError] = []

    def add(self, path: tuple[str, ...], message: str, layers: list[Layer] | None = None) -> None:
        file, line = origin(layers if layers is not None else self.layers, path)
        self.errors.append(
            ConfigError(message, file=file, line=line, key_path=format_key_path(path))
        )


def check_hub_login(
    deployment: Deployment,
    support: SupportRelease,
    values: dict[str, Any],
    layers: list[Layer],
    stage_values: dict[str, dict[str, Any]],
    stage_layers: dict[str, list[Layer]],
) -> list[ConfigError]:
    """The hub-login check (module docstring). `stage_*`: each stage's merged values/layers."""
    problems = _Problems(layers)
    login = support.login_stage
    domain = deployment.stages[login].domain
    _check_oauth(problems, values, domain)
    _check_only_admins(problems, values)
    hub_layers = stage_layers[login]
    service = _get(stage_values[login], "jupyterhub", "hub", "services", GRAFANA_SERVICE)
    base: tuple[str, ...] = ("jupyterhub", "hub", "services", GRAFANA_SERVICE)
    client_id = _get(values, "grafana", "grafana.ini", "auth.generic_oauth", "client_id")
    if not isinstance(service, dict):
        problems.add(
            base,
            f"the hub of stage {login!r} (support.loginStage) registers no service "
            f"{GRAFANA_SERVICE!r}: Grafana's OAuth client {client_id!r} is unknown to it",
            hub_layers,
        )
    else:
        expected = {
            "oauth_client_id": client_id,
            "oauth_redirect_uri": f"{grafana_root_url(domain)}login/generic_oauth",
            "url": grafana_service_url(support),
        }
        for key, want in expected.items():
            if service.get(key) != want:
                problems.add(
                    (*base, key),
                    f"must be {want!r} (Grafana of the support release "
                    f"{support.release!r} in namespace {support.namespace!r}), got "
                    f"{service.get(key)!r}",
                    hub_layers,
                )
    _check_metrics_tokens(problems, deployment, values, stage_values, stage_layers)
    return problems.errors


def _check_oauth(problems: _Problems, values: dict[str, Any], domain: str) -> None:
    ini = ("grafana", "grafana.ini")
    oauth = _get(values, *ini, "auth.generic_oauth") or {}
    if oauth.get("enabled") is not True:
        problems.add((*ini, "auth.generic_oauth", "enabled"), "must be true (hub login)")
    wanted = {**hub_urls(domain), "client_id": GRAFANA_CLIENT_ID}
    for key, want in wanted.items():
        if oauth.get(key) != want:
            problems.add(
                (*ini, "auth.generic_oauth", key),
                f"must be {want!r} (the hub of the login stage, host {domain}), got "
                f"{oauth.get(key)!r}",
            )
    root = _get(values, *ini, "server", "root_url")
    if root != grafana_root_url(domain):
        problems.add(
            (*ini, "server", "root_url"),
            f"must be {grafana_root_url(domain)!r} (the hub's proxy serves Grafana there), "
            f"got {root!r}",
        )


def _check_only_admins(problems: _Problems, values: dict[str, Any]) -> None:
    ini = ("grafana", "grafana.ini")
    oauth = _get(values, *ini, "auth.generic_oauth") or {}
    path = oauth.get("role_attribute_path")
    key = (*ini, "auth.generic_oauth", "role_attribute_path")
    if not isinstance(path, str):
        problems.add(key, "must map the hub's `admin: true` to 'Admin' (a JMESPath expression)")
    else:
        admin = grafana_attribute(path, {"kind": "user", "name": "a", "admin": True})
        other = grafana_attribute(path, {"kind": "user", "name": "b", "admin": False})
        if admin != "Admin" or other:
            problems.add(
                key,
                f"must give hub admins 'Admin' and other users no role; {path!r} gives "
                f"admins {admin!r} and others {other!r}",
            )
    if oauth.get("role_attribute_strict") is not True:
        problems.add(
            (*ini, "auth.generic_oauth", "role_attribute_strict"),
            "must be true: users without a role (non-admins) are then refused",
        )
    closed = {
        ("auth.anonymous", "enabled"): False,
        ("auth.basic", "enabled"): False,
        ("auth", "disable_login_form"): True,
    }
    for (section, name), want in closed.items():
        if _get(values, *ini, section, name) is not want:
            problems.add((*ini, section, name), f"must be {str(want).lower()} (hub login only)")
    for section in OTHER_LOGINS:
        if _get(values, *ini, section, "enabled") is True:
            problems.add(
                (*ini, section, "enabled"), "must be off: Grafana logs in through the hub only"
            )


def _check_metrics_tokens(
    problems: _Problems,
    deployment: Deployment,
    values: dict[str, Any],
    stage_values: dict[str, dict[str, Any]],
    stage_layers: dict[str, list[Layer]],
) -> None:
    for stage in deployment.stages:
        hub = _get(stage_values[stage], "jupyterhub", "hub") or {}
        base = ("jupyterhub", "hub")
        if not isinstance(_get(hub, "services", PROMETHEUS_SERVICE), dict):
            problems.add(
                (*base, "services", PROMETHEUS_SERVICE),
                f"the hub of stage {stage!r} must register the service "
                f"{PROMETHEUS_SERVICE!r} (Prometheus scrapes /hub/metrics with its token)",
                stage_layers[stage],
            )
        roles = [
            (name, role)
            for name, role in (_get(hub, "loadRoles") or {}).items()
            if isinstance(role, dict) and PROMETHEUS_SERVICE in (role.get("services") or [])
        ]
        scopes = sorted({s for _, role in roles for s in role.get("scopes") or []})
        if scopes != [METRICS_SCOPE]:
            path = (*base, "loadRoles", roles[0][0]) if roles else (*base, "loadRoles")
            problems.add(
                path,
                f"the service {PROMETHEUS_SERVICE!r} of stage {stage!r} must have exactly the "
                f"scope {METRICS_SCOPE!r}, has {scopes or 'none'}",
                stage_layers[stage],
            )
        token = _get(values, "pangeo", "hubs", stage, "prometheusToken")
        if not token:
            problems.add(
                ("pangeo", "hubs", stage, "prometheusToken"),
                f"missing: the token of stage {stage!r}'s `prometheus` service belongs in the "
                "support release's secrets file",
            )
