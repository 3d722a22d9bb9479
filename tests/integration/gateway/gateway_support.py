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
