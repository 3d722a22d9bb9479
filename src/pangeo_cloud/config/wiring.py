"""Values derived from a stage's release name and namespace, and from its proxy setup.

The hub must know the in-cluster names of the dask-gateway chart's Services,
which embed the release name and namespace. Deriving them here means an
operator never writes them by hand, so they cannot drift from the stage.
This layer sits just above the chart defaults: a deployment may still override.

Users' servers reach the gateway's API through the hub's proxy
(``DASK_GATEWAY__ADDRESS``), in-cluster and over plain HTTP. Which Service
leads to configurable-http-proxy depends on z2jh's HTTPS mode: with automatic
HTTPS (``proxy.https`` enabled, type ``letsencrypt``, hosts set) the
``proxy-public`` Service selects the autohttps (traefik) pod, which redirects
HTTP to HTTPS and serves a certificate for the public host only
(``sniStrict``), so ``http://proxy-public`` cannot work; z2jh then creates
``proxy-http`` (port 8000) in front of the proxy pod, and that is the address.
In every other mode (``offload`` behind a cloud load balancer, no HTTPS)
``proxy-public`` port 80 leads to the proxy pod itself.
"""

from __future__ import annotations

from typing import Any

from pangeo_cloud.config.model import Stage
from pangeo_cloud.config.names import gateway_fullname

GATEWAY_PREFIX = "/services/dask-gateway"


def _mapping(value: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def auto_https(values: dict[str, Any]) -> bool:
    """Whether z2jh puts its autohttps (traefik) pod behind ``proxy-public``.

    The same condition as the z2jh 4.4.0 templates (proxy/service.yaml):
    enabled, type ``letsencrypt`` (z2jh's default type), and hosts set.
    """
    https = _mapping(values, "jupyterhub", "proxy", "https")
    return bool(
        https.get("enabled") is True
        and https.get("type", "letsencrypt") == "letsencrypt"
        and https.get("hosts")
    )


def hub_proxy_address(values: dict[str, Any]) -> str:
    """The in-cluster HTTP address of configurable-http-proxy (module docstring)."""
    return "http://proxy-http:8000" if auto_https(values) else "http://proxy-public"


def traefik_namespace_arg(stage: Stage) -> str:
    """The gateway traefik's flag that restricts it to the stage's namespace."""
    return f"--providers.kubernetescrd.namespaces={stage.namespace}"


def stage_wiring(stage: Stage, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values layer wiring the hub to this stage's gateway.

    ``values`` are the stage's values without this layer (the chart defaults,
    values files and secrets merged), read for the proxy's HTTPS mode.
    """
    traefik = f"traefik-{gateway_fullname(stage.release)}"
    address = f"{hub_proxy_address(values or {})}{GATEWAY_PREFIX}"
    return {
        # traefik watches only this namespace: its RBAC (templates/dask-gateway-rbac.yaml)
        # is a Role there, not upstream's ClusterRole over every Secret.
        "dask-gateway": {"traefik": {"additionalArguments": [traefik_namespace_arg(stage)]}},
        "jupyterhub": {
            "hub": {"services": {"dask-gateway": {"url": f"http://{traefik}"}}},
            "singleuser": {
                "extraEnv": {
                    "DASK_GATEWAY__ADDRESS": address,
                    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{traefik}.{stage.namespace}:80",
                }
            },
        },
    }


def env_mapping(extra_env: Any) -> dict[str, Any]:
    """`extraEnv` in either form z2jh accepts, as NAME -> value (or EnvVar source).

    The mapping form is ``NAME: value`` or ``KEY: {name, value|valueFrom}`` (the
    ``name`` field wins); the list form is ``[{name, value|valueFrom}, ...]``.
    Entries of another shape are left out (the schema check reports them).
    """
    items: list[tuple[Any, Any]]
    if isinstance(extra_env, dict):
        items = list(extra_env.items())
    elif isinstance(extra_env, list):
        items = [(None, item) for item in extra_env]
    else:
        return {}
    env: dict[str, Any] = {}
    for key, value in items:
        if isinstance(value, dict):
            name = value.get("name", key)
            if not isinstance(name, str):
                continue
            env[name] = value.get("value", value)
        elif key is not None:
            env[str(key)] = value
    return env
