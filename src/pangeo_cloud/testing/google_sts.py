"""A stand-in for Google's Security Token Service token exchange, on loopback.

Tests cannot reach ``https://sts.googleapis.com``, so this serves its
``POST /v1/token`` for the one flow the broker uses, downscoping with a
Credential Access Boundary (cloud.google.com/iam/docs/downscoping-short-lived-credentials),
as google-auth's ``google.oauth2.sts.Client`` speaks it:

- form fields (``application/x-www-form-urlencoded``): ``grant_type`` =
  ``urn:ietf:params:oauth:grant-type:token-exchange``, ``subject_token`` (the
  caller's own access token), ``subject_token_type`` and optional
  ``requested_token_type`` = ``urn:ietf:params:oauth:token-type:access_token``,
  ``options`` = the URL-encoded JSON ``{"accessBoundary": {"accessBoundaryRules": [...]}}``
  (1 to 10 rules, each with ``availableResource``, ``availablePermissions``
  of ``inRole:`` roles and an optional ``availabilityCondition.expression``);
- success: 200 ``{"access_token", "issued_token_type", "token_type": "Bearer", "expires_in"}``;
- errors: 400 ``{"error": "invalid_request" | "unsupported_grant_type" |
  "invalid_grant", "error_description": "..."}`` (RFC 6749 section 5.2, which
  google-auth turns into ``OAuthError``).

Only subject tokens registered with :meth:`GoogleSTSStandIn.add_source_token`
are accepted (the real STS accepts only live Google tokens). Every exchange is
recorded in :attr:`GoogleSTSStandIn.exchanges` with the boundary it asked for,
and every token issued can be looked up with :meth:`GoogleSTSStandIn.token_info`
(``None`` once expired), so tests assert what was requested and what a user holds.
:attr:`GoogleSTSStandIn.expires_in` sets the lifetime of new tokens (short in
refresh tests).

Usage::

    with GoogleSTSStandIn() as sts:
        sts.add_source_token("broker-token")
        provider = GCSProvider("bucket", static_creds, sts_endpoint=sts.token_url)
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

__all__ = ["Exchange", "GoogleSTSStandIn", "IssuedToken", "JSONHandler", "serve_on_loopback"]

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
_MAX_RULES = 10  # Google's documented limit per boundary


class _Refused(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class Exchange:
    """One token-exchange request as received (form fields decoded, options parsed)."""

    form: dict[str, str]
    boundary: dict[str, Any] | None
    status: int


@dataclass
class IssuedToken:
    """A token the stand-in issued: from which subject token, with which boundary."""

    token: str
    subject_token: str
    boundary: dict[str, Any]
    expires_at: float  # time.monotonic()
    issued_at: float = field(default_factory=time.monotonic)


class GoogleSTSStandIn:
    """The stand-in's state and its HTTP server (see the module docstring)."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.exchanges: list[Exchange] = []
        self._issued: dict[str, IssuedToken] = {}
        self._sources: set[str] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        """The token-exchange endpoint (the real one is https://sts.googleapis.com/v1/token)."""
        return f"{self.url}/v1/token"

    def add_source_token(self, token: str) -> None:
        """Accept ``token`` as a subject token (a live token of the broker's identity)."""
        with self._lock:
            self._sources.add(token)

    def token_info(self, token: str) -> IssuedToken | None:
        """The record of an issued token, or None if unknown or expired."""
        with self._lock:
            issued = self._issued.get(token)
        if issued is None or issued.expires_at <= time.monotonic():
            return None
        return issued

    @property
    def issued(self) -> list[IssuedToken]:
        with self._lock:
            return list(self._issued.values())

    # --- protocol ---------------------------------------------------------------------

    def exchange(self, content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one POST /v1/token: (status, JSON body). Records the request."""
        form: dict[str, str] = {}
        boundary = None
        try:
            form = _form(content_type, body)
            boundary = self._check(form)
            reply = self._issue(form["subject_token"], boundary)
            status = 200
        except _Refused as exc:
            status = exc.status
            reply = {"error": exc.error, "error_description": exc.description}
        with self._lock:
            self.exchanges.append(Exchange(form, boundary, status))
        return status, reply

    def _check(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != TOKEN_EXCHANGE:
            raise _Refused(
                "unsupported_grant_type", f"Unsupported grant_type: {form.get('grant_type')!r}"
            )
        if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise _Refused("invalid_request", "subject_token_type must be an access_token")
        if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise _Refused("invalid_request", "requested_token_type must be an access_token")
        with self._lock:
            known = form.get("subject_token") in self._sources
        if not known:
            raise _Refused("invalid_grant", "The subject token is invalid or expired")
        return _boundary(form.get("options"))

    def _issue(self, subject_token: str, boundary: dict[str, Any]) -> dict[str, Any]:
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        lifetime = self.expires_in
        with self._lock:
            self._issued[token] = IssuedToken(
                token, subject_token, boundary, time.monotonic() + lifetime
            )
        return {
            "access_token": token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": lifetime,
        }

    # --- server -----------------------------------------------------------------------

    def start(self) -> GoogleSTSStandIn:
        """Serve on 127.0.0.1 and a free port in a background thread."""
        standin = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:  # http.server's naming
                if self.path.split("?")[0] != "/v1/token":
                    self.send_json(404, {"error": "not_found", "error_description": self.path})
                    return
                status, reply = standin.exchange(
                    self.headers.get("Content-Type", ""), self.read_body()
                )
                self.send_json(status, reply)

        self._server, self._thread = serve_on_loopback(Handler, "google-sts-standin")
        return self

    def stop(self) -> None:
        stop_server(self._server, self._thread)
        self._server = None

    def __enter__(self) -> GoogleSTSStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class JSONHandler(BaseHTTPRequestHandler):
    """Request handler base for the loopback stand-ins: JSON replies, quiet logs."""

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, reply: Any) -> None:
        self.send_bytes(status, json.dumps(reply).encode(), "application/json; charset=UTF-8")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stand-ins record requests themselves


def serve_on_loopback(
    handler: type[BaseHTTPRequestHandler], name: str
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``handler`` on 127.0.0.1 and a free port in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    return server, thread


def stop_server(server: ThreadingHTTPServer | None, thread: threading.Thread | None) -> None:
    """Stop what :func:`serve_on_loopback` started (no-op if not started)."""
    if server is None:
        return
    server.shutdown()
    server.server_close()
    if thread is not None:
        thread.join(10)


def _form(content_type: str, body: bytes) -> dict[str, str]:
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise _Refused("invalid_request", f"Unsupported Content-Type: {content_type!r}")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError):
        raise _Refused("invalid_request", "The request body is not a valid form") from None


def _boundary(options: str | None) -> dict[str, Any]:
    """Parse and check ``options`` (URL-encoded JSON, as google-auth sends it)."""
    if not options:
        raise _Refused("invalid_request", "options with an accessBoundary is required")
    try:
        parsed = json.loads(unquote(options))
    except ValueError:
        raise _Refused("invalid_request", "options is not valid JSON") from None
    rules = (
        (parsed.get("accessBoundary") or {}).get("accessBoundaryRules")
        if isinstance(parsed, dict)
        else None
    )
    if not isinstance(rules, list) or not 1 <= len(rules) <= _MAX_RULES:
        raise _Refused(
            "invalid_request", f"accessBoundary needs 1 to {_MAX_RULES} accessBoundaryRules"
        )
    for i, rule in enumerate(rules):
        _check_rule(i, rule)
    return parsed


def _check_rule(i: int, rule: Any) -> None:
    where = f"accessBoundaryRules[{i}]"
    if not isinstance(rule, dict):
        raise _Refused("invalid_request", f"{where} is not an object")
    resource = rule.get("availableResource")
    if not isinstance(resource, str) or not resource.startswith(
        "//storage.googleapis.com/projects/_/buckets/"
    ):
        raise _Refused("invalid_request", f"{where}.availableResource must name a bucket")
    perms = rule.get("availablePermissions")
    if (
        not isinstance(perms, list)
        or not perms
        or not all(isinstance(p, str) and p.startswith("inRole:") for p in perms)
    ):
        raise _Refused("invalid_request", f"{where}.availablePermissions must be inRole: roles")
    condition = rule.get("availabilityCondition")
    if condition is not None and not isinstance((condition or {}).get("expression"), str):
        raise _Refused("invalid_request", f"{where}.availabilityCondition needs an expression")
