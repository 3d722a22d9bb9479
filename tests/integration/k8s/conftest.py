"""Fixtures for tests that need a real Kubernetes API (the loopback control plane).

``k8s_cluster`` starts the plane of :mod:`pangeo_cloud.testing.k8s` once per
session, or reuses one already running (for example after ``make k8s-up``),
and stops it at the end only if it started it. It skips, naming the script to
run, when the binaries have not been built.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from pangeo_cloud.testing.k8s import ControlPlane, session_plane


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[ControlPlane]:
    with session_plane() as plane:
        yield plane


@pytest.fixture
def namespace(k8s_cluster: ControlPlane) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", name)
    yield name
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
