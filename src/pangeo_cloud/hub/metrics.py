"""Per-user usage metrics served by the hub at ``/hub/metrics``.

JupyterHub exports counts (running servers, spawn durations) but nothing per
user, profile or group, which the usage report and the dashboards need. A
prometheus_client collector, registered in JupyterHub's default registry (the
one ``/hub/metrics`` serves), computes at every scrape, from the hub's own
users and spawners:

- ``pangeo_server_running{user, server, profile}``: 1 per ready server;
- ``pangeo_server_cpu_request{...}``: the cores guaranteed to it
  (``cpu_guarantee`` after the profile's ``kubespawner_override``, as
  KubeSpawner applies it);
- ``pangeo_server_memory_request_bytes{...}``: the memory guaranteed (bytes,
  ``mem_guarantee`` as KubeSpawner reads it);
- ``pangeo_user_group{user, group}``: 1 per user and JupyterHub group.

Computing at scrape time keeps the figures exact (no bookkeeping to drift)
and costs one pass over the in-memory users plus one query for group members.
The metric names are the contract shared with the dashboards
(docs: the README's "Usage and cost" section).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

SERVER_LABELS = ("user", "server", "profile")


def default_profile(profile_list: list[dict[str, Any]]) -> str:
    """The slug KubeSpawner uses when a spawn names no profile."""
    from pangeo_cloud.hub.profiles import slug_of

    if not profile_list:
        return ""
    chosen = next((p for p in profile_list if p.get("default")), profile_list[0])
    return slug_of(chosen)


def server_profile(spawner: Any, fallback: str) -> str:
    """The profile slug a running server was started with."""
    options = getattr(spawner, "user_options", None) or {}
    slug = options.get("profile") if isinstance(options, dict) else None
    if isinstance(slug, list):  # form data kept as lists
        slug = slug[0] if slug else None
    return str(slug) if slug else fallback


def running_servers(app: Any) -> Iterator[tuple[str, str, Any]]:
    """(user, server name, spawner) for every ready server the hub knows."""
    for user in list(app.users.values()):
        for name, spawner in list(user.spawners.items()):
            if spawner.ready:
                yield user.name, name, spawner


def group_members(app: Any) -> Iterator[tuple[str, str]]:
    """(user, group) for every member of every JupyterHub group."""
    from jupyterhub import orm

    for group in app.db.query(orm.Group):
        for user in group.users:
            yield user.name, group.name


class UsageCollector:
    """The prometheus_client collector of the module docstring."""

    def __init__(self, find_app: Callable[[], Any], profile_list: list[dict[str, Any]]) -> None:
        self.find_app = find_app
        self.fallback_profile = default_profile(profile_list)

    def describe(self) -> list[Any]:
        # Empty: the registry must not call collect() at registration, before the hub exists.
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        running = GaugeMetricFamily(
            "pangeo_server_running", "1 per running (ready) server", labels=SERVER_LABELS
        )
        cpu = GaugeMetricFamily(
            "pangeo_server_cpu_request", "CPU cores guaranteed to the server", labels=SERVER_LABELS
        )
        memory = GaugeMetricFamily(
            "pangeo_server_memory_request_bytes",
            "memory guaranteed to the server (bytes)",
            labels=SERVER_LABELS,
        )
        groups = GaugeMetricFamily(
            "pangeo_user_group", "1 per user and JupyterHub group", labels=("user", "group")
        )
        app = self.find_app()
        if app is not None and getattr(app, "users", None) is not None:
            for user, server, spawner in running_servers(app):
                labels = [user, server, server_profile(spawner, self.fallback_profile)]
                running.add_metric(labels, 1)
                cpu.add_metric(labels, float(spawner.cpu_guarantee or 0))
                memory.add_metric(labels, float(spawner.mem_guarantee or 0))
            for user, group in group_members(app):
                groups.add_metric([user, group], 1)
        yield from (running, cpu, memory, groups)


def running_hub() -> Any:
    """The running JupyterHub application, or None before it exists."""
    from jupyterhub.app import JupyterHub

    return JupyterHub.instance() if JupyterHub.initialized() else None


_REGISTERED: list[UsageCollector] = []


def register_usage_metrics(profile_list: list[dict[str, Any]] | None) -> UsageCollector:
    """Register the collector in JupyterHub's registry (once per process)."""
    from prometheus_client import REGISTRY

    for old in _REGISTERED:  # configure() may run twice in one process (tests)
        REGISTRY.unregister(old)
    _REGISTERED.clear()
    collector = UsageCollector(running_hub, list(profile_list or []))
    REGISTRY.register(collector)
    _REGISTERED.append(collector)
    return collector
