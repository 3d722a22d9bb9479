"""A minimal Prometheus HTTP API client: instant queries, range queries, scrape intervals.

Standard library only, so that the hub's usage page (:mod:`.usage_page`) and
the CLI (``pangeo-cloud usage``, :mod:`pangeo_cloud.local.prometheus`) share
it. Every failure is a :class:`PrometheusError` with one line: the address for
an unreachable server, the query and Prometheus' reason for a refused one.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 30
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or refused a query; one clear line."""


def duration_seconds(text: str) -> float:
    """A single-unit Prometheus duration ("30d", "90m", "15s") in seconds; ValueError else."""
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30d, 12h, 90m or 30s")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _get(base_url: str, path: str, params: dict[str, str], what: str) -> Any:
    url = f"{base_url.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        raise PrometheusError(f"prometheus at {base_url} refused {what}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PrometheusError(f"prometheus at {base_url} cannot be reached: {reason}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"prometheus at {base_url} refused {what}: {body.get('error')}")
    return body["data"]


def query(base_url: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    return _get(base_url, "/api/v1/query", params, f"the query {promql!r}")["result"]


def query_range(
    base_url: str, promql: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    """A range query's result matrix (each series' ``values``: [time, "value"] pairs)."""
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    return _get(base_url, "/api/v1/query_range", params, f"the range query {promql!r}")["result"]


def scrape_intervals(base_url: str) -> dict[str, float]:
    """Seconds between scrapes per job name, from the running configuration."""
    import yaml  # in the hub image (JupyterHub depends on it) and in our CLI

    data = _get(base_url, "/api/v1/status/config", {}, "its configuration")
    config = yaml.safe_load(data.get("yaml") or "") or {}
    default = duration_seconds((config.get("global") or {}).get("scrape_interval", "1m"))
    return {
        job["job_name"]: duration_seconds(job.get("scrape_interval") or f"{default:g}s")
        for job in config.get("scrape_configs") or []
    }
