"""Values derived from a stage's release name and namespace.

The hub must know the in-cluster names of the dask-gateway chart's Services,
which embed the release name and namespace. Deriving them here means an
operator never writes them by hand, so they cannot drift from the stage.
This layer sits just above the chart defaults: a deployment may still override.
"""

from __future__ import annotations

from typing import Any

from pangeo_cloud.config.model import Stage

GATEWAY_CHART = "dask-gateway"


def gateway_fullname(release: str) -> str:
    """The dask-gateway chart's fullname helper: <release>-dask-gateway, or the
    release itself when it already contains the chart name."""
    return release if GATEWAY_CHART in release else f"{release}-{GATEWAY_CHART}"


def stage_wiring(stage: Stage) -> dict[str, Any]:
    """The values layer wiring the hub to this stage's gateway."""
    traefik = f"traefik-{gateway_fullname(stage.release)}"
    return {
        "jupyterhub": {
            "hub": {"services": {"dask-gateway": {"url": f"http://{traefik}"}}},
            "singleuser": {
                "extraEnv": {
                    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{traefik}.{stage.namespace}:80"
                }
            },
        }
    }
