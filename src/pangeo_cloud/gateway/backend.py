"""Per-user limits, clusters bound to their owner's server, and an admin API.

Upstream dask-gateway-server caps each cluster on its own (dask-gateway#249
dropped per-user limits) and lets clusters outlive the kernels and servers that
made them (dask-gateway#255). :class:`PangeoBackendMixin` adds, on top of any
backend (:class:`PangeoLocalBackend` here, ``PangeoKubeBackend`` in
:mod:`pangeo_cloud.gateway.kube`):

- **per-user totals** over all of a user's running clusters (clusters, cores,
  memory, workers; schedulers included), from ``userMax*`` and ``groupLimits``.
  The gateway is one process, so a per-user ``asyncio.Lock`` around
  check-and-create makes the last slot go to exactly one request. A new cluster
  over a limit is refused with one message; a scale or adapt request over the
  total is capped and the client gets a ``GatewayWarning`` saying so; worker
  counts a scheduler reports (adaptive scaling) are capped at every heartbeat,
  which is the only place workers are created.
- **clusters stop with their server**: every ``serverCheckSeconds`` the gateway
  asks the hub which users have a running or pending server and stops the
  clusters of everyone else, except clusters created with
  ``keep_after_server_stops=True`` (still stopped by the idle timeout).
- **usage metrics** at ``/metrics`` (:mod:`.metrics`): running clusters,
  connected workers, their cores and memory, and idleness, per user.
- **an admin API** under ``/api/v1/admin/clusters/`` (list with usage, stop) for
  tokens that may stop any user's server (``admin:servers``): ``pangeo-cloud
  clusters`` uses it.

Each cluster carries its owner's per-user limits in its config
(``user_max_*`` traits of the cluster config classes below), taken from the
owner's groups at creation, so heartbeats (which come from the scheduler,
without a user) and a restarted gateway apply the same limits.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections import defaultdict
from typing import Any

from aiohttp import web
from dask_gateway_server.backends.base import PublicException
from dask_gateway_server.backends.local import LocalClusterConfig, UnsafeLocalBackend
from dask_gateway_server.routes import api_handler
from dask_gateway_server.traitlets import Type
from traitlets import Dict, Float, Integer
from traitlets.config import Configurable, LoggingConfigurable

from pangeo_cloud.gateway import metrics
from pangeo_cloud.gateway.heartbeat import HeartbeatProbeMixin
from pangeo_cloud.gateway.options import KEEP_OPTION
from pangeo_cloud.gateway.policy import GIB, Policy, UserLimits
from pangeo_cloud.gateway.usage import (
    FREE_HINT,
    Usage,
    cluster_usage,
    limit_text,
    limits_of,
    refusal,
    workers_allowed,
)

ADMIN_PREFIX = "/api/v1/admin/clusters"
ADMIN_SCOPE = "admin:servers"
# A reservation for a cluster the backend does not list yet (Kubernetes: until
# the informer sees the new DaskCluster object) is dropped after this long.
RESERVATION_SECONDS = 120.0

# Warnings for the client, collected while one request is handled (scale/adapt).
_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "pangeo_gateway_warnings", default=None
)


class PangeoClusterConfigMixin(Configurable):
    """The owner's per-user limits, stored with each cluster (set by the backend)."""

    user_max_clusters = Integer(None, allow_none=True, help="Owner's most running clusters.")
    user_max_cores = Float(None, allow_none=True, help="Owner's most cores over all clusters.")
    user_max_memory = Integer(None, allow_none=True, help="Owner's most bytes over all clusters.")
    user_max_workers = Integer(None, allow_none=True, help="Owner's most workers in total.")


class PangeoLocalClusterConfig(PangeoClusterConfigMixin, LocalClusterConfig):
    """LocalClusterConfig plus the owner's per-user limits."""


