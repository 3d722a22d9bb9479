"""Fixtures of the production-hub tier: the loopback control plane (as in tests/integration/k8s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pangeo_cloud.testing.k8s import ControlPlane, session_plane


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[ControlPlane]:
    with session_plane() as plane:
        yield plane
