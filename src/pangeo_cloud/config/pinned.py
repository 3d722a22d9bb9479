"""The generated "protections" values layer: settings that are code, not configuration.

Placed after the secrets files (:func:`pangeo_cloud.config.layering.values_layers`
wraps :func:`pinned_values` in a layer): the role of each throw-away-user service
(``health-check``) is exactly :data:`pangeo_cloud.hub.service_users.ISSUER_SCOPES`
whatever a secrets file says (the secrets file keeps only the token), and the
Dask image allowlist defaults to the notebook image's repository.
:mod:`pangeo_cloud.config.protections` checks that no layer undoes them.
"""

from __future__ import annotations

from typing import Any

from pangeo_cloud.config.yamlpos import dig
from pangeo_cloud.hub.service_users import DEFAULT_ISSUERS, ISSUER_SCOPES

HUB = ("jupyterhub", "hub")
ALLOWLIST = ("jupyterhub", "custom", "pangeo", "gateway", "imageAllowlist")
LAYER_NAME = "generated: protections (pinned service roles, default Dask image allowlist)"


def issuers(values: dict[str, Any]) -> list[str]:
    """The services that may issue throw-away users (``custom.pangeo.auth``)."""
    names = dig(values, ("jupyterhub", "custom", "pangeo", "auth", "serviceUserIssuers"))
    return [
        n for n in (names if isinstance(names, list) else DEFAULT_ISSUERS) if isinstance(n, str)
    ]


def default_allowlist(values: dict[str, Any]) -> list[str]:
    """The notebook image's repository, any tag or digest."""
    name = dig(values, ("jupyterhub", "singleuser", "image", "name"))
    if not isinstance(name, str) or not name:
        return []
    return [f"{name}:*", f"{name}@sha256:*"]


def _mapping_or_unset(values: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether the layer may add keys under ``path`` (a wrong shape stays for the schema check)."""
    value = dig(values, path)
    return value is None or isinstance(value, dict)


def pinned_values(values: dict[str, Any]) -> dict[str, Any]:
    """The layer's data for the merged ``values`` of the layers below it."""
    services = dig(values, (*HUB, "services"))
    roles = {
        name: {"services": [name], "scopes": list(ISSUER_SCOPES)}
        for name in issuers(values)
        if isinstance(services, dict) and name in services
    }
    data: dict[str, Any] = {}
    if roles and _mapping_or_unset(values, (*HUB, "loadRoles")):
        data = {"jupyterhub": {"hub": {"loadRoles": roles}}}
    parents = [ALLOWLIST[:n] for n in range(1, len(ALLOWLIST))]
    if dig(values, ALLOWLIST) is None and all(_mapping_or_unset(values, p) for p in parents):
        gateway = {"imageAllowlist": default_allowlist(values)}
        data.setdefault("jupyterhub", {})["custom"] = {"pangeo": {"gateway": gateway}}
    return data