@web.middleware
async def _warnings_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Add the backend's warnings (capped scale/adapt) to the JSON answer's `msg`."""
    if request.method != "POST" or not request.path.endswith(("/scale", "/adapt")):
        return await handler(request)
    token = _WARNINGS.set([])
    try:
        response = await handler(request)
        warnings = _WARNINGS.get() or []
    finally:
        _WARNINGS.reset(token)
    if not warnings or not isinstance(response, web.Response) or response.status != 200:
        return response
    try:
        body = json.loads(response.body)
    except (TypeError, ValueError):
        return response
    messages = [m for m in (body.get("msg"), *warnings) if m]
    return web.json_response({**body, "ok": False, "msg": " ".join(messages)})


def _warn(message: str) -> None:
    warnings = _WARNINGS.get()
    if warnings is not None:
        warnings.append(message)


class PangeoBackendMixin(LoggingConfigurable):
    """Per-user limits, server-bound clusters and the admin API for a Backend."""

    settings = Dict(
        help="jupyterhub.custom.pangeo (set by pangeo_cloud.gateway.config.configure).",
        config=True,
    )

    # --- subclasses -----------------------------------------------------------------

    def backend_worker_count(self, cluster_name: str) -> int:
        """Workers the backend currently runs for (targets) a cluster."""
        raise NotImplementedError

    # --- set-up ----------------------------------------------------------------------

    async def setup(self, app: web.Application) -> None:
        self.policy = Policy.from_settings(self.settings)
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # user -> {cluster name: (usage, monotonic time)} created but not yet listed
        self._reserved: defaultdict[str, dict[str, tuple[Usage, float]]] = defaultdict(dict)
        self._accepted: dict[str, int] = {}  # cluster -> workers allowed at its last heartbeat
        self._requested: dict[str, int] = {}  # cluster -> workers of a scale not yet reported
        self._new_usage: dict[str, Usage] = {}  # user -> the cluster being created
        self._connected: dict[str, int] = {}  # cluster -> workers in its last heartbeat
        self._metrics_tokens = metrics.TokenCheck()
        app.middlewares.append(_warnings_middleware)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get(ADMIN_PREFIX + "/", api_handler(self._admin_list))
        app.router.add_delete(ADMIN_PREFIX + "/{cluster_name}", api_handler(self._admin_stop))
        await super().setup(app)
        self._server_task = asyncio.ensure_future(self._server_loop())

    async def cleanup(self) -> None:
        task = getattr(self, "_server_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().cleanup()

    # --- limits ----------------------------------------------------------------------

    def _workers(self, name: str, pending: bool) -> int:
        count = self._accepted.get(name)
        if count is None:
            count = self.backend_worker_count(name)
        if pending:
            count = max(count, self._requested.get(name, 0))
        return count

    async def usage(self, username: str, exclude: str | None = None, pending: bool = True) -> Usage:
        """What `username`'s active clusters use (`pending`: counting unreported scales)."""
        total = Usage()
        listed = set()
        for cluster in await self.list_clusters(username=username):
            listed.add(cluster.name)
            if cluster.name != exclude:
                total += cluster_usage(cluster.config, self._workers(cluster.name, pending))
        reserved = self._reserved[username]
        now = time.monotonic()
        for name, (usage, since) in list(reserved.items()):
            known = name in listed or await self.get_cluster(name) is not None
            if known or now - since > RESERVATION_SECONDS:
                del reserved[name]
            elif name != exclude:
                total += usage
        return total

    async def process_cluster_options(self, user: Any, request: Any) -> tuple[Any, Any]:
        """Upstream's checks, then the owner's limits: stored, and checked for a new cluster."""
        options, config = await super().process_cluster_options(user, request)
        limits = self.policy.user_limits_for(getattr(user, "groups", ()) or ())
        config.user_max_clusters = limits.clusters
        config.user_max_cores = None if limits.cores is None else float(limits.cores)
        config.user_max_memory = None if limits.memory_gib is None else int(limits.memory_gib * GIB)
        config.user_max_workers = limits.workers
        new = cluster_usage(config.to_dict(), 0)
        why = refusal(limits, await self.usage(user.name), new)
        if why is not None:
            self.log.info("Refused a new cluster for %s: %s", user.name, why)
            raise PublicException(why)
        self._new_usage[user.name] = new  # read by start_cluster, under the user's lock
        return options, config

    async def start_cluster(self, user: Any, cluster_options: Any) -> str:
        # Check and create under the user's lock: the last slot goes to one request.
        async with self._locks[user.name]:
            name = await super().start_cluster(user, cluster_options)
            new = self._new_usage.pop(user.name)
            self._reserved[user.name][name] = (new, time.monotonic())
            return name

    async def forward_message_to_scheduler(self, cluster: Any, msg: dict) -> None:
        if msg.get("op") not in ("scale", "adapt"):
            return await super().forward_message_to_scheduler(cluster, msg)
        async with self._locks[cluster.username]:
            others = await self.usage(cluster.username, exclude=cluster.name)
            allowed = workers_allowed(limits_of(cluster.config), others, cluster.config)
            msg = self._capped(msg, allowed, limits_of(cluster.config), others)
            if msg["op"] == "scale":
                self._requested[cluster.name] = msg["count"]
            await super().forward_message_to_scheduler(cluster, msg)

    def _capped(self, msg: dict, allowed: int | None, limits: UserLimits, others: Usage) -> dict:
        if allowed is None:
            return msg
        why = (
            f"your limit across all your clusters is {limit_text(limits)}, and your other "
            f"clusters use {others.describe()}"
        )
        if msg["op"] == "scale" and msg["count"] > allowed:
            _warn(
                f"Scale request of {msg['count']} workers would exceed your per-user limit "
                f"({why}). Scaling to {allowed} instead. {FREE_HINT}"
            )
            return {**msg, "count": allowed}
        if msg["op"] == "adapt":
            maximum, minimum = msg.get("maximum"), msg.get("minimum") or 0
            if maximum is None or maximum > allowed or minimum > allowed:
                if maximum is not None and (maximum > allowed or minimum > allowed):
                    _warn(
                        f"Adapt with maximum={maximum}, minimum={minimum} would exceed your "
                        f"per-user limit ({why}). Using maximum={allowed}, "
                        f"minimum={min(minimum, allowed)} instead. {FREE_HINT}"
                    )
                return {**msg, "maximum": allowed, "minimum": min(minimum, allowed)}
        return msg

    async def on_cluster_heartbeat(self, cluster_name: str, msg: dict) -> None:
        cluster = await self.get_cluster(cluster_name)
        if cluster is None:
            return await super().on_cluster_heartbeat(cluster_name, msg)
        async with self._locks[cluster.username]:
            # Only heartbeats create workers: cap them against what the user's other
            # clusters were allowed, so the total never exceeds the limits.
            others = await self.usage(cluster.username, exclude=cluster_name, pending=False)
            allowed = workers_allowed(limits_of(cluster.config), others, cluster.config)
            reported = msg["count"]
            count = reported if allowed is None else min(reported, allowed)
            if count < reported:
                self.log.info(
                    "Cluster %s of %s asked for %d workers; per-user limits allow %d",
                    cluster_name,
                    cluster.username,
                    reported,
                    count,
                )
            await super().on_cluster_heartbeat(cluster_name, {**msg, "count": count})
            self._connected[cluster_name] = len(msg.get("active_workers") or ())
            cap = cluster.config.get("cluster_max_workers")
            self._accepted[cluster_name] = count if cap is None else min(count, cap)
            if self._requested.get(cluster_name) == reported:
                del self._requested[cluster_name]  # the scheduler has the new target

    # --- clusters stop with their server -----------------------------------------------

    async def _server_loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.server_check_seconds)
            try:
                await self.forget_stopped()
                if self.policy.stop_with_server:
                    await self.stop_clusters_without_server()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub may be restarting: try again later
                self.log.warning("Checking users' servers failed: %s", exc)

    async def forget_stopped(self) -> None:
        """Drop bookkeeping of clusters that are no longer active."""
        active = {c.name for c in await self.list_clusters()}
        for table in (self._accepted, self._requested, self._connected):
            for name in set(table) - active:
                del table[name]

    async def stop_clusters_without_server(self) -> list[str]:
        """Stop the clusters (not kept) of users without a running or pending server."""
        # Clusters first: one listed here was created before the hub is asked, so
        # its owner's server, if it was running then, is still listed unless stopped.
        clusters = [
            c
            for c in await self.list_clusters()
            if not (c.options or {}).get(KEEP_OPTION) and ":" not in c.username
        ]
        if not clusters:
            return []
        active = await self.users_with_servers()
        stopped = []
        for cluster in clusters:
            if cluster.username not in active:
                self.log.info(
                    "Stopping cluster %s: its owner %s has no running server",
                    cluster.name,
                    cluster.username,
                )
                await self.stop_cluster(cluster.name)
                stopped.append(cluster.name)
        return stopped

    def _hub(self) -> tuple[str, str]:
        auth = self.parent.authenticator
        url = getattr(auth, "jupyterhub_api_url", "")
        token = getattr(auth, "jupyterhub_api_token", "")
        if not url or not token:
            raise RuntimeError("the gateway's authenticator has no JupyterHub API URL and token")
        return url.rstrip("/"), token

    async def users_with_servers(self) -> set[str]:
        """Names of the users with a running or pending server (scopes list:users)."""
        url, token = self._hub()
        headers = {
            "Authorization": f"token {token}",
            "Accept": "application/jupyterhub-pagination+json",
        }
        names: set[str] = set()
        offset = 0
        while True:
            params = {"state": "active", "offset": str(offset), "limit": "200"}
            async with self.session.get(
                f"{url}/users", params=params, headers=headers, raise_for_status=True
            ) as resp:
                page = await resp.json()
            names.update(user["name"] for user in page["items"])
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return names
            offset = following["offset"]

    # --- usage metrics -----------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        token = metrics.bearer_token(request.headers.get("Authorization", ""))
        if token is None:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
        url, _ = self._hub()
        if not await self._metrics_tokens.allowed(self.session, url, token):
            raise web.HTTPForbidden(reason=f"metrics need the {metrics.METRICS_SCOPE} scope")
        running = [c for c in await self.list_clusters() if c.status.name == "RUNNING"]
        states = await metrics.gather_states(self.session, [c.dashboard_address for c in running])
        samples = [
            metrics.ClusterSample(
                user=c.username,
                cluster=c.name,
                workers=state.workers
                if state.workers is not None
                else self._connected.get(c.name, 0),
                worker_cores=float(c.config.get("worker_cores", 0)),
                worker_memory=float(c.config.get("worker_memory", 0)),
                idle=state.idle,
            )
            for c, state in zip(running, states, strict=True)
        ]
        return web.Response(
            text=metrics.render(samples), content_type="text/plain", charset="utf-8"
        )

    # --- admin API ---------------------------------------------------------------------

    async def _check_admin(self, request: web.Request) -> None:
        """Allow tokens that may stop any user's server (hub admins, admin services)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme not in ("token", "jupyterhub") or not token:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "token"})
        url, _ = self._hub()
        async with self.session.get(
            f"{url}/user", headers={"Authorization": f"token {token}"}
        ) as resp:
            if resp.status >= 400:
                raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "token"})
            model = await resp.json()
        if ADMIN_SCOPE not in (model.get("scopes") or []):
            raise web.HTTPForbidden(reason=f"the admin cluster API needs the {ADMIN_SCOPE} scope")

    async def _admin_list(self, request: web.Request) -> web.Response:
        await self._check_admin(request)
        out = []
        for cluster in await self.list_clusters():
            usage = cluster_usage(cluster.config, self._workers(cluster.name, pending=False))
            out.append(
                {
                    "name": cluster.name,
                    "username": cluster.username,
                    "status": cluster.status.name,
                    "start_time": cluster.start_time,
                    "workers": usage.workers,
                    "cores": usage.cores,
                    "memory": usage.memory,
                    "kept": bool((cluster.options or {}).get(KEEP_OPTION)),
                }
            )
        return web.json_response({"clusters": out})

    async def _admin_stop(self, request: web.Request) -> web.Response:
        await self._check_admin(request)
        name = request.match_info["cluster_name"]
        if await self.get_cluster(name) is None:
            raise web.HTTPNotFound(reason=f"Cluster {name} not found")
        self.log.info("Stopping cluster %s at an admin's request", name)
        await self.stop_cluster(name)
        return web.Response(status=204)


class PangeoLocalBackend(HeartbeatProbeMixin, PangeoBackendMixin, UnsafeLocalBackend):
    """UnsafeLocalBackend (local processes) with the federation's per-user policy."""

    cluster_config_class = Type(
        "pangeo_cloud.gateway.backend.PangeoLocalClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class to use",
        config=True,
    )

    def backend_worker_count(self, cluster_name: str) -> int:
        cluster = self.db.get_cluster(cluster_name)
        return 0 if cluster is None else int(cluster.count)

    def get_env(self, cluster: Any) -> dict[str, str]:
        """As in a pod, the cluster's environment wins over what the gateway passes on.

        Upstream lets the gateway's own PATH, PYTHONPATH ... replace the cluster's,
        so e.g. a user's PYTHONPATH for packages a PipInstall plugin puts in a
        directory of theirs would be ignored locally but not on Kubernetes.
        """
        env = super().get_env(cluster)
        configured = cluster.config.environment
        for key in self.inherited_environment:
            if key in configured:
                env[key] = configured[key]
        return env
