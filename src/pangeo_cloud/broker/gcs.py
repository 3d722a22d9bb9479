"""The GCS provider of the broker: downscoped Google tokens limited to one scratch prefix.

Google's way to hand out less than a service account can do is a *Credential
Access Boundary* (cloud.google.com/iam/docs/downscoping-short-lived-credentials):
the broker exchanges its own access token at Google's Security Token Service
(OAuth 2.0 token exchange, RFC 8693, ``POST https://sts.googleapis.com/v1/token``
with ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``,
``subject_token`` = its own token and ``options`` = the boundary as JSON) and gets
back an opaque token that can do at most what the boundary allows *and* what the
broker's own identity may do. :func:`access_boundary` builds the boundary:

1. objects whose name starts with ``<prefix>/``: the object permissions of
   ``roles/storage.objectAdmin`` (read, write, overwrite, delete, resumable and
   multipart uploads);
2. listing: ``roles/storage.objectViewer`` on the bucket, but only for list
   calls whose ``prefix`` parameter starts with ``<prefix>/`` (the
   ``storage.googleapis.com/objectListPrefix`` attribute Google documents for
   exactly this). A list of the bucket root or of another user's prefix, and
   any read outside the prefix, is refused.

Both conditions end at the ``/`` after the prefix, because escaped usernames
may extend one another (``alice``, ``alice2``). One consequence: the prefix
root itself is not reachable as an object or a list prefix without that
slash, so ``gcsfs``'s ``info``/``exists`` of ``$PANGEO_SCRATCH`` itself answer
403 while ``ls``, ``find`` and everything under it work (pinned in
tests/integration/broker/test_gcs_scratch_isolation.py).

Lifetime: Google's STS takes no lifetime for a downscoped token; the token
lives as long as the broker's source token (at most one hour for a Workload
Identity token). The provider reports ``expires_in = min(lifetime, the STS's
expires_in)`` so clients come back for a new token after ``lifetime``; a
revoked user's last token stays usable until the source token it was minted
from expires (at most one hour).

The token endpoint for users' servers and Dask workers
(:func:`gcs_token_endpoint`, :class:`GCSTokenHandler`) speaks the protocols
google-auth's own credential types refresh with; see
:mod:`pangeo_cloud.broker.google_client` for the credentials files and the
protocol.

The broker's source credentials are its own identity: ``google.auth.default()``
(Workload Identity in GKE); tests pass a static token and a stand-in STS
(:mod:`pangeo_cloud.testing.google_sts`).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import json
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import google.auth
import google.auth.credentials
import google.auth.exceptions
import requests
from google.auth import downscoped
from google.auth.transport.requests import Request
from google.oauth2 import sts
from tornado import web

from pangeo_cloud.broker.google_client import AUDIENCE, SUBJECT_TOKEN_TYPE
from pangeo_cloud.broker.providers import ProviderError, register

__all__ = [
    "GOOGLE_STS_URL",
    "GCSProvider",
    "GCSTokenHandler",
    "TokenRefused",
    "access_boundary",
    "gcs_token_endpoint",
]

GOOGLE_STS_URL = "https://sts.googleapis.com/v1/token"
STS_TIMEOUT = 30.0  # seconds, for each call to the STS and the metadata server
# The scope the broker's own token needs to be exchangeable for a storage token.
SOURCE_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# What the boundary grants inside the prefix: objectAdmin's object permissions
# (objectUser would do as well; objectAdmin also lets users set object ACLs on
# their own objects, which uniform bucket-level access ignores).
OBJECT_ROLE = "inRole:roles/storage.objectAdmin"
# What the listing rule grants: objectViewer has storage.objects.list; the
# condition limits it to list calls under the prefix.
LIST_ROLE = "inRole:roles/storage.objectViewer"

_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
_ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
# Bucket names as Google allows them (lower case, digits, - _ .).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
# Prefixes the broker produces: escaped usernames ([a-z0-9-]) after an optional
# bucket path. Anything else (a quote above all) could change the expression's meaning.
_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def _check_bucket(bucket: str) -> None:
    if not _BUCKET_RE.match(bucket):
        raise ProviderError(
            f"scratch bucket {bucket!r} is not a valid GCS bucket name "
            "(3-222 characters: lower-case letters, digits, '-', '_', '.')"
        )


def _check_names(bucket: str, prefix: str) -> None:
    _check_bucket(bucket)
    if not _PREFIX_RE.match(prefix) or ".." in prefix.split("/"):
        raise ProviderError(
            f"scratch prefix {prefix!r} is not allowed: letters, digits, '.', '_', '-' "
            "in '/'-separated parts, no leading or trailing '/'"
        )


def access_boundary(bucket: str, prefix: str) -> dict[str, Any]:
    """The Credential Access Boundary (STS ``options`` JSON) for ``gs://bucket/prefix/``."""
    _check_names(bucket, prefix)
    resource = f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    objects = downscoped.AccessBoundaryRule(
        available_resource=resource,
        available_permissions=[OBJECT_ROLE],
        availability_condition=downscoped.AvailabilityCondition(
            expression=(
                f"resource.name.startsWith('projects/_/buckets/{bucket}/objects/{prefix}/')"
            ),
        ),
    )
    listing = downscoped.AccessBoundaryRule(
        available_resource=resource,
        available_permissions=[LIST_ROLE],
        availability_condition=downscoped.AvailabilityCondition(
            expression=(
                "api.getAttribute('storage.googleapis.com/objectListPrefix', '')"
                f".startsWith('{prefix}/')"
            ),
        ),
    )
    return downscoped.CredentialAccessBoundary(rules=[objects, listing]).to_json()


