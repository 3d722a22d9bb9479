"""A stand-in for github.com, speaking GitHub's documented OAuth and REST protocol on loopback.

Tests cannot reach GitHub, so this serves the part of it that JupyterHub's
``GitHubOAuthenticator`` uses, on ``127.0.0.1`` and a free port. Point the
authenticator at it with ``GitHubOAuthenticator.github_url = standin.url``;
OAuthenticator then uses ``<url>/login/oauth/...`` for OAuth and
``<url>/api/v3`` for the REST API, as for a GitHub Enterprise Server.

Served (see docs.github.com, "Authorizing OAuth apps" and the REST reference):

- ``GET /login/oauth/authorize``: the browser step. There is no consent page:
  the user chosen by the test logs in and is redirected to ``redirect_uri``
  with ``code`` and ``state``. The user is the ``login`` query parameter if
  given, else :attr:`GitHubStandIn.next_user` (set it before following the
  hub's redirect). An unknown user gets 404.
- ``POST /login/oauth/access_token``: exchanges ``code`` (single use) for
  ``{"access_token", "token_type": "bearer", "scope"}`` (JSON when asked for
  with ``Accept: application/json``, as OAuthenticator does; form-encoded otherwise).
- ``GET /api/v3/user``: ``login``, ``id``, ``name``, ``email`` (401 without a valid token).
- ``GET /api/v3/user/emails``.
- ``GET /api/v3/user/teams``: the user's teams, paginated with ``per_page`` /
  ``page`` and a ``Link`` header (``rel="next"``, ``rel="last"``);
  :attr:`GitHubStandIn.max_per_page` caps the page size so tests exercise paging.
- ``GET /api/v3/orgs/{org}/teams/{team}/members/{user}`` and
  ``GET /api/v3/orgs/{org}/members/{user}``: 204 if a member, 404 if not.

Users, organizations and team memberships are plain data that tests change
at any time (thread-safe); every request is recorded in :attr:`GitHubStandIn.requests`.

Usage::

    with GitHubStandIn() as gh:
        gh.add_user("alice", teams=["pangeo-data:users"])
        ...
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlparse, urlunparse

from tornado import httpserver, netutil, web

__all__ = ["GitHubStandIn", "GitHubUser"]


@dataclass
class GitHubUser:
    login: str
    id: int
    name: str
    email: str | None
    # org login -> team slugs the user belongs to (an org with no teams: plain member)
    orgs: dict[str, set[str]] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "login": self.login,
            "id": self.id,
            "node_id": f"U_{self.id}",
            "type": "User",
            "site_admin": False,
            "name": self.name,
            "email": self.email,
        }


class GitHubStandIn:
    """The state of the fake GitHub and its HTTP server (see the module docstring)."""

    def __init__(
        self,
        client_id: str = "pangeo-test-client",
        client_secret: str = "pangeo-test-secret",
        *,
        max_per_page: int = 100,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.max_per_page = max_per_page
        self.next_user: str | None = None
        self.requests: list[tuple[str, str]] = []
        self._users: dict[str, GitHubUser] = {}
        self._team_ids: dict[tuple[str, str], int] = {}
        self._codes: dict[str, tuple[str, str]] = {}  # code -> (login, scope)
        self._tokens: dict[str, tuple[str, str]] = {}  # token -> (login, scope)
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: httpserver.HTTPServer | None = None
        self.port: int | None = None

    # ---- state -------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the GitHub stand-in is not running")
        return f"http://127.0.0.1:{self.port}"

    def add_user(
        self,
        login: str,
        *,
        name: str | None = None,
        email: str | None = "",
        orgs: list[str] | tuple[str, ...] = (),
        teams: list[str] | tuple[str, ...] = (),
    ) -> GitHubUser:
        """Create (or replace) a user; ``teams`` are ``org:team-slug`` entries."""
        with self._lock:
            user = GitHubUser(
                login=login,
                id=next(self._ids),
                name=name or login.title(),
                email=f"{login}@example.org" if email == "" else email,
            )
            self._users[login.lower()] = user
        for org in orgs:
            self.add_to_org(login, org)
        for team in teams:
            self.add_to_team(login, team)
        return user

    def user(self, login: str) -> GitHubUser:
        with self._lock:
            return self._users[login.lower()]

    def add_to_org(self, login: str, org: str) -> None:
        with self._lock:
            self.user(login).orgs.setdefault(org, set())

    def remove_from_org(self, login: str, org: str) -> None:
        with self._lock:
            self.user(login).orgs.pop(org, None)

    def add_to_team(self, login: str, org_team: str) -> None:
        """Team membership implies organization membership, as on GitHub."""
        org, team = org_team.split(":", 1)
        with self._lock:
            self.user(login).orgs.setdefault(org, set()).add(team)
            self._team_ids.setdefault((org, team), next(self._ids))

    def remove_from_team(self, login: str, org_team: str) -> None:
        org, team = org_team.split(":", 1)
        with self._lock:
            self.user(login).orgs.get(org, set()).discard(team)

    def is_org_member(self, login: str, org: str) -> bool:
        with self._lock:
            user = self._users.get(login.lower())
            return bool(user) and org.lower() in {o.lower() for o in user.orgs}

    def is_team_member(self, login: str, org: str, team: str) -> bool:
        with self._lock:
            user = self._users.get(login.lower())
            if not user:
                return False
            for o, teams in user.orgs.items():
                if o.lower() == org.lower() and team.lower() in {t.lower() for t in teams}:
                    return True
            return False

    def teams_of(self, login: str) -> list[dict[str, Any]]:
        """``GET /user/teams`` items for a user (a subset of GitHub's team object)."""
        with self._lock:
            user = self.user(login)
            out = []
            for org in sorted(user.orgs):
                for team in sorted(user.orgs[org]):
                    team_id = self._team_ids[(org, team)]
                    out.append(
                        {
                            "id": team_id,
                            "name": team.replace("-", " ").title(),
                            "slug": team,
                            "privacy": "closed",
                            "permission": "pull",
                            "url": f"{self.url}/api/v3/teams/{team_id}",
                            "organization": {"login": org, "id": abs(hash(org)) % 10**6},
                        }
                    )
            return out

    # ---- OAuth bookkeeping -------------------------------------------------
    def _issue_code(self, login: str, scope: str) -> str:
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = (login, scope)
        return code

    def _redeem_code(self, code: str) -> tuple[str, str] | None:
        with self._lock:
            return self._codes.pop(code, None)

    def _issue_token(self, login: str, scope: str) -> str:
        token = "gho_" + secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = (login, scope)
        return token

    def token_owner(self, token: str) -> tuple[str, str] | None:
        with self._lock:
            return self._tokens.get(token)

    def revoke_tokens(self, login: str | None = None) -> None:
        """Invalidate issued tokens (all, or one user's)."""
        with self._lock:
            for token, (owner, _) in list(self._tokens.items()):
                if login is None or owner.lower() == login.lower():
                    del self._tokens[token]

    # ---- server ------------------------------------------------------------
    def _app(self) -> web.Application:
        state = self
        return web.Application(
            [
                (r"/login/oauth/authorize", _Authorize, {"gh": state}),
                (r"/login/oauth/access_token", _AccessToken, {"gh": state}),
                (r"/api/v3/user", _User, {"gh": state}),
                (r"/api/v3/user/emails", _Emails, {"gh": state}),
                (r"/api/v3/user/teams", _Teams, {"gh": state}),
                (r"/api/v3/orgs/([^/]+)/teams/([^/]+)/members/([^/]+)", _TeamMember, {"gh": state}),
                (r"/api/v3/orgs/([^/]+)/members/([^/]+)", _OrgMember, {"gh": state}),
                (r"/.*", _NotFound, {"gh": state}),
            ],
            # 404 is an ordinary answer here ("not a member"): keep test logs quiet.
            log_function=lambda handler: None,
        )

    def start(self) -> GitHubStandIn:
        """Serve on 127.0.0.1 in a background thread (its own event loop)."""
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop

            async def serve() -> None:
                self._server = httpserver.HTTPServer(self._app())
                self._server.add_sockets(sockets)

            loop.run_until_complete(serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._server.close_all_connections())
            loop.close()

        self._thread = threading.Thread(target=run, name="github-standin", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        def shutdown() -> None:
            if self._server is not None:
                self._server.stop()
            loop.stop()

        loop.call_soon_threadsafe(shutdown)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(web.RequestHandler):
    def initialize(self, gh: GitHubStandIn) -> None:
        self.gh = gh

    def prepare(self) -> None:
        with self.gh._lock:
            self.gh.requests.append((self.request.method, self.request.uri))

    def check_xsrf_cookie(self) -> None:  # an API, not a browser form
        pass

    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(data))

    def not_found(self) -> None:
        self.send_json(
            {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, 404
        )

    def authenticated_login(self) -> str | None:
        """The user of the request's token (``token X`` or ``Bearer X``), or send 401."""
        header = self.request.headers.get("Authorization", "")
        parts = header.split(None, 1)
        owner = None
        if len(parts) == 2 and parts[0].lower() in ("token", "bearer"):
            owner = self.gh.token_owner(parts[1].strip())
        if owner is None:
            self.send_json({"message": "Bad credentials"}, 401)
            return None
        return owner[0]


class _NotFound(_Handler):
    def get(self) -> None:
        self.not_found()

    post = get


class _Authorize(_Handler):
    def get(self) -> None:
        if self.get_argument("client_id", "") != self.gh.client_id:
            self.send_json({"message": "unknown client_id"}, 404)
            return
        login = self.get_argument("login", None) or self.gh.next_user
        if not login or login.lower() not in self.gh._users:
            self.set_status(404)
            self.finish(f"no such GitHub user on the stand-in: {login!r}")
            return
        login = self.gh.user(login).login
        redirect_uri = self.get_argument("redirect_uri")
        code = self.gh._issue_code(login, self.get_argument("scope", ""))
        parts = urlparse(redirect_uri)
        query = parse_qsl(parts.query) + [("code", code)]
        state = self.get_argument("state", None)
        if state is not None:
            query.append(("state", state))
        self.redirect(urlunparse(parts._replace(query=urlencode(query))))


class _AccessToken(_Handler):
    def post(self) -> None:
        client_id = self.get_argument("client_id", None)
        client_secret = self.get_argument("client_secret", None)
        auth = self.request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            import base64

            client_id, _, client_secret = (
                base64.b64decode(auth.split(None, 1)[1]).decode().partition(":")
            )
        if client_id != self.gh.client_id or client_secret != self.gh.client_secret:
            self.reply({"error": "incorrect_client_credentials"})
            return
        found = self.gh._redeem_code(self.get_argument("code", ""))
        if found is None:
            self.reply({"error": "bad_verification_code"})
            return
        login, scope = found
        token = self.gh._issue_token(login, scope)
        self.reply({"access_token": token, "token_type": "bearer", "scope": scope})

    def reply(self, data: dict[str, str]) -> None:
        # GitHub answers errors with 200 and an "error" field, JSON if asked for.
        if "json" in self.request.headers.get("Accept", ""):
            self.send_json(data)
        else:
            self.set_header("Content-Type", "application/x-www-form-urlencoded")
            self.finish(urlencode(data))


class _User(_Handler):
    def get(self) -> None:
        login = self.authenticated_login()
        if login is not None:
            self.send_json(self.gh.user(login).public())


class _Emails(_Handler):
    def get(self) -> None:
        login = self.authenticated_login()
        if login is not None:
            email = self.gh.user(login).email
            items = [{"email": email, "primary": True, "verified": True}] if email else []
            self.send_json(items)


class _Teams(_Handler):
    def get(self) -> None:
        login = self.authenticated_login()
        if login is None:
            return
        teams = self.gh.teams_of(login)
        per_page = min(int(self.get_argument("per_page", "30")), self.gh.max_per_page)
        per_page = max(per_page, 1)
        page = max(int(self.get_argument("page", "1")), 1)
        last = max((len(teams) + per_page - 1) // per_page, 1)
        base = f"{self.request.protocol}://{self.request.host}{self.request.path}"

        def link(p: int) -> str:
            return f"{base}?{urlencode({'per_page': per_page, 'page': p})}"

        links = []
        if page < last:
            links.append(f'<{link(page + 1)}>; rel="next"')
            links.append(f'<{link(last)}>; rel="last"')
        if page > 1:
            links.append(f'<{link(1)}>; rel="first"')
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if links:
            self.set_header("Link", ", ".join(links))
        self.send_json(teams[(page - 1) * per_page : page * per_page])


class _TeamMember(_Handler):
    def get(self, org: str, team: str, username: str) -> None:
        if self.authenticated_login() is None:
            return
        if self.gh.is_team_member(username, org, team):
            self.set_status(204)
            self.finish()
        else:
            self.not_found()


class _OrgMember(_Handler):
    def get(self, org: str, username: str) -> None:
        if self.authenticated_login() is None:
            return
        if self.gh.is_org_member(username, org):
            self.set_status(204)
            self.finish()
        else:
            self.not_found()
