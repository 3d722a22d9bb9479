"""Prometheus metrics of the gateway: running Dask clusters and workers per user.

dask-gateway-server exports no metrics. The backend (:mod:`.backend`) serves
``GET /metrics`` on the gateway's API app (``<gateway>/services/dask-gateway/
metrics`` through the proxies, ``:8000/metrics`` on the API pod), computed at
each scrape from what the backend knows:

- ``pangeo_dask_cluster_running{user, cluster}``: 1 per running cluster;
- ``pangeo_dask_workers{user, cluster}``: the workers connected to its
  scheduler (the scheduler's own count, else the ``active_workers`` of its
  last heartbeat, which comes only every ``cluster_heartbeat_period``);
- ``pangeo_dask_worker_cores`` / ``pangeo_dask_worker_memory_bytes``: those
  workers times the cluster's ``worker_cores`` / ``worker_memory``;
- ``pangeo_dask_cluster_idle{user, cluster}``: 1 while the scheduler has no
  task processing, else 0. The heartbeat carries only worker names, so the
  scheduler is asked: its dashboard's ``/metrics`` (distributed's own
  exporter: ``dask_scheduler_tasks{state="processing"}`` and
  ``dask_scheduler_workers{state=...}``), all clusters at once with a short
  timeout; a scheduler that does not answer gets no idle sample rather than a
  guess.

The endpoint names users, so it needs a JupyterHub token with the
``read:metrics`` scope (as the hub's ``/hub/metrics`` does), checked against
the hub and remembered for a minute. Standard library and aiohttp only: this
module runs inside the gateway image.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp

METRICS_SCOPE = "read:metrics"
SCHEDULER_TIMEOUT_S = 3.0
TOKEN_CACHE_S = 60.0
_PROCESSING = re.compile(r'^dask_scheduler_tasks\{[^}]*state="processing"[^}]*\}\s+(\S+)', re.M)
_WORKERS = re.compile(r"^dask_scheduler_workers\{[^}]*\}\s+(\S+)", re.M)

HELP = {
    "pangeo_dask_cluster_running": "1 per running Dask cluster",
    "pangeo_dask_workers": "workers connected to the cluster's scheduler",
    "pangeo_dask_worker_cores": "cores of the cluster's connected workers",
    "pangeo_dask_worker_memory_bytes": "memory of the cluster's connected workers (bytes)",
    "pangeo_dask_cluster_idle": "1 while the scheduler reports no task processing, else 0",
}


@dataclass(frozen=True)
class ClusterSample:
    """One running cluster at scrape time."""

    user: str
    cluster: str
    workers: int
    worker_cores: float
    worker_memory: float
    idle: bool | None  # None: the scheduler did not say


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(samples: Iterable[ClusterSample]) -> str:
    """The Prometheus text exposition of `samples`."""
    rows: dict[str, list[str]] = {name: [] for name in HELP}
    for s in samples:
        labels = f'{{user="{_escape(s.user)}",cluster="{_escape(s.cluster)}"}}'
        rows["pangeo_dask_cluster_running"].append(f"{labels} 1")
        rows["pangeo_dask_workers"].append(f"{labels} {s.workers}")
        rows["pangeo_dask_worker_cores"].append(f"{labels} {s.workers * s.worker_cores:g}")
        rows["pangeo_dask_worker_memory_bytes"].append(
            f"{labels} {s.workers * s.worker_memory:.0f}"
        )
        if s.idle is not None:
            rows["pangeo_dask_cluster_idle"].append(f"{labels} {int(s.idle)}")
    lines = []
    for name, text in HELP.items():
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{row}" for row in rows[name]]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SchedulerState:
    """What a scheduler's /metrics says (None: it did not say)."""

    idle: bool | None = None
    workers: int | None = None


def parse_scheduler(exposition: str) -> SchedulerState:
    """Idleness and worker count from a scheduler's /metrics text."""
    processing = _PROCESSING.search(exposition)
    workers = _WORKERS.findall(exposition)
    return SchedulerState(
        idle=None if processing is None else float(processing.group(1)) == 0,
        workers=round(sum(float(w) for w in workers)) if workers else None,
    )


async def scheduler_state(session: aiohttp.ClientSession, dashboard: str) -> SchedulerState:
    """Ask the scheduler behind `dashboard` (an empty state if it does not answer)."""
    if not dashboard:
        return SchedulerState()
    timeout = aiohttp.ClientTimeout(total=SCHEDULER_TIMEOUT_S)
    try:
        async with session.get(dashboard.rstrip("/") + "/metrics", timeout=timeout) as resp:
            if resp.status != 200:
                return SchedulerState()
            return parse_scheduler(await resp.text())
    except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError):
        return SchedulerState()


class TokenCheck:
    """Tokens with ``read:metrics``, asked of the hub and remembered for a minute."""

    def __init__(self) -> None:
        self._valid: dict[str, float] = {}

    async def allowed(self, session: aiohttp.ClientSession, hub_api: str, token: str) -> bool:
        now = time.monotonic()
        if self._valid.get(token, 0.0) > now:
            return True
        async with session.get(
            f"{hub_api}/user", headers={"Authorization": f"token {token}"}
        ) as resp:
            if resp.status >= 400:
                return False
            model = await resp.json()
        if METRICS_SCOPE not in (model.get("scopes") or []):
            return False
        self._valid = {t: until for t, until in self._valid.items() if until > now}
        self._valid[token] = now + TOKEN_CACHE_S
        return True


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer|token <t>`` header."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "token", "jupyterhub") or not token.strip():
        return None
    return token.strip()


async def gather_states(
    session: aiohttp.ClientSession, dashboards: list[str]
) -> list[SchedulerState]:
    """Ask all schedulers at once: a scrape waits at most one timeout."""
    return list(await asyncio.gather(*(scheduler_state(session, d) for d in dashboards)))