class GCSProvider:
    """Issues downscoped tokens for one bucket from the broker's own Google identity."""

    scheme = "gs"

    def __init__(
        self,
        bucket: str,
        source_credentials: google.auth.credentials.Credentials,
        sts_endpoint: str = GOOGLE_STS_URL,
    ) -> None:
        _check_bucket(bucket)
        self.bucket = bucket
        self.sts_endpoint = sts_endpoint
        self._source = source_credentials
        self._sts = sts.Client(sts_endpoint)
        self._session = requests.Session()
        # google-auth credentials are not thread-safe; issue() runs in worker threads.
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> GCSProvider:
        """Build from the broker settings (``bucket``, optional ``tokenUrl``; see providers)."""
        bucket = settings.get("bucket")
        if not bucket:
            raise ProviderError("GCS scratch provider: setting 'bucket' is missing")
        try:
            source, _ = google.auth.default(scopes=list(SOURCE_SCOPES))
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ProviderError(
                "GCS scratch provider: the broker has no Google identity "
                "(google.auth.default() failed; in GKE bind its Kubernetes service account "
                f"to the broker's Google service account with Workload Identity): {exc}"
            ) from None
        return cls(str(bucket), source, settings.get("tokenUrl") or GOOGLE_STS_URL)

    async def issue(self, username: str, prefix: str, lifetime: int) -> dict:
        """A downscoped token for ``gs://<bucket>/<prefix>/``: access_token, expires_in, type."""
        boundary = access_boundary(self.bucket, prefix)
        if lifetime <= 0:
            raise ProviderError(f"credential lifetime must be positive, got {lifetime}")
        return await asyncio.to_thread(self._exchange, boundary, lifetime)

    def _source_token(self, request: Callable[..., Any]) -> tuple[str, datetime.datetime | None]:
        with self._lock:
            if not self._source.valid:
                self._source.refresh(request)
            return self._source.token, self._source.expiry

    def _exchange(self, boundary: dict[str, Any], lifetime: int) -> dict:
        # A bounded wait: a hung STS must fail the user's refresh, not hold it for minutes.
        request = functools.partial(Request(self._session), timeout=STS_TIMEOUT)
        try:
            token, source_expiry = self._source_token(request)
            reply = self._sts.exchange_token(
                request=request,
                grant_type=_GRANT_TYPE,
                subject_token=token,
                subject_token_type=_ACCESS_TOKEN_TYPE,
                requested_token_type=_ACCESS_TOKEN_TYPE,
                additional_options=boundary,
            )
        except google.auth.exceptions.GoogleAuthError as exc:
            raise ProviderError(f"Google token exchange failed: {_one_line(exc)}") from None
        access_token = reply.get("access_token")
        if not access_token:
            raise ProviderError("Google token exchange returned no access_token")
        return {
            "access_token": access_token,
            "expires_in": min(lifetime, _remaining(reply, source_expiry)),
            "token_type": "Bearer",
        }


def _one_line(exc: Exception) -> str:
    """The first line of an error's message (OAuthError's args are (message, raw body))."""
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    lines = message.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _remaining(reply: Mapping[str, Any], source_expiry: datetime.datetime | None) -> int:
    """Seconds the exchanged token lives: the STS's expires_in, else the source token's."""
    if reply.get("expires_in"):
        return int(reply["expires_in"])
    if source_expiry is None:
        # A source token without expiry (a static token): nothing else bounds it.
        return 3600
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return max(0, int((source_expiry - now).total_seconds()))


register("gs", GCSProvider.from_settings)


# --- the token endpoint users' google-auth refreshes through ------------------------------


class TokenRefused(Exception):
    """A refresh request is refused: ``status`` (400/401/403) and a one-line reason."""

    def __init__(self, status: int, reason: str, error: str = "invalid_grant") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.error = error


