"""dask-gateway-server for `pangeo-cloud up`: a hub-managed service, local backend.

JupyterHub starts ``python -m pangeo_cloud.local.gateway RUNTIME_FILE`` as the
``dask-gateway`` service, passing ``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_SERVICE_NAME``, which the gateway's
``JupyterHubAuthenticator`` reads. The policy (options handler, limits, idle
timeout, the service access scope, and through ``PangeoLocalBackend`` the
per-user limits and clusters stopped with their owner's server) is
:func:`pangeo_cloud.gateway.config.configure`
with ``backend="local"``: the same function the chart's generated extraConfig
calls in the cluster. Only addresses are added here.

Addresses: the gateway's proxy serves HTTP under ``/services/dask-gateway`` (the
hub's proxy forwards ``<hub>/services/dask-gateway/`` to it, as
``proxy-public`` forwards to traefik in the cluster) and the scheduler
protocol (TLS, by SNI) on the same loopback port, which notebooks know as
``DASK_GATEWAY__PROXY_ADDRESS``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from traitlets.config import Config

from pangeo_cloud.gateway.config import configure
from pangeo_cloud.local.runinfo import RunInfo

PREFIX = "/services/dask-gateway"


def configure_local_gateway(c: Any, rt: RunInfo) -> None:
    """Configure ``c`` (a traitlets Config) for the run ``rt``."""
    data = rt.data_dir
    ports = rt.ports
    settings = rt.values["jupyterhub"]["custom"]["pangeo"]
    # Schedulers and workers reach the scratch store as notebooks do: the
    # options handler adds PANGEO_SCRATCH, the endpoint, the broker's AWS
    # config and a broker-only token of the cluster's owner. No store key here.
    c.LocalClusterConfig.environment = {"PANGEO_LOCAL_RUN": rt.run_id}
    configure(c, settings, backend="local")
    c.DaskGateway.address = f"127.0.0.1:{ports['gateway_api']}"
    c.Proxy.address = f"127.0.0.1:{ports['gateway']}"
    c.Proxy.tcp_address = f"127.0.0.1:{ports['gateway']}"
    c.Proxy.prefix = PREFIX
    c.UnsafeLocalBackend.clusters_directory = str(data / "gateway" / "clusters")
    c.DaskGateway.log_level = rt.log_level


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m pangeo_cloud.local.gateway RUNTIME_FILE")
    rt = RunInfo.read(argv[0])
    data = rt.data_dir
    (data / "gateway" / "clusters").mkdir(parents=True, exist_ok=True)
    # Own log file: the hub's log stays readable.
    log = os.open(data / "logs" / "gateway.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)

    # Imported once the output goes to the gateway's log: whatever the import prints lands there.
    from dask_gateway_server.app import DaskGateway

    c = Config()
    try:
        configure_local_gateway(c, rt)
    except ValueError as exc:  # GatewaySettingsError names the key
        print(f"FATAL: pangeo-cloud gateway configuration: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
    # No config file: everything is in `c`.
    DaskGateway.launch_instance(argv=["--DaskGateway.config_file=/nonexistent"], config=c)


if __name__ == "__main__":
    main()
