"""Apply the federation's gateway policy to a dask-gateway-server ``Config``.

In Kubernetes the chart's generated ``gateway.extraConfig`` calls
``configure(c, settings, backend="kubernetes")`` after the chart's own config
(authenticator, image and resources from values); it replaces the chart's
KubeBackend with our subclass (:mod:`pangeo_cloud.gateway.kube`). Locally,
`pangeo-cloud up` and the tests call ``configure(c, settings, backend="local")``
and add only addresses and the hub's API URL/token.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from pangeo_cloud.gateway.options import BACKENDS, make_options
from pangeo_cloud.gateway.policy import Policy

# The gateway's name as a JupyterHub service (hub.services.dask-gateway); users'
# tokens need access:services!service=<this> to reach the gateway.
SERVICE_NAME = "dask-gateway"

AUTHENTICATOR = "dask_gateway_server.auth.JupyterHubAuthenticator"
# Upstream's backends plus per-user limits, clusters stopped with their
# server and the admin API (pangeo_cloud.gateway.backend).
BACKEND_CLASS = {
    "kubernetes": "pangeo_cloud.gateway.kube.PangeoKubeBackend",
    "local": "pangeo_cloud.gateway.backend.PangeoLocalBackend",
}
CONFIG_SECTION = {"kubernetes": "KubeClusterConfig", "local": "LocalClusterConfig"}


# In Kubernetes every worker pod listens on these fixed ports (one worker per
# pod), so that the Dask NetworkPolicy (templates/dask-networkpolicy.yaml) can
# admit scheduler<->worker traffic without opening the dashboards (8787).
WORKER_PORT = 8789
NANNY_PORT = 8790


def dask_commands(backend: str) -> tuple[list[str], list[str]]:
    """scheduler_cmd / worker_cmd: distributed >= 2026.8 installs only `dask`.

    Locally the gateway may run from a virtualenv that is not on PATH; then the
    `dask` next to its interpreter is used, and ports stay random (several
    workers share one host).
    """
    dask = "dask"
    if backend == "local" and shutil.which("dask") is None:
        beside = os.path.join(os.path.dirname(sys.executable), "dask")
        if os.access(beside, os.X_OK):
            dask = beside
    worker = [dask, "worker"]
    if backend == "kubernetes":
        worker += ["--worker-port", str(WORKER_PORT), "--nanny-port", str(NANNY_PORT)]
    return [dask, "scheduler"], worker


def configure(c: Any, settings: dict | None, backend: str) -> Policy:
    """Configure `c` (a traitlets Config) from `jupyterhub.custom.pangeo` settings.

    Returns the checked :class:`Policy`. Raises GatewaySettingsError (a
    ValueError naming the key path) for unusable settings, so that the gateway
    refuses to start rather than run without its limits.

    Operator environment variables (``c.ClusterConfig.environment`` or the
    backend's ``c.<Kube|Local>ClusterConfig.environment``, e.g. the chart's
    ``gateway.backend.environment``) must be set *before* this call: the
    handler's per-cluster ``environment`` replaces the configured one, so it
    starts from what is configured here, then the user's mapping, then the
    user's scratch variables. Callers on the local backend add only addresses
    and the hub's API URL/token (or run the gateway as a hub-managed service,
    which passes them in the environment).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    policy = Policy.from_settings(settings)

    cluster = c[CONFIG_SECTION[backend]]
    # The handler's `environment` replaces the configured one: carry it over.
    base_environment = {}
    for section in (c.ClusterConfig, cluster):
        for name, value in (section.get("environment") or {}).items():
            base_environment[str(name)] = str(value)
    c.Backend.cluster_options = make_options(policy, backend, base_environment)

    cluster.scheduler_cmd, cluster.worker_cmd = dask_commands(backend)
    # The deployment's idle timeout is also the class default. The cluster_max_*
    # caps are deliberately NOT set here: traitlets re-applies constructor
    # arguments that config also sets one by one in set order, so
    # cluster_max_workers could be cross-validated against the class-wide
    # cluster_max_cores instead of the handler's (a per-group limit would then
    # apply only some of the time). The handler always returns all three.
    cluster.idle_timeout = float(policy.idle_timeout)

    # JupyterHub tokens are accepted only with access:services!service=dask-gateway.
    # The chart sets jupyterhub_service_name from
    # gateway.auth.jupyterhub.jupyterhubServiceName; keep an explicit choice,
    # never run without one.
    auth = c.JupyterHubAuthenticator
    if not auth.get("jupyterhub_service_name"):
        auth.jupyterhub_service_name = SERVICE_NAME
    auth.use_service_access_scopes = True

    # Replaces the chart's KubeBackend (its c.KubeBackend settings still apply:
    # ours is a subclass). The backend reads the same settings as the handler.
    c.DaskGateway.backend_class = BACKEND_CLASS[backend]
    c.PangeoBackendMixin.settings = settings or {}
    if backend == "local":
        c.DaskGateway.authenticator_class = AUTHENTICATOR
    return policy
