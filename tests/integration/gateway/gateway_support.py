"""Helpers shared by the gateway integration tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import contextlib
import time

import pytest

WAIT = 60  # seconds for any cluster or worker to change state


@contextlib.contextmanager
def cluster_of(gateway, **options):
    """A new cluster, shut down at the end of the block."""
    cluster = gateway.new_cluster(**options)
    try:
        yield cluster
    finally:
        cluster.shutdown()


def wait_for_status(gateway, name: str, status: str, timeout: float = WAIT):
    """Poll the gateway until cluster `name` has `status`; return its report."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = gateway.get_cluster(name)
        if report.status.name == status:
            return report
        time.sleep(0.25)
    pytest.fail(f"cluster {name} is {report.status.name}, not {status}, after {timeout} s")


def wait_until(predicate, what: str, timeout: float = WAIT, interval: float = 0.25):
    """Poll `predicate` until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout} s")


def scheduler_size() -> tuple[float, float]:
    """Cores and GiB one local scheduler counts against the limits.

    dask-gateway-server's LocalClusterConfig defaults (the harness sets neither).
    """
    from dask_gateway_server.backends.local import LocalClusterConfig

    config = LocalClusterConfig()
    return config.scheduler_cores, config.scheduler_memory / 2**30


def worker_size(settings: dict, cores: int | None = None) -> tuple[float, float]:
    """Cores and GiB of one worker with the deployment's defaults (or `cores`)."""
    gateway = settings["gateway"]
    default_cores = gateway["workerCores"]["default"]
    return cores or default_cores, gateway["workerMemoryGiB"]["default"]
