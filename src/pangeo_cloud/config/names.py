"""Kubernetes names the subcharts derive from a Helm release name.

Both the stage model (which refuses a release whose derived names would be too
long) and the generated wiring (which writes them into the values) need them.
"""

from __future__ import annotations

GATEWAY_CHART = "dask-gateway"


def gateway_fullname(release: str) -> str:
    """The dask-gateway chart's fullname helper: <release>-dask-gateway, or the
    release itself when it already contains the chart name."""
    return release if GATEWAY_CHART in release else f"{release}-{GATEWAY_CHART}"
