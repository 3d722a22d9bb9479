"""The Kubernetes backend with the federation's per-user policy (see :mod:`.backend`).

Separate from :mod:`.backend` so that the local runtime never imports
``kubernetes_asyncio``; the chart's generated extraConfig selects
``PangeoKubeBackend`` through :func:`pangeo_cloud.gateway.config.configure`.
"""

from __future__ import annotations

from dask_gateway_server.backends.kubernetes.backend import KubeBackend, KubeClusterConfig
from dask_gateway_server.traitlets import Type

from pangeo_cloud.gateway.backend import PangeoBackendMixin, PangeoClusterConfigMixin


class PangeoKubeClusterConfig(PangeoClusterConfigMixin, KubeClusterConfig):
    """KubeClusterConfig plus the owner's per-user limits."""


class PangeoKubeBackend(PangeoBackendMixin, KubeBackend):
    """KubeBackend (DaskCluster objects) with the federation's per-user policy."""

    cluster_config_class = Type(
        "pangeo_cloud.gateway.kube.PangeoKubeClusterConfig",
        klass="dask_gateway_server.backends.base.ClusterConfig",
        help="The cluster config class to use",
        config=True,
    )

    def backend_worker_count(self, cluster_name: str) -> int:
        # The DaskCluster's spec.replicas, as the informer last saw it.
        obj = self.informer.get(cluster_name) or {}
        return int((obj.get("spec") or {}).get("replicas") or 0)
