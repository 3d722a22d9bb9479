"""Fixtures for tests that need a real Kubernetes API (the loopback control plane).

``k8s_cluster`` starts the plane of :mod:`pangeo_cloud.testing.k8s` once per
session, or reuses one already running (for example after ``make k8s-up``),
and stops it at the end only if it started it. It skips, naming the script to
run, when the binaries have not been built.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator

import pytest

from pangeo_cloud.testing.k8s import (
    INSTALL_SCRIPT,
    ControlPlane,
    ControlPlaneError,
    missing_binaries,
    tools_dir,
)


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[ControlPlane]:
    missing = missing_binaries()
    if missing:
        pytest.skip(
            f"loopback Kubernetes binaries missing in {tools_dir()}: {', '.join(missing)}; "
            f"build them with {INSTALL_SCRIPT} (or `make k8s-tools`)"
        )
    if shutil.which("openssl") is None:
        pytest.skip(f"openssl not on PATH (needed for the certificates); run {INSTALL_SCRIPT}")
    plane = ControlPlane()
    try:
        plane.start()
    except ControlPlaneError as exc:
        # The binaries are there, so a plane that does not come up is a failure.
        pytest.fail(f"loopback control plane did not start: {exc}", pytrace=False)
    try:
        yield plane
    finally:
        if plane.started_here:
            plane.stop()


@pytest.fixture
def namespace(k8s_cluster: ControlPlane) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    k8s_cluster.kubectl("create", "namespace", name)
    yield name
    k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
