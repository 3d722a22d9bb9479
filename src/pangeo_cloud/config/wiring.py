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
