"""Kubernetes name rules, and the names the subcharts derive from a Helm release name.

The stage model and the support release model (which refuse names Kubernetes or
Helm would refuse, or whose derived names would be too long) and the generated
wiring (which writes them into the values) need them.
"""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_LABEL_RULE = (
    "a valid DNS label (DNS-1123): at most 63 characters, lower-case letters, digits and '-', "
    "starting and ending with a letter or digit"
)
# Helm refuses longer release names (they become parts of object names).
MAX_RELEASE = 53
GATEWAY_CHART = "dask-gateway"


def gateway_fullname(release: str) -> str:
    """The dask-gateway chart's fullname helper: <release>-dask-gateway, or the
    release itself when it already contains the chart name."""
    return release if GATEWAY_CHART in release else f"{release}-{GATEWAY_CHART}"