@dataclass(frozen=True)
class TokenReply:
    """What the endpoint answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


# authenticate(jupyterhub_token) -> username, or raises TokenRefused / tornado HTTPError.
Authenticate = Callable[[str], Awaitable[str]]
# issue(username) -> the provider's credentials for that user's own prefix.
Issue = Callable[[str], Awaitable[dict]]


def _oauth_error(status: int, error: str, description: str) -> TokenReply:
    # RFC 6749 section 5.2: google-auth shows "Error code <error>: <description>".
    return TokenReply(status, {"error": error, "error_description": description})


def _parse_form(content_type: str, body: bytes) -> dict[str, str]:
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise TokenRefused(
            400, "the body must be application/x-www-form-urlencoded", "invalid_request"
        )
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise TokenRefused(400, "the body is not a valid form", "invalid_request") from None


def _http_error_reason(exc: web.HTTPError) -> str:
    """The one-line reason of a tornado HTTPError (its log message, formatted as tornado does)."""
    if exc.log_message:
        return exc.log_message % exc.args if exc.args else exc.log_message
    return exc.reason or "token refused"


def _hub_token(form: Mapping[str, str]) -> str:
    """The JupyterHub token a request carries, by grant type (see google_client)."""
    grant = form.get("grant_type")
    if grant == "refresh_token":
        # external_account_authorized_user credentials: the token is the refresh token.
        token = form.get("refresh_token", "")
        field = "refresh_token"
    elif grant == _GRANT_TYPE:
        # external_account credentials with the executable source: the token is the
        # subject token the executable printed; the file names our audience and type.
        if form.get("subject_token_type") != SUBJECT_TOKEN_TYPE:
            raise TokenRefused(
                400, f"subject_token_type must be {SUBJECT_TOKEN_TYPE}", "invalid_request"
            )
        if form.get("audience") != AUDIENCE:
            raise TokenRefused(400, f"audience must be {AUDIENCE}", "invalid_target")
        token = form.get("subject_token", "")
        field = "subject_token"
    else:
        raise TokenRefused(
            400,
            f"grant_type must be refresh_token or {_GRANT_TYPE}, got {grant!r}",
            "unsupported_grant_type",
        )
    if not token:
        raise TokenRefused(401, f"{field} (the JupyterHub API token) is missing", "invalid_request")
    return token


async def gcs_token_endpoint(
    content_type: str, body: bytes, authenticate: Authenticate, issue: Issue
) -> TokenReply:
    """Answer one token request from google-auth (protocol: :mod:`.google_client`).

    Two grants, one per credentials type a user's server may have:
    ``grant_type=refresh_token&refresh_token=<JupyterHub token>``
    (``external_account_authorized_user``; the Basic client authentication
    google-auth adds carries fixed public values and is ignored) and the RFC 8693
    token exchange with ``subject_token=<JupyterHub token>`` (``external_account``
    with an executable source). ``authenticate`` maps the JupyterHub token to a
    username (or refuses it); ``issue`` mints that user's token. Never raises
    for a bad request: every refusal is an OAuth error JSON.
    """
    try:
        form = _parse_form(content_type, body)
        username = await authenticate(_hub_token(form))
    except TokenRefused as exc:
        return _oauth_error(exc.status, exc.error, exc.reason)
    except web.HTTPError as exc:
        return _oauth_error(exc.status_code, "invalid_grant", _http_error_reason(exc))
    try:
        creds = await issue(username)
    except ProviderError as exc:
        # Never a fallback: no token at all rather than a wider one.
        return _oauth_error(503, "temporarily_unavailable", str(exc))
    reply = {
        "access_token": creds["access_token"],
        "expires_in": int(creds["expires_in"]),
        "token_type": "Bearer",
    }
    if form.get("grant_type") == _GRANT_TYPE:
        reply["issued_token_type"] = _ACCESS_TOKEN_TYPE  # required by RFC 8693
    return TokenReply(200, reply)


class GCSTokenHandler(web.RequestHandler):
    """Tornado handler for :func:`gcs_token_endpoint`.

    Mount at ``<service prefix>`` + :data:`~.google_client.TOKEN_ROUTE` with
    ``{"authenticate": ..., "issue": ...}`` (see :func:`gcs_token_endpoint`).
    Authentication is the refresh token in the body, not a cookie, so no XSRF check.
    """

    def initialize(self, authenticate: Authenticate, issue: Issue) -> None:
        self._authenticate = authenticate
        self._issue = issue

    def check_xsrf_cookie(self) -> None:
        """Not a browser form: the caller proves itself with the token in the body."""

    async def post(self) -> None:
        reply = await gcs_token_endpoint(
            self.request.headers.get("Content-Type", ""),
            self.request.body,
            self._authenticate,
            self._issue,
        )
        self.set_status(reply.status)
        # Tokens must not be cached by anything in between (RFC 6749 section 5.1).
        self.set_header("Cache-Control", "no-store")
        self.set_header("Pragma", "no-cache")
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(reply.body))
