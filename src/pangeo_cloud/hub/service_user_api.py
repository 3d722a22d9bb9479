"""The hub's endpoint that creates throw-away users for a trusted service.

JupyterHub 5 can only let a token create a user through ``admin:users`` on that
user's name, and a filter cannot name a user that does not exist yet; unfiltered,
``admin:users`` reads, renames and deletes every user, and a service holding it
with ``tokens`` can become anyone. So the ``health-check`` service gets none of
that: it asks this endpoint, which needs the custom scope
:data:`~pangeo_cloud.hub.service_users.CREATE_SCOPE` and

- creates only a *new* user whose name starts with
  :data:`~pangeo_cloud.hub.service_users.USER_PREFIX` (an existing name is
  refused with 409: the check never takes over a user it did not make);
- puts it in the group :data:`~pangeo_cloud.hub.service_users.GROUP`, the only
  users the service's other (group-filtered) scopes reach;
- writes the service's ticket into its ``auth_state`` (the hub knows the
  service's token), so the pre-spawn GitHub re-check lets it through.

``POST /hub/api/pangeo/service-users`` with an optional JSON body
``{"name": "health-check-...", "lifetime": seconds}`` answers 201 with
``{"name", "group", "service", "ticket"}`` (``ticket`` false where the hub keeps
no ``auth_state``). Registered by :func:`configure_service_users`.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import has_scope
from tornado import web

from pangeo_cloud.hub.service_users import (
    CREATE_PATH,
    CREATE_SCOPE,
    GROUP,
    USER_PREFIX,
    make_ticket,
)

# Lower-case letters, digits and single hyphens after the prefix, as the
# random names the hub picks; at most 48 characters in all.
NAME_PATTERN = re.compile(re.escape(USER_PREFIX) + r"[a-z0-9]+(-[a-z0-9]+)*")
MAX_NAME = 48


def _refuse(status: int, message: str) -> web.HTTPError:
    return web.HTTPError(status, message)


class ServiceUserHandler(APIHandler):
    """``POST``: create one throw-away user of the requesting service."""

    issuers: dict[str, str] = {}

    def initialize(self, issuers: dict[str, str]) -> None:
        self.issuers = issuers

    def _requesting_service(self) -> Any:
        requester = self.current_user
        if requester is None:
            raise _refuse(403, "Missing or invalid credentials.")
        if not has_scope(CREATE_SCOPE, self.parsed_scopes, db=self.db):
            raise _refuse(403, f"Action is not authorized: requires [{CREATE_SCOPE}]")
        if not isinstance(requester, orm.Service):  # a user, even an admin, has no ticket key
            raise _refuse(403, "Only a service may create throw-away users")
        return requester

    def _name(self, body: dict[str, Any]) -> str:
        name = body.get("name")
        if name is None:
            return USER_PREFIX + secrets.token_hex(4)
        if not isinstance(name, str) or len(name) > MAX_NAME or not NAME_PATTERN.fullmatch(name):
            raise _refuse(
                400,
                f"name {name!r} is not allowed: throw-away users are named "
                f"{USER_PREFIX}<lower-case letters, digits, single hyphens>, "
                f"at most {MAX_NAME} characters",
            )
        return name

    async def post(self) -> None:
        service = self._requesting_service()
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise _refuse(400, "body must be a JSON object")
        name = self._name(body)
        if self.find_user(name) is not None:
            raise _refuse(
                409,
                f"user {name} already exists: the hub creates throw-away users only "
                "under new names (choose another name)",
            )
        lifetime = body.get("lifetime", 3600)
        if not isinstance(lifetime, int) or lifetime <= 0:
            raise _refuse(400, f"lifetime must be a positive number of seconds, got {lifetime!r}")
        user = self.user_from_username(name)
        group = orm.Group.find(self.db, GROUP)
        if group is None:
            group = orm.Group(name=GROUP)
            self.db.add(group)
        group.users.append(user.orm_user)
        self.db.commit()
        ticket = False
        token = self.issuers.get(service.name)
        if token and self.authenticator.enable_auth_state:
            await user.save_auth_state(make_ticket(token, service.name, name, lifetime))
            ticket = True
        self.log.info("Service %s created throw-away user %s in %s", service.name, name, GROUP)
        self.set_status(201)
        self.write(
            json.dumps({"name": name, "group": GROUP, "service": service.name, "ticket": ticket})
        )


def configure_service_users(c: Any, issuers: dict[str, str]) -> None:
    """Define the custom scope and mount the endpoint on the traitlets config ``c``."""
    custom = dict(c.JupyterHub.get("custom_scopes", {}) or {})
    custom[CREATE_SCOPE] = {
        "description": (
            f"Create new throw-away users named {USER_PREFIX}* in the group {GROUP} "
            "(pangeo-cloud health)."
        )
    }
    c.JupyterHub.custom_scopes = custom
    handlers = list(c.JupyterHub.get("extra_handlers", []) or [])
    handlers.append((rf"/api/{CREATE_PATH}", ServiceUserHandler, {"issuers": dict(issuers)}))
    c.JupyterHub.extra_handlers = handlers
