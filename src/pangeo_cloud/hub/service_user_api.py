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
no ``auth_state``).

``POST /hub/api/pangeo/service-users/<name>/tokens`` (same scope) with an
optional ``{"expires_in": seconds, "note": text}`` answers 201 with
``{"token", "expires_in", "scopes"}``: a token of that user (a member of the
group only) that may reach only its own server, for at most
:data:`TOKEN_MAX_SECONDS`. JupyterHub 5.5's own ``POST /users/<name>/tokens``
cannot serve here: it matches a service's filtered ``tokens`` scope against
the wrong kind of resource, so only an unfiltered ``tokens`` (every user's
tokens) would work.

Both are registered by :func:`configure_service_users`.
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
TOKEN_MAX_SECONDS = 3600
NAME_PATTERN = re.compile(re.escape(USER_PREFIX) + r"[a-z0-9]+(-[a-z0-9]+)*")
MAX_NAME = 48


def _refuse(status: int, message: str) -> web.HTTPError:
    return web.HTTPError(status, message)


class _ServiceUserBase(APIHandler):
    """What both endpoints check: the requester is a service with the custom scope."""

    def _requesting_service(self) -> Any:
        requester = self.current_user
        if requester is None:
            raise _refuse(403, "Missing or invalid credentials.")
        if not has_scope(CREATE_SCOPE, self.parsed_scopes, db=self.db):
            raise _refuse(403, f"Action is not authorized: requires [{CREATE_SCOPE}]")
        if not isinstance(requester, orm.Service):  # a user, even an admin, has no ticket key
            raise _refuse(403, "Only a service may create throw-away users")
        return requester

    def _body(self) -> dict[str, Any]:
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise _refuse(400, "body must be a JSON object")
        return body


class ServiceUserHandler(_ServiceUserBase):
    """``POST``: create one throw-away user of the requesting service."""

    issuers: dict[str, str] = {}

    def initialize(self, issuers: dict[str, str]) -> None:
        self.issuers = issuers

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
        body = self._body()
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


class ServiceUserTokenHandler(_ServiceUserBase):
    """``POST``: a short-lived token of one throw-away user, for its own server only."""

    async def post(self, name: str) -> None:
        service = self._requesting_service()
        body = self._body()
        user = self.find_user(name)
        if user is None or GROUP not in {g.name for g in user.groups}:
            raise _refuse(404, f"no throw-away user {name} (only members of {GROUP})")
        expires_in = body.get("expires_in", TOKEN_MAX_SECONDS)
        if not isinstance(expires_in, int) or not 0 < expires_in <= TOKEN_MAX_SECONDS:
            raise _refuse(
                400, f"expires_in must be 1 to {TOKEN_MAX_SECONDS} seconds, got {expires_in!r}"
            )
        scopes = [f"access:servers!user={name}"]
        note = str(body.get("note") or f"throw-away user of service {service.name}")
        token = user.new_api_token(note=note, expires_in=expires_in, scopes=scopes)
        self.log.info("Service %s took a token of %s (%s)", service.name, name, scopes[0])
        self.set_status(201)
        self.write(json.dumps({"token": token, "expires_in": expires_in, "scopes": scopes}))


def configure_service_users(c: Any, issuers: dict[str, str]) -> None:
    """Define the custom scope and mount both endpoints on the traitlets config ``c``."""
    custom = dict(c.JupyterHub.get("custom_scopes", {}) or {})
    custom[CREATE_SCOPE] = {
        "description": (
            f"Create new throw-away users named {USER_PREFIX}* in the group {GROUP}, "
            "and take short-lived tokens of them for their own servers (pangeo-cloud health)."
        )
    }
    c.JupyterHub.custom_scopes = custom
    handlers = list(c.JupyterHub.get("extra_handlers", []) or [])
    handlers.append((rf"/api/{CREATE_PATH}", ServiceUserHandler, {"issuers": dict(issuers)}))
    handlers.append((rf"/api/{CREATE_PATH}/([^/]+)/tokens", ServiceUserTokenHandler))
    c.JupyterHub.extra_handlers = handlers
