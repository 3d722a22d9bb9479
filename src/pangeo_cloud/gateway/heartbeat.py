"""Missed heartbeats fail a cluster only if its scheduler does not answer either.

Upstream behaviour worked around here (dask-gateway-server 2026.3.0, the
database-backed backends, ``DBBackendBase``: the local backend of `pangeo-cloud
up` and the tests, also jobqueue and YARN): ``_check_timeouts`` marks a RUNNING
cluster FAILED as soon as the gateway has not *processed* a heartbeat for
``cluster_heartbeat_timeout``. It judges that right when its timer fires, so a
gateway that got no CPU for a few seconds fails clusters whose heartbeats are
waiting, unread, in its sockets; a scheduler that got no CPU for a moment is
failed too. Once a cluster's target is FAILED, ``stop_cluster`` ignores every
later request, including the scheduler's own ``DELETE`` when its idle timeout
fires (``dask_gateway.scheduler_preload`` check_idle), so an idle cluster on a
busy machine is reported FAILED instead of STOPPED.

:class:`HeartbeatProbeMixin` asks an overdue cluster's scheduler directly
(``GET <api_address>/api/health``, served by the scheduler preload) before
upstream's check runs. While it waits, the gateway reads what is pending (late
heartbeats, the idle stop request). A scheduler that answers gets one more
heartbeat timeout; one that refuses the connection, fails or does not answer
within ``heartbeat_probe_timeout``, or that still sends no heartbeat after its
extra timeout, is failed by upstream's check as before. The probes run inside
upstream's timeout loop, so while one waits (at most ``heartbeat_probe_timeout``)
the other start and heartbeat timeouts are checked a little later.

Kubernetes needs none of this: ``KubeBackend`` has no heartbeat timeout (its
heartbeats only set ``spec.replicas``); the controller derives Running, Stopped
and Failed from the scheduler pod, and a stop request always ends Stopped.
``tests/unit/gateway/test_gateway_heartbeat.py`` checks that this still holds.
"""

from __future__ import annotations

import asyncio

import aiohttp
from dask_gateway_server.backends.db_base import Cluster, DBBackendBase, JobStatus
from dask_gateway_server.utils import timestamp
from traitlets import Float, Set, default


class HeartbeatProbeMixin(DBBackendBase):
    """Probe overdue schedulers before upstream fails them for missed heartbeats.

    Put it first in the bases of a database-backed backend class.
    """

    heartbeat_probe_timeout = Float(
        help="""
        Seconds to wait for an overdue cluster's scheduler to answer a health
        check before upstream's heartbeat timeout fails the cluster. Defaults
        to ``cluster_heartbeat_timeout``.
        """,
        config=True,
    )

    @default("heartbeat_probe_timeout")
    def _default_heartbeat_probe_timeout(self) -> float:
        return float(self.cluster_heartbeat_timeout)

    # Clusters kept alive by an answered probe since their last real heartbeat.
    _kept_by_probe = Set()

    async def on_cluster_heartbeat(self, cluster_name: str, msg: dict) -> None:
        self._kept_by_probe.discard(cluster_name)
        await super().on_cluster_heartbeat(cluster_name, msg)

    async def _check_timeouts(self) -> None:
        await self._probe_overdue_schedulers()
        await super()._check_timeouts()

    def _overdue(self) -> list[Cluster]:
        """Running clusters that upstream's check would fail now for a missed heartbeat."""
        cutoff = timestamp() - self.cluster_heartbeat_timeout * 1000
        return [
            cluster
            for cluster in self.db.active_clusters()
            if cluster.status == JobStatus.RUNNING and cluster.last_heartbeat < cutoff
        ]

    async def _probe_overdue_schedulers(self) -> None:
        self._kept_by_probe.intersection_update(c.name for c in self.db.active_clusters())
        overdue = [c for c in self._overdue() if c.name not in self._kept_by_probe]
        if not overdue:
            return
        for cluster in overdue:
            self.log.info("Cluster %s missed its heartbeats; asking its scheduler", cluster.name)
        answers = await asyncio.gather(*(self._scheduler_answers(c) for c in overdue))
        # The awaits above let the gateway read pending requests: check again.
        still_overdue = {c.name for c in self._overdue()}
        for cluster, answered in zip(overdue, answers, strict=True):
            if cluster.name not in still_overdue:
                continue
            if answered:
                self.log.info(
                    "Cluster %s missed its heartbeats but its scheduler answers; "
                    "waiting one more heartbeat timeout",
                    cluster.name,
                )
                cluster.last_heartbeat = timestamp()
                self._kept_by_probe.add(cluster.name)
            else:
                self.log.info("Cluster %s: scheduler does not answer either", cluster.name)

    async def _scheduler_answers(self, cluster: Cluster) -> bool:
        if not cluster.api_address:
            return False
        timeout = aiohttp.ClientTimeout(total=self.heartbeat_probe_timeout)
        try:
            async with self.session.get(
                cluster.api_address + "/api/health", timeout=timeout
            ) as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False
