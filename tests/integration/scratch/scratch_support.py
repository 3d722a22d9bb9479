"""Scratch-credential test helpers: the broker's API and the hub's, as clients call them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pangeo_cloud.testing.harness import UpProcess


def broker_get(up: UpProcess, token: str | None) -> tuple[int, str]:
    """(status, body or the one-line error) of GET api/credentials with ``token``."""
    url = up.runtime["values"]["jupyterhub"]["custom"]["pangeo"]["scratch"]["broker"]["url"]
    headers = {"Authorization": f"token {token}"} if token is not None else {}
    request = urllib.request.Request(url + "api/credentials", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())["error"]


def hub_api(up: UpProcess, method: str, path: str, body: dict | None = None) -> dict:
    """The hub's REST API with the token of the run's local-admin service."""
    token = up.secrets["admin_token"]
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{up.url}hub/api{path}",
        data=data,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        text = resp.read()
    return json.loads(text) if text else {}
