"""The promises about Dask Gateway: culling, wiring, limits, and where its pods run.

Idle clusters stop after 60 minutes; the hub, notebooks and the gateway find
each other at the generated in-cluster addresses; per-user limits can be
reached; schedulers and workers are pinned to declared node pools they
tolerate and fit in.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pangeo_cloud.config.promisecheck import (
    PromiseChecker,
    is_number,
    kind_of,
    matches,
    tolerated,
)
from pangeo_cloud.config.units import parse_quantity
from pangeo_cloud.config.wiring import auto_https, env_mapping
from pangeo_cloud.config.yamlpos import dig

GATEWAY_IDLE_TIMEOUT = 3600
GATEWAY_PREFIX = "/services/dask-gateway"
GATEWAY_SCOPE = "access:services!service=dask-gateway"
GATEWAY_ENV = (
    "DASK_GATEWAY__ADDRESS",
    "DASK_GATEWAY__PROXY_ADDRESS",
    "DASK_GATEWAY__PUBLIC_ADDRESS",
    "DASK_GATEWAY__AUTH__TYPE",
)


class DaskPromises(PromiseChecker):
    """The Dask Gateway checks (registered in :data:`pangeo_cloud.config.promises.CHECKS`)."""

    # --- dask gateway --------------------------------------------------------
    def gateway(self) -> None:
        g = ("jupyterhub", "custom", "pangeo", "gateway")
        if self.get(*g, "idleTimeout") != GATEWAY_IDLE_TIMEOUT:
            self.fail(
                (*g, "idleTimeout"),
                f"users are promised {GATEWAY_IDLE_TIMEOUT} s "
                f"(60 minutes), got {self.get(*g, 'idleTimeout')!r}",
            )
        for key in ("clusterMaxCores", "clusterMaxMemoryGiB", "clusterMaxWorkers"):
            value = self.get(*g, key)
            if not is_number(value) or value <= 0:
                self.fail(
                    (*g, key), f"every cluster must be capped: set a positive number, got {value!r}"
                )
        for key, cap in (
            ("workerCores", "clusterMaxCores"),
            ("workerMemoryGiB", "clusterMaxMemoryGiB"),
        ):
            b = self.get(*g, key)
            if not isinstance(b, dict):
                self.fail((*g, key), f"must be a mapping of min, default, max; got {kind_of(b)}")
                continue
            lo, default, hi = b.get("min"), b.get("default"), b.get("max")
            if not all(is_number(x) for x in (lo, default, hi)) or not lo <= default <= hi:
                self.fail(
                    (*g, key), f"needs numbers min <= default <= max, got {lo}, {default}, {hi}"
                )
            elif is_number(self.get(*g, cap)) and hi > self.get(*g, cap):
                self.fail((*g, key, "max"), f"a single worker ({hi}) would exceed {cap}")
        self._gateway_wiring()

    def _gateway_wiring(self) -> None:
        dg = ("dask-gateway", "gateway")
        if self.get(*dg, "prefix") != GATEWAY_PREFIX:
            self.fail((*dg, "prefix"), f"must be {GATEWAY_PREFIX} (the hub service's path)")
        if self.get(*dg, "auth", "type") != "jupyterhub":
            self.fail((*dg, "auth", "type"), "must be 'jupyterhub': users log in with hub tokens")
        if self.get(*dg, "auth", "jupyterhub", "jupyterhubServiceName") != "dask-gateway":
            self.fail(
                (*dg, "auth", "jupyterhub", "jupyterhubServiceName"),
                "must be 'dask-gateway', else any hub token can use the gateway",
            )
        if not isinstance(self.get("jupyterhub", "hub", "services", "dask-gateway"), dict):
            self.fail(("jupyterhub", "hub", "services"), "must register the dask-gateway service")
        roles = self.mapping("jupyterhub", "hub", "loadRoles")
        if not any(
            isinstance(r, dict)
            and isinstance(r.get("scopes"), list)
            and GATEWAY_SCOPE in r["scopes"]
            for r in roles.values()
        ):
            self.fail(("jupyterhub", "hub", "loadRoles"), f"no role grants users {GATEWAY_SCOPE}")
        token_scopes = self.get("jupyterhub", "hub", "config", "Spawner", "server_token_scopes")
        if not isinstance(token_scopes, list) or GATEWAY_SCOPE not in token_scopes:
            self.fail(
                ("jupyterhub", "hub", "config", "Spawner", "server_token_scopes"),
                f"user servers' tokens must carry {GATEWAY_SCOPE}, else GatewayCluster() "
                "is refused",
            )
        self._gateway_env()
        self._gateway_address()
        self._gateway_egress()

    def _gateway_address(self) -> None:
        """Behind z2jh's autohttps, proxy-public is traefik: servers must use proxy-http."""
        path = ("jupyterhub", "singleuser", "extraEnv", "DASK_GATEWAY__ADDRESS")
        address = env_mapping(self.get(*path[:-1])).get(path[-1])
        if not isinstance(address, str) or not auto_https(self.v):
            return
        host = urlsplit(address).hostname
        if host and host.split(".")[0] == "proxy-public":
            self.fail(
                path,
                "with proxy.https type letsencrypt, proxy-public is traefik, which "
                "redirects http to https: use http://proxy-http:8000/services/dask-gateway "
                "(or leave it unset: pangeo-cloud derives it)",
            )

    def _gateway_env(self) -> None:
        path = ("jupyterhub", "singleuser", "extraEnv")
        raw = self.get(*path)
        env = env_mapping(raw)
        missing = [name for name in GATEWAY_ENV if not env.get(name)]
        if missing:
            hint = (
                " (extraEnv is a list here: Helm replaces the chart's and the generated "
                "entries with it instead of merging; use the mapping form NAME: value)"
                if isinstance(raw, list)
                else ""
            )
            self.fail(
                path,
                f"{', '.join(missing)} must be set so GatewayCluster() works without "
                f"arguments{hint}",
            )

    def _gateway_egress(self) -> None:
        path = ("jupyterhub", "singleuser", "networkPolicy", "egress")
        egress = self.sequence(*path)
        if egress is None:
            return
        peers = [
            peer
            for rule in egress
            if isinstance(rule, dict) and isinstance(rule.get("to"), list)
            for peer in rule["to"]
        ]
        if not any(
            dig(peer, ("podSelector", "matchLabels", "app.kubernetes.io/component")) == "traefik"
            for peer in peers
        ):
            self.fail(
                path,
                "user pods need an egress rule to the gateway's traefik pods "
                "(app.kubernetes.io/component: traefik)",
            )

    def gateway_user_limits(self) -> None:
        """Every user's clusters are capped in total, and one full-size cluster fits."""
        g = ("jupyterhub", "custom", "pangeo", "gateway")
        pairs = {
            "userMaxClusters": None,
            "userMaxCores": "clusterMaxCores",
            "userMaxMemoryGiB": "clusterMaxMemoryGiB",
            "userMaxWorkers": "clusterMaxWorkers",
        }
        for key in pairs:
            value = self.get(*g, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                self.fail(
                    (*g, key),
                    f"every user's clusters must be capped in total: set a positive number, "
                    f"got {value!r}",
                )
        # The defaults, then each group with the defaults it does not replace.
        groups = self.mapping(*g, "groupLimits")
        entries = [(g, {})] + [
            ((*g, "groupLimits", name), entry if isinstance(entry, dict) else {})
            for name, entry in groups.items()
        ]
        for path, entry in entries:
            for key, cluster_key in pairs.items():
                if cluster_key is None:
                    continue
                total = entry.get(key, self.get(*g, key))
                cap = entry.get(cluster_key, self.get(*g, cluster_key))
                numbers = all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in (total, cap)
                )
                if not numbers or total >= cap:
                    continue
                # Name the key this entry sets (a group raising a cap, or lowering a total).
                culprit = key if key in entry or cluster_key not in entry else cluster_key
                where = (*path, culprit) if culprit in entry else (*g, culprit)
                self.fail(
                    where,
                    f"{key} {total:g} is below {cluster_key} {cap:g}: no cluster could reach "
                    "its cap",
                )

    def dask_placement(self) -> None:
        """Schedulers and workers are pinned to declared pools they tolerate and fit in."""
        if not self.d.node_pools or self.d.cloud == "local":
            return  # e.g. local: no nodes declared
        g = ("jupyterhub", "custom", "pangeo", "gateway")
        backend = ("dask-gateway", "gateway", "backend")
        worker_cpu = self.mapping(*g, "workerCores").get("max")
        worker_mem = self.mapping(*g, "workerMemoryGiB").get("max")
        worker_mem = worker_mem * 2**30 if is_number(worker_mem) else None
        scheduler_cpu = self.get(*backend, "scheduler", "cores", "limit")
        try:
            scheduler_mem = parse_quantity(self.get(*backend, "scheduler", "memory", "limit"))
        except (ValueError, TypeError):
            scheduler_mem = None
        for role, cpu, mem in (
            ("worker", worker_cpu, worker_mem),
            ("scheduler", scheduler_cpu, scheduler_mem),
        ):
            self._dask_pool(role, cpu, mem)

    def _dask_pool(self, role: str, cpu: Any, mem: float | None) -> None:
        p = ("dask-gateway", "gateway", "backend", role, "extraPodConfig")
        selector = self.mapping(*p, "nodeSelector")
        where = f"{self.d.directory.name}/deployment.yaml"
        if not selector:
            self.fail((*p, "nodeSelector"), f"pin Dask {role}s to a node pool declared in {where}")
            return
        pools = [pool for pool in self.d.node_pools if matches(pool, selector)]
        if not pools:
            self.fail(
                (*p, "nodeSelector"), f"node selector {selector} matches no node pool in {where}"
            )
        tolerations = self.sequence(*p, "tolerations") or []
        for pool in pools:
            for taint in pool.taints:
                if not tolerated(taint, tolerations):
                    self.fail(
                        (*p, "tolerations"),
                        f"node pool {pool.name!r} is tainted {taint}: add a toleration for it",
                    )
            what = "the largest worker a user may ask for" if role == "worker" else "the scheduler"
            if is_number(cpu) and cpu > pool.cpu:
                self.fail(p, f"{what} ({cpu} CPU) exceeds node pool {pool.name!r} ({pool.cpu} CPU)")
            if mem is not None and mem > pool.memory:
                self.fail(
                    p,
                    f"{what} ({mem / 2**30:.1f} GiB) exceeds node pool {pool.name!r} "
                    f"({pool.memory / 2**30:.1f} GiB)",
                )
