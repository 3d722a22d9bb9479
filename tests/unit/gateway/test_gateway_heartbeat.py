"""The heartbeat workaround's assumptions about upstream dask-gateway-server.

`pangeo_cloud.gateway.heartbeat` hooks two private methods of the database-backed
backends and relies on the Kubernetes backend having no heartbeat timeout at all.
If an upgrade changes either, these tests say so (the behaviour itself is tested
end to end in tests/integration/gateway/test_gateway_stalls.py).
"""

from __future__ import annotations

import inspect

from dask_gateway_server.backends.db_base import DBBackendBase
from dask_gateway_server.backends.kubernetes import KubeBackend
from dask_gateway_server.backends.local import UnsafeLocalBackend
from traitlets.config import Config

from pangeo_cloud.gateway.backend import PangeoLocalBackend
from pangeo_cloud.gateway.heartbeat import HeartbeatProbeMixin


def test_hooks_override_upstream_methods():
    for name in ("_check_timeouts", "on_cluster_heartbeat"):
        upstream = getattr(DBBackendBase, name)
        assert inspect.iscoroutinefunction(upstream), name
        assert getattr(PangeoLocalBackend, name) is getattr(HeartbeatProbeMixin, name)
        assert getattr(PangeoLocalBackend, name) is not upstream
    # The upstream check that fails clusters compares this timeout with last_heartbeat.
    source = inspect.getsource(DBBackendBase._check_timeouts)
    assert "last_heartbeat" in source and "cluster_heartbeat_timeout" in source


def test_kubernetes_backend_has_no_heartbeat_timeout():
    assert not issubclass(KubeBackend, DBBackendBase)
    assert not hasattr(KubeBackend, "_check_timeouts")
    assert "cluster_heartbeat_timeout" not in KubeBackend.class_traits()


def test_probe_timeout_defaults_to_heartbeat_timeout():
    c = Config()
    c.UnsafeLocalBackend.cluster_heartbeat_period = 2
    backend = PangeoLocalBackend(config=c)
    assert isinstance(backend, UnsafeLocalBackend)
    assert backend.cluster_heartbeat_timeout == 4
    assert backend.heartbeat_probe_timeout == 4
    c.HeartbeatProbeMixin.heartbeat_probe_timeout = 30
    assert PangeoLocalBackend(config=c).heartbeat_probe_timeout == 30
