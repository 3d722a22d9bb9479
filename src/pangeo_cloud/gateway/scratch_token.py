"""Scratch credentials for Dask workers: a broker-only token of the cluster's owner.

Workers do not run with the user's server token. When a user creates a cluster,
the gateway (a hub service whose role has the ``tokens`` scope) asks the hub
for a new token *of that user* whose only scope is
``access:services!service=scratch-credentials``; it reaches the workers and the
scheduler as ``PANGEO_SCRATCH_BROKER_TOKEN``, next to the ``AWS_CONFIG_FILE``
and broker URL of :func:`pangeo_cloud.scratch.broker_env`. The broker's client
prefers it over ``JUPYTERHUB_API_TOKEN``. So a worker can fetch the owner's
scratch credentials and nothing else: it can do nothing else with the hub, and
no other user's credentials are reachable with it. The token dies with the user
(deletion) and is refused by the hub when the user is no longer allowed in;
it expires after ``scratch.broker.workerTokenLifetime`` seconds.

Standard library only: the gateway pod runs the upstream image.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

BROKER_SCOPE = "access:services!service=scratch-credentials"
DEFAULT_WORKER_TOKEN_LIFETIME = 7 * 24 * 3600
TIMEOUT = 10.0


def hub_api_url(broker: dict[str, Any]) -> str:
    """The hub API as the gateway reaches it: hub-managed env, the setting, the `hub` Service."""
    url = os.environ.get("JUPYTERHUB_API_URL") or broker.get("hubApiUrl")
    if not url and os.environ.get("HUB_SERVICE_HOST"):
        # As the dask-gateway chart derives its own apiUrl in the cluster.
        url = "http://{HUB_SERVICE_HOST}:{HUB_SERVICE_PORT}/hub/api".format(**os.environ)
    if not url:
        raise ValueError("scratch credentials for workers: the hub API URL is unknown")
    return url.rstrip("/")


def create_worker_token(broker: dict[str, Any], username: str) -> str:
    """A new token of ``username`` carrying only the broker's access scope."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        raise ValueError("scratch credentials for workers: the gateway has no hub token")
    lifetime = int(broker.get("workerTokenLifetime") or DEFAULT_WORKER_TOKEN_LIFETIME)
    body = {
        "scopes": [BROKER_SCOPE],
        "expires_in": lifetime,
        "note": "dask-gateway workers: scratch credentials only",
    }
    name = urllib.parse.quote(username, safe="")
    request = urllib.request.Request(
        f"{hub_api_url(broker)}/users/{name}/tokens",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            return json.loads(resp.read())["token"]
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:200]
        raise ValueError(
            f"could not get scratch credentials for your workers (hub answered {exc.code}: "
            f"{detail}); please tell the hub's operators"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"could not get scratch credentials for your workers ({exc}); "
            "please tell the hub's operators"
        ) from None


def worker_scratch_env(scratch: dict[str, Any] | None, username: str) -> dict[str, str]:
    """``PANGEO_SCRATCH_BROKER_TOKEN`` for ``username``'s cluster ({} without a broker)."""
    broker = (scratch or {}).get("broker") or {}
    if not broker.get("url"):
        return {}
    return {"PANGEO_SCRATCH_BROKER_TOKEN": create_worker_token(broker, username)}
