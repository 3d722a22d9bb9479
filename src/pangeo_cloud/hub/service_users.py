"""Throw-away users made by a trusted admin service, and the one rule that lets them spawn.

`pangeo-cloud health` has the hub create a user, starts its server and removes
it again. Such a user never logged in with GitHub, so it has no
``auth_state``; with ``refresh_pre_spawn`` the hub refreshes every user before a
spawn, and the membership re-check (:func:`pangeo_cloud.hub.auth.recheck_membership`)
as well as OAuthenticator's own refresh refuse a user without a GitHub token
("403 auth has expired ... login again"). Production hubs could never pass
their health check.

The rule that lets them through is narrow on purpose:

- it does not depend on the user's name (any name could also be a GitHub login);
- the user carries a *ticket* in its ``auth_state``, written by the hub when
  the issuing service has it create the user (below): an HMAC, keyed with
  that service's own API token, over the service name, the user name and an
  expiry time at most :data:`MAX_LIFETIME` ahead. Only a holder of the token of a
  service named in ``custom.pangeo.auth.serviceUserIssuers`` can make one, and
  it is bound to one user name;
- a real user's ``auth_state`` is written by the authenticator at every login,
  so it never carries a ticket: a GitHub account that happens to share the name
  replaces the ticket when it logs in, and then faces the normal checks.

The issuing service holds no ``admin:users``: the hub creates such users itself
(:mod:`pangeo_cloud.hub.service_user_api`, ``POST /hub/api/pangeo/service-users``,
custom scope :data:`CREATE_SCOPE`), only with names under :data:`USER_PREFIX`
that do not exist yet, puts them in the group :data:`GROUP` and writes the
ticket; the service's other scopes (:data:`ISSUER_SCOPES`) are filtered to that
group, so its token cannot act for, or mint a token of, any other user.

This module is shared by the hub (sign and verify) and the CLI side (the
constants; tests sign tickets too), so it uses only the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

TICKET_KEY = "pangeo_service_user"
MAX_LIFETIME = 2 * 3600  # seconds; a health check takes minutes
DEFAULT_ISSUERS = ("health-check",)
# Throw-away users: this name prefix, this group (no GitHub team group is named
# without "org:", so no real user is ever in it), created only by the hub.
USER_PREFIX = "health-check-"
GROUP = "health-check-users"
CREATE_SCOPE = "custom:pangeo-cloud:create:service-users"
CREATE_PATH = "pangeo/service-users"  # under /hub/api/
# Everything the health check needs, and nothing more: create users and take
# their tokens (through the hub's own endpoints, CREATE_SCOPE), then read,
# start, stop and delete them, only members of GROUP. `pangeo-cloud validate`
# and the chart tests compare the rendered `health-check` role with this list.
ISSUER_SCOPES = (
    CREATE_SCOPE,
    f"list:users!group={GROUP}",
    f"read:users!group={GROUP}",
    f"servers!group={GROUP}",
    f"delete:users!group={GROUP}",
)


def _signature(token: str, service: str, username: str, expires: int) -> str:
    message = "\0".join(("pangeo-service-user", service, username, str(expires)))
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()


def make_ticket(
    token: str, service: str, username: str, lifetime: int = 3600, now: float | None = None
) -> dict[str, Any]:
    """The ``auth_state`` a service writes for a throw-away user it created."""
    lifetime = max(1, min(int(lifetime), MAX_LIFETIME))
    expires = int(now if now is not None else time.time()) + lifetime
    return {
        TICKET_KEY: {
            "service": service,
            "expires": expires,
            "signature": _signature(token, service, username, expires),
        }
    }


def ticket_issuer(
    auth_state: Any, username: str, issuers: Mapping[str, str], now: float | None = None
) -> str | None:
    """The service whose valid ticket ``auth_state`` carries for ``username``, else None.

    ``issuers`` maps each allowed service name to its API token. A ticket is
    valid if it names an allowed service, has not expired, does not reach
    further than :data:`MAX_LIFETIME` into the future, and its signature matches.
    """
    if not isinstance(auth_state, Mapping):
        return None
    ticket = auth_state.get(TICKET_KEY)
    if not isinstance(ticket, Mapping):
        return None
    service, expires, signature = (ticket.get(k) for k in ("service", "expires", "signature"))
    token = issuers.get(service) if isinstance(service, str) else None
    if not token or not isinstance(expires, int) or not isinstance(signature, str):
        return None
    now = now if now is not None else time.time()
    if not now < expires <= now + MAX_LIFETIME:
        return None
    expected = _signature(token, service, username, expires)
    return service if hmac.compare_digest(expected, signature) else None


def issuer_tokens(services: Any, names: Any) -> dict[str, str]:
    """``{name: api_token}`` of the configured services named in ``names``."""
    wanted = set(names or ())
    tokens = {}
    for service in services or []:
        if not isinstance(service, Mapping):
            continue
        name, token = service.get("name"), service.get("api_token")
        if name in wanted and isinstance(token, str) and token:
            tokens[name] = token
    return tokens
