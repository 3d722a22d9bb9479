"""The Grafana dashboards kept as code (helm-chart/support/files/dashboards/*.json).

This module reads them and answers what the tests and tools ask of them: the
structural problems of a dashboard (what Grafana needs to provision it, and
our rules: a unique uid, every panel on the templated Prometheus datasource,
every panel with queries), and every panel query with Grafana's variables
replaced by concrete values, so that a real Prometheus can be asked to run it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Oldest dashboard JSON schema we write (Grafana 10.4 writes 39).
MIN_SCHEMA_VERSION = 36
# Grafana's built-in variables and a value Prometheus accepts for each.
BUILTINS = {
    "__rate_interval": "2m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}
# $name, ${name}, ${name:format}, [[name]]; `$1` in label_replace is PromQL's, not a variable.
_VARIABLE = re.compile(r"\$([A-Za-z_]\w*)|\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)\]\]")


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel, as written in the dashboard."""

    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    expr: str


def dashboard_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for panel in dashboard.get("panels") or []:
        out.append(panel)
        out += panel.get("panels") or []
    return [p for p in out if p.get("type") != "row"]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in (dashboard.get("templating") or {}).get("list") or []}


def queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(dashboard["uid"], panel.get("title", ""), t.get("refId", ""), t.get("expr", ""))
        for panel in panels(dashboard)
        for t in panel.get("targets") or []
    ]


def variable_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    """The PromQL inside `label_values(...)` of each query variable."""
    out = []
    for name, var in variables(dashboard).items():
        if var.get("type") != "query":
            continue
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", text.strip())
        if match:
            out.append(PanelQuery(dashboard["uid"], f"variable {name}", name, match.group(1)))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """`expr` with every $var, ${var} and [[var]] replaced (built-ins included)."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in values:
            return values[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(f"no value for the dashboard variable ${name} in {expr!r}")

    return _VARIABLE.sub(replace, expr)


def problems(dashboard: dict[str, Any]) -> list[str]:
    """What keeps a dashboard from being ours and valid (empty when fine)."""
    found: list[str] = []
    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
        found.append(f"uid {uid!r} must be 1-40 letters, digits, '-' or '_'")
    if not dashboard.get("title"):
        found.append("no title")
    version = dashboard.get("schemaVersion")
    if not isinstance(version, int) or version < MIN_SCHEMA_VERSION:
        found.append(f"schemaVersion {version!r} must be an integer >= {MIN_SCHEMA_VERSION}")
    found += _variable_problems(dashboard)
    ids = [p.get("id") for p in panels(dashboard)]
    if len(ids) != len(set(ids)):
        found.append(f"panel ids repeat: {ids}")
    for panel in panels(dashboard):
        found += [f"panel {panel.get('title')!r}: {p}" for p in _panel_problems(panel)]
    known = set(variables(dashboard)) | set(BUILTINS)
    for q in queries(dashboard) + variable_queries(dashboard):
        for match in _VARIABLE.finditer(q.expr):
            name = next(g for g in match.groups() if g)
            if name not in known:
                found.append(f"{q.panel!r} uses ${name}, which the dashboard does not define")
    return found


def _variable_problems(dashboard: dict[str, Any]) -> list[str]:
    found = []
    source = variables(dashboard).get("datasource")
    if not source or source.get("type") != "datasource" or source.get("query") != "prometheus":
        found.append("needs a variable `datasource` of type datasource with query prometheus")
    for name, var in variables(dashboard).items():
        if var.get("type") == "query" and var.get("datasource") != DATASOURCE:
            found.append(f"variable {name!r} must query the templated datasource {DATASOURCE}")
    return found


def _panel_problems(panel: dict[str, Any]) -> list[str]:
    found = []
    if panel.get("datasource") != DATASOURCE:
        found.append(f"datasource must be {DATASOURCE}, got {panel.get('datasource')!r}")
    grid = panel.get("gridPos") or {}
    if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
        found.append("gridPos needs integer x, y, w, h")
    elif grid["x"] + grid["w"] > 24:
        found.append("gridPos is wider than Grafana's 24 columns")
    targets = panel.get("targets") or []
    if not targets:
        found.append("no targets (queries)")
    refs = [t.get("refId") for t in targets]
    if len(refs) != len(set(refs)) or not all(refs):
        found.append(f"refIds must be set and distinct: {refs}")
    for target in targets:
        if not str(target.get("expr", "")).strip():
            found.append(f"target {target.get('refId')!r} has no expr")
        if target.get("datasource", DATASOURCE) != DATASOURCE:
            found.append(f"target {target.get('refId')!r} must use {DATASOURCE}")
    return found
