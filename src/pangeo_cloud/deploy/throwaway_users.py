"""The health client's side of the hub's throw-away-user endpoints.

The ``health-check`` service holds no ``admin:users`` and no ``tokens`` scope
(its role: :data:`pangeo_cloud.hub.service_users.ISSUER_SCOPES`). It creates its
test user, and takes that user's token, through the hub's own endpoints
(:mod:`pangeo_cloud.hub.service_user_api`); everything else (start, read, stop,
delete) is the normal REST API, filtered to the group
:data:`~pangeo_cloud.hub.service_users.GROUP`. The hub writes the ticket
itself, so the client sends no ``PATCH``.

``hub`` is any object with ``request(method, path, body=None, ok=(...)) ->
(status, json)`` relative to ``<hub>/hub/api/`` that raises on other statuses
(``pangeo_cloud.deploy.health.Api``).
"""

from __future__ import annotations

from typing import Any, Protocol

from pangeo_cloud.hub.service_users import CREATE_PATH


class HubApi(Protocol):
    def request(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ...
    ) -> tuple[int, Any]: ...


def create_throwaway_user(hub: HubApi, name: str | None = None, lifetime: int = 3600) -> dict:
    """Create a new user (a random ``health-check-...`` name unless ``name``).

    Returns ``{"name", "group", "service", "ticket"}``. The hub refuses an
    existing name (409: the check never takes over a user it did not make) and
    a name outside ``health-check-<lower-case letters, digits, hyphens>`` (400),
    each with one line that the caller's error carries.
    """
    body: dict[str, Any] = {"lifetime": int(lifetime)}
    if name is not None:
        body["name"] = name
    _, reply = hub.request("POST", CREATE_PATH, body, ok=(201,))
    return reply


def throwaway_user_token(
    hub: HubApi, name: str, expires_in: int = 3600, note: str = "pangeo-cloud health"
) -> str:
    """A token of the throw-away user ``name`` for its own server (at most 1 h)."""
    body = {"expires_in": int(expires_in), "note": note}
    _, reply = hub.request("POST", f"{CREATE_PATH}/{name}/tokens", body, ok=(201,))
    return reply["token"]
