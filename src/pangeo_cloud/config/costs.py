"""The price table of the hub: what each profile's node, and a Dask worker's, costs.

deployment.yaml declares node pools (with their ``nodeType``) and ``prices``
(hourly price per node type). This module maps each hardware profile to the
node pool its node selector picks (``kubespawner_override.node_selector``, else
``singleuser.nodeSelector``; among several matches an untainted pool, as user
servers tolerate no taint) and Dask workers to the pool of
``dask-gateway.gateway.backend.worker.extraPodConfig.nodeSelector``. The result
is a generated values layer, ``jupyterhub.custom.pangeo.costs``, read by the
hub (relative cost of each size on the spawn page, the usage page) and by
``pangeo-cloud usage``::

    costs:
      currency: USD
      profiles:
        small: {nodePool: user, nodeType: r5.4xlarge, pricePerHour: 1.008,
                nodeCpu: 15.8, nodeMemory: 126701535232}
      daskWorkers: {...the same keys...}

A node type without a price keeps ``pricePerHour: null``: rendering and
deploying still work, the usage report refuses with one line naming it.
"""

from __future__ import annotations

from typing import Any

from pangeo_cloud.config.model import Deployment, NodePool
from pangeo_cloud.config.yamlpos import dig

LAYER_NAME = "generated: price table (deployment.yaml prices), usage labels and page"


def _matches(pool: NodePool, selector: dict[str, Any]) -> bool:
    return all(pool.labels.get(str(k)) == str(v) for k, v in selector.items())


def pool_for(deployment: Deployment, selector: Any, prefer_untainted: bool) -> NodePool | None:
    if not isinstance(selector, dict):
        selector = {}
    pools = [p for p in deployment.node_pools if _matches(p, selector)]
    if prefer_untainted:
        pools.sort(key=lambda p: bool(p.taints))  # stable: declaration order otherwise
    return pools[0] if pools else None


def entry(deployment: Deployment, pool: NodePool) -> dict[str, Any]:
    prices = deployment.prices.per_hour if deployment.prices else {}
    return {
        "nodePool": pool.name,
        "nodeType": pool.node_type,
        "pricePerHour": prices.get(pool.node_type) if pool.node_type else None,
        "nodeCpu": pool.cpu,
        "nodeMemory": pool.memory,
    }


def costs_for(deployment: Deployment, values: dict[str, Any]) -> dict[str, Any] | None:
    """``custom.pangeo.costs`` for merged `values`; None without a price table."""
    if deployment.prices is None or not deployment.node_pools:
        return None
    default_selector = dig(values, ("jupyterhub", "singleuser", "nodeSelector")) or {}
    profiles = {}
    for profile in dig(values, ("jupyterhub", "singleuser", "profileList")) or []:
        if not isinstance(profile, dict) or not profile.get("slug"):
            continue  # the promises check reports it
        override = profile.get("kubespawner_override") or {}
        selector = override.get("node_selector") if isinstance(override, dict) else None
        pool = pool_for(deployment, selector or default_selector, prefer_untainted=True)
        if pool is not None:
            profiles[str(profile["slug"])] = entry(deployment, pool)
    out: dict[str, Any] = {"currency": deployment.prices.currency, "profiles": profiles}
    worker = ("dask-gateway", "gateway", "backend", "worker", "extraPodConfig", "nodeSelector")
    selector = dig(values, worker) or {}
    pool = pool_for(deployment, selector, prefer_untainted=not selector)
    if pool is not None:
        out["daskWorkers"] = entry(deployment, pool)
    return out


USAGE_PORT = 10101
# Run by the hub in its pod: our modules come from the hub-code ConfigMap.
USAGE_LAUNCHER = (
    "import os, runpy; d = os.environ['PANGEO_CLOUD_HUB_CODE']; ns = {}; "
    "exec(open(d + '/pangeo_cloud.bundle.py').read(), ns); "
    "ns['install'](ns['read_directory'](d)); "
    "runpy.run_module('pangeo_cloud.hub.usage_page', run_name='__main__')"
)


def usage_page_values(values: dict[str, Any]) -> dict[str, Any]:
    """``jupyterhub.hub`` additions that serve the usage page in the hub pod.

    A hub-managed service (JupyterHub starts and restarts it), reached by the
    proxy through an extra port of the hub Service, which the hub's network
    policy opens to the pods allowed to reach the hub (the proxy).
    """
    code_dir = dig(values, ("jupyterhub", "hub", "extraEnv", "PANGEO_CLOUD_HUB_CODE"))
    return {
        "services": {
            "usage": {
                "display": True,
                "oauth_no_confirm": True,
                "url": f"http://hub:{USAGE_PORT}",
                "command": ["python3", "-c", USAGE_LAUNCHER],
                "environment": {
                    "PANGEO_CLOUD_HUB_CODE": str(code_dir or "/usr/local/etc/jupyterhub/pangeo"),
                    # z2jh's copy of the values: custom.pangeo.usage and .costs.
                    "PANGEO_USAGE_VALUES": "/usr/local/etc/jupyterhub/secret/values.yaml",
                },
            }
        },
        "service": {
            "extraPorts": [{"name": "usage", "port": USAGE_PORT, "targetPort": USAGE_PORT}]
        },
        "networkPolicy": {
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {
                                "matchLabels": {"hub.jupyter.org/network-access-hub": "true"}
                            }
                        }
                    ],
                    "ports": [{"port": USAGE_PORT, "protocol": "TCP"}],
                }
            ]
        },
    }


def costs_values(deployment: Deployment, stage: str, values: dict[str, Any]) -> dict[str, Any]:
    """The layer's data: the price table, the usage labels, and the usage page when a
    Prometheus is set (:func:`pangeo_cloud.config.layering.values_layers` wraps it).

    ``extraPorts`` and ``networkPolicy.ingress`` are lists: a values file that
    sets them is replaced by this layer (Helm lists do not merge), so they are
    appended to what the lower layers set.
    """
    pangeo: dict[str, Any] = {"usage": {"deployment": deployment.name, "stage": stage}}
    costs = costs_for(deployment, values)
    if costs is not None:
        pangeo["costs"] = costs
    jupyterhub: dict[str, Any] = {"custom": {"pangeo": pangeo}}
    if dig(values, ("jupyterhub", "custom", "pangeo", "usage", "prometheusUrl")):
        hub = usage_page_values(values)
        for path in (("service", "extraPorts"), ("networkPolicy", "ingress")):
            earlier = dig(values, ("jupyterhub", "hub", *path)) or []
            hub[path[0]][path[1]] = [*earlier, *hub[path[0]][path[1]]]
        jupyterhub["hub"] = hub
    return {"jupyterhub": jupyterhub}
