"""The per-user arithmetic of the gateway backend, pangeo_cloud.gateway.usage (the rest of
pangeo_cloud.gateway.backend runs in integration)."""

from __future__ import annotations

from pangeo_cloud.gateway.policy import GIB, UserLimits
from pangeo_cloud.gateway.usage import (
    FREE_HINT,
    Usage,
    cluster_usage,
    limits_of,
    refusal,
    workers_allowed,
)

# A cluster config as stored: 1-core 2 GiB scheduler, 2-core 4 GiB workers.
CONFIG = {
    "scheduler_cores": 1,
    "scheduler_memory": 2 * GIB,
    "worker_cores": 2,
    "worker_memory": 4 * GIB,
    "user_max_clusters": 3,
    "user_max_cores": 20.0,
    "user_max_memory": 40 * GIB,
    "user_max_workers": 8,
}
LIMITS = UserLimits(clusters=3, cores=20.0, memory_gib=40.0, workers=8)


def test_usage_counts_the_scheduler_and_the_workers():
    assert cluster_usage(CONFIG, 0) == Usage(clusters=1, cores=1, memory=2 * GIB, workers=0)
    assert cluster_usage(CONFIG, 3) == Usage(clusters=1, cores=7, memory=14 * GIB, workers=3)
    assert cluster_usage(CONFIG, 3) + cluster_usage(CONFIG, 0) == Usage(2, 8, 16 * GIB, 3)
    assert Usage(2, 8, 16 * GIB, 3).describe() == "2 cluster(s), 8 cores, 16 GiB, 3 worker(s)"
    assert Usage(9, 200, 1024 * GIB + GIB // 2, 40).describe() == (
        "9 cluster(s), 200 cores, 1024.5 GiB, 40 worker(s)"
    )


def test_limits_travel_with_the_cluster_config():
    assert limits_of(CONFIG) == LIMITS
    assert limits_of({}).unlimited


def test_workers_allowed_is_the_tightest_total():
    # Alone: cores (20 - 1) // 2 = 9, memory (40 - 2) // 4 = 9, workers 8.
    assert workers_allowed(LIMITS, Usage(), CONFIG) == 8
    # Next to a cluster using 13 cores: (20 - 13 - 1) // 2 = 3.
    assert workers_allowed(LIMITS, Usage(1, 13, 10 * GIB, 2), CONFIG) == 3
    # Memory the tightest: (40 - 30 - 2) // 4 = 2.
    assert workers_allowed(LIMITS, Usage(1, 3, 30 * GIB, 1), CONFIG) == 2
    # Never negative, and None without limits.
    assert workers_allowed(LIMITS, Usage(2, 30, 50 * GIB, 9), CONFIG) == 0
    assert workers_allowed(UserLimits(None, None, None, None), Usage(5, 99, 0, 50), CONFIG) is None


def test_refusal_names_the_limit_the_usage_and_the_way_out():
    new = cluster_usage(CONFIG, 0)
    assert refusal(LIMITS, Usage(2, 5, 10 * GIB, 1), new) is None
    message = refusal(LIMITS, Usage(3, 5, 10 * GIB, 1), new)
    assert message == (
        "Cannot start another Dask cluster: it would exceed your limit of 3 running clusters "
        "(summed over all your clusters); in use: 3 cluster(s), 5 cores, 10 GiB, 1 worker(s); "
        "a new cluster's "
        f"scheduler needs 1 core(s) and 2 GiB. {FREE_HINT}"
    )
    assert "Gateway().list_clusters()" in message and "cluster.close()" in message
    assert "your limit of 20 cores" in refusal(LIMITS, Usage(1, 19.5, 0, 9), new)
    assert "your limit of 40 GiB of memory" in refusal(LIMITS, Usage(1, 1, 39 * GIB, 0), new)
