"""What a user's Dask clusters use, and what their per-user limits still allow.

Pure arithmetic over cluster configs (no gateway state): the usage of a
cluster with some workers, the owner's limits stored in its config, how many
workers fit next to the user's other clusters, and the one-line refusal of a
new cluster over a limit. :mod:`pangeo_cloud.gateway.backend` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pangeo_cloud.gateway.policy import GIB, UserLimits

FREE_HINT = (
    "Stop clusters you no longer need: Gateway().list_clusters() lists them, "
    "Gateway().stop_cluster(name) stops one (cluster.close() stops one this session created)."
)


def gib(nbytes: float) -> str:
    """Bytes as GiB for people: 2 GiB -> "2", 1.5 GiB -> "1.5", 1 TiB -> "1024"."""
    return f"{round(nbytes / GIB, 2):g}"


@dataclass(frozen=True)
class Usage:
    """What some clusters use: count, cores, memory (bytes), workers."""

    clusters: int = 0
    cores: float = 0.0
    memory: int = 0
    workers: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.clusters + other.clusters,
            self.cores + other.cores,
            self.memory + other.memory,
            self.workers + other.workers,
        )

    def describe(self) -> str:
        return (
            f"{self.clusters} cluster(s), {self.cores:g} cores, "
            f"{gib(self.memory)} GiB, {self.workers} worker(s)"
        )


def cluster_usage(config: Mapping, workers: int) -> Usage:
    """One cluster with `workers` workers: its scheduler plus the workers."""
    return Usage(
        clusters=1,
        cores=float(config.get("scheduler_cores", 1)) + workers * float(config["worker_cores"]),
        memory=int(config.get("scheduler_memory", 0)) + workers * int(config["worker_memory"]),
        workers=workers,
    )


def limits_of(config: Mapping) -> UserLimits:
    """The owner's per-user limits stored in a cluster's config."""
    memory = config.get("user_max_memory")
    return UserLimits(
        clusters=config.get("user_max_clusters"),
        cores=config.get("user_max_cores"),
        memory_gib=None if memory is None else memory / GIB,
        workers=config.get("user_max_workers"),
    )


def workers_allowed(limits: UserLimits, others: Usage, config: Mapping) -> int | None:
    """Most workers this cluster may have next to `others` (None: no user limit)."""
    bounds = []
    scheduler = cluster_usage(config, 0)
    if limits.workers is not None:
        bounds.append(limits.workers - others.workers)
    if limits.cores is not None:
        spare = limits.cores - others.cores - scheduler.cores
        bounds.append(math.floor(spare / float(config["worker_cores"])))
    if limits.memory_gib is not None:
        spare = limits.memory_gib * GIB - others.memory - scheduler.memory
        bounds.append(math.floor(spare / int(config["worker_memory"])))
    return max(0, min(bounds)) if bounds else None


def limit_text(limits: UserLimits) -> str:
    parts = []
    if limits.workers is not None:
        parts.append(f"{limits.workers} workers")
    if limits.cores is not None:
        parts.append(f"{limits.cores:g} cores")
    if limits.memory_gib is not None:
        parts.append(f"{limits.memory_gib:g} GiB")
    return ", ".join(parts)


def refusal(limits: UserLimits, in_use: Usage, new: Usage) -> str | None:
    """Why a new cluster using `new` may not start next to `in_use`, or None."""
    total = in_use + new
    checks = [
        (limits.clusters, total.clusters, f"{limits.clusters} running clusters"),
        (limits.cores, total.cores, f"{limits.cores:g} cores"),
        (
            None if limits.memory_gib is None else limits.memory_gib * GIB,
            total.memory,
            f"{limits.memory_gib:g} GiB of memory",
        ),
    ]
    for limit, value, text in checks:
        if limit is not None and value > limit:
            return (
                f"Cannot start another Dask cluster: it would exceed your limit of {text} "
                f"(summed over all your clusters); in use: {in_use.describe()}; a new "
                f"cluster's scheduler needs "
                f"{new.cores:g} core(s) and {gib(new.memory)} GiB. {FREE_HINT}"
            )
    return None
