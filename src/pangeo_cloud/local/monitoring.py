"""The Prometheus of `pangeo-cloud up`: its hub service, its scrape targets, its start.

Prometheus scrapes, as on the clusters (job names of the shared metrics contract):

- ``jupyterhub``: ``/hub/metrics`` (JupyterHub's own metrics and the per-user
  usage collector of :mod:`pangeo_cloud.hub.metrics`);
- ``dask-gateway``: ``/services/dask-gateway/metrics`` through the hub's proxy,
  as users reach the gateway (:mod:`pangeo_cloud.gateway.metrics`);
- ``scratch-broker``: the broker's ``metrics`` (:mod:`pangeo_cloud.broker.usage`).

All three need a token with ``read:metrics``: the ``prometheus`` hub service
holds one (generated into ``secrets.json``, given to Prometheus as a 0600
file, never in its configuration). Every series carries ``deployment`` and
``stage`` labels. Prometheus keeps its data in ``<data-dir>/prometheus``, so
the usage of earlier runs stays queryable; runtime.json records its URL for
``pangeo-cloud usage``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pangeo_cloud.local.errors import LocalRuntimeError
from pangeo_cloud.local.prometheus import (
    DEFAULT_SCRAPE_INTERVAL_S,
    PrometheusError,
    PrometheusServer,
    ScrapeTarget,
    find_prometheus,
)
from pangeo_cloud.local.runinfo import RunInfo

SERVICE = "prometheus"
SCOPES = ["read:metrics"]
# Seconds between scrapes; the tests use a shorter interval.
INTERVAL_ENV = "PANGEO_SCRAPE_INTERVAL"


def add_prometheus_service(values: dict[str, Any], token: str) -> dict[str, Any]:
    """Register the ``prometheus`` hub service, allowed to read metrics only."""
    hub = values.setdefault("jupyterhub", {}).setdefault("hub", {})
    hub.setdefault("services", {})[SERVICE] = {"apiToken": token, "display": False}
    hub.setdefault("loadRoles", {})[SERVICE] = {"services": [SERVICE], "scopes": list(SCOPES)}
    return values


USAGE_SERVICE = "usage"


def add_usage_service(values: dict[str, Any], port: int) -> dict[str, Any]:
    """Register the usage page (:mod:`pangeo_cloud.hub.usage_page`) as a hub service.

    The hub starts it (its command is set by :mod:`pangeo_cloud.local.hubconfig`);
    people reach it at ``/services/usage/`` after JupyterHub OAuth.
    """
    hub = values.setdefault("jupyterhub", {}).setdefault("hub", {})
    hub.setdefault("services", {})[USAGE_SERVICE] = {
        "url": f"http://127.0.0.1:{port}",
        "display": True,
        "oauth_no_confirm": True,
    }
    return values


def usage_environment(rt: RunInfo) -> dict[str, str]:
    """The usage page's settings (see pangeo_cloud.hub.usage_page)."""
    costs = rt.values["jupyterhub"].get("custom", {}).get("pangeo", {}).get("costs") or {}
    return {
        "PANGEO_PROMETHEUS_URL": rt.prometheus,
        "PANGEO_USAGE_DEPLOYMENT": rt.deployment,
        "PANGEO_USAGE_STAGE": rt.stage,
        "PANGEO_USAGE_COSTS": json.dumps(costs),
    }


def scrape_targets(
    ports: dict[str, int], token: str, deployment: str, stage: str, broker_service: str
) -> list[ScrapeTarget]:
    labels = {"deployment": deployment, "stage": stage}
    public = f"http://127.0.0.1:{ports['public']}"
    return [
        ScrapeTarget("jupyterhub", f"{public}/hub/metrics", token, labels),
        ScrapeTarget("dask-gateway", f"{public}/services/dask-gateway/metrics", token, labels),
        ScrapeTarget(
            "scratch-broker",
            f"http://127.0.0.1:{ports['broker']}/services/{broker_service}/metrics",
            token,
            labels,
        ),
    ]


def scrape_interval() -> int:
    raw = os.environ.get(INTERVAL_ENV, "")
    if not raw:
        return DEFAULT_SCRAPE_INTERVAL_S
    if not raw.isdigit() or int(raw) < 1:
        from pangeo_cloud.local.runtime import LocalRuntimeError

        raise LocalRuntimeError(f"{INTERVAL_ENV} must be whole seconds >= 1, got {raw!r}")
    return int(raw)


def prometheus_for(
    data_dir: Path, port: int, targets: list[ScrapeTarget], env: dict[str, str]
) -> PrometheusServer | None:
    """The server of this run, or None when Prometheus is not installed."""
    if find_prometheus() is None:
        return None
    return PrometheusServer(
        data_dir / "prometheus", port, targets, interval_s=scrape_interval(), env=env
    )


def start_prometheus(
    data_dir: Path, port: int, targets: list[ScrapeTarget], env: dict[str, str]
) -> tuple[PrometheusServer | None, str]:
    """Start this run's Prometheus; (None, why) when it is not installed."""
    server = prometheus_for(data_dir, port, targets, env)
    if server is None:
        return None, "NOT started: prometheus is not installed (make system); no usage report"
    try:
        server.start()
        # Ready only once the hub has been scraped: usage before the first scrape
        # would be missing from every report.
        _wait_first_scrape(server, "jupyterhub")
    except PrometheusError as exc:
        server.stop()
        raise LocalRuntimeError(str(exc)) from None
    return server, f"scraping hub, gateway and broker every {server.interval_s} s"


def _wait_first_scrape(server: PrometheusServer, job: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r["value"][1] == "1" for r in server.query(f'up{{job="{job}"}}')):
            return
        time.sleep(0.2)
    raise PrometheusError(f"prometheus did not scrape the {job} target within {timeout:.0f} s")
