"""The GCS path end to end on loopback: google-auth and gcsfs -> broker endpoint -> STS stand-in.

Real HTTP everywhere: the broker's token endpoint (:class:`GCSTokenHandler` in a
tornado server), its :class:`GCSProvider` talking to the stand-in of Google's
STS (:mod:`pangeo_cloud.testing.google_sts`), and unmodified google-auth / gcsfs
credentials loaded by ``google.auth.default()`` from the file a user's server
gets. The broker's JupyterHub authentication is the service's; here a fixed
token table stands in for it (``_authenticate``), refusing as the service does.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import google.auth
import google.auth.exceptions
import pytest
import requests
from gcsfs.credentials import GoogleCredentials
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials as StaticCredentials
from tornado import web

from pangeo_cloud.broker import google_client
from pangeo_cloud.broker.gcs import GCSProvider, GCSTokenHandler, TokenRefused, access_boundary
from pangeo_cloud.broker.providers import ProviderError
from pangeo_cloud.ports import free_port
from pangeo_cloud.scratch import scratch_key_prefix
from pangeo_cloud.testing.google_sts import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE, GoogleSTSStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BUCKET = "pangeo-scratch"
SCRATCH = {"url": f"gs://{BUCKET}/users"}
SOURCE_TOKEN = "ya29.broker-own-token"
HUB_TOKENS = {
    "alice-hub-token": "alice",
    "Bob-hub-token": "Bob",
    # A Dask worker's token: the owner's, but only the broker's scope (the service checks).
    "alice-worker-token": "alice",
}
TOKEN_PATH = "/services/scratch-credentials/token/gcs"


async def _authenticate(token: str) -> str:
    """Stands in for the service's JupyterHub token check (scope and membership)."""
    if token in HUB_TOKENS:
        return HUB_TOKENS[token]
    if token == "other-service-token":
        raise TokenRefused(403, "token lacks access:services!service=scratch-credentials")
    raise TokenRefused(401, "invalid or expired JupyterHub token")


@dataclass
class Broker:
    sts: GoogleSTSStandIn
    provider: GCSProvider
    token_url: str
    lifetime: int


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    with GoogleSTSStandIn() as sts:
        sts.add_source_token(SOURCE_TOKEN)
        provider = GCSProvider(BUCKET, StaticCredentials(token=SOURCE_TOKEN), sts.token_url)
        state = Broker(sts, provider, "", lifetime=3600)

        async def issue(username: str) -> dict:
            # What the service does: the prefix from the verified user, never from the caller.
            prefix = scratch_key_prefix(SCRATCH, username)
            return await provider.issue(username, prefix, state.lifetime)

        app = web.Application(
            [(TOKEN_PATH, GCSTokenHandler, {"authenticate": _authenticate, "issue": issue})]
        )
        port = free_port()
        server = app.listen(port, "127.0.0.1")
        state.token_url = f"http://127.0.0.1:{port}{TOKEN_PATH}"
        try:
            yield state
        finally:
            server.stop()
            await server.close_all_connections()


def _user_credentials_file(tmp_path, monkeypatch, token_url: str, hub_token: str) -> None:
    """The per-server variant: the file carries the token; the variable names the file."""
    path = google_client.write_file(
        tmp_path / f"{hub_token}.json", google_client.authorized_user_info(token_url, hub_token)
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))


def _static_credentials_file(tmp_path, monkeypatch, token_url: str, env: dict[str, str]) -> None:
    """The static variant: no secret in the file; the token comes from the environment."""
    command = f"{shlex.quote(sys.executable)} {shlex.quote(google_client.__file__)} subject-token"
    path = tmp_path / "static.json"
    path.write_text(json.dumps(google_client.external_account_info(token_url, command)))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
    for name in ("JUPYTERHUB_API_TOKEN", "PANGEO_SCRATCH_BROKER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _bearer(headers: dict[str, str]) -> str:
    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


async def _wait_expired(sts: GoogleSTSStandIn, token: str) -> None:
    deadline = time.monotonic() + 60
    while sts.token_info(token) is not None:
        assert time.monotonic() < deadline, "stand-in token never expired"
        await asyncio.sleep(0.1)


# --- (b) the provider asks Google's STS for exactly the boundary we want -----------------


async def test_provider_requests_exactly_the_users_boundary(broker: Broker) -> None:
    creds = await broker.provider.issue("alice", "users/alice", 900)
    exchange = broker.sts.exchanges[-1]
    assert exchange.status == 200
    assert exchange.boundary == access_boundary(BUCKET, "users/alice")
    assert {k: v for k, v in exchange.form.items() if k != "options"} == {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": SOURCE_TOKEN,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE,
    }
    assert creds["token_type"] == "Bearer"
    # The STS says 3600 s; the broker's lifetime is shorter and is what clients hear.
    assert creds["expires_in"] == 900
    issued = broker.sts.token_info(creds["access_token"])
    assert issued is not None and issued.boundary == exchange.boundary


async def test_provider_reports_the_sts_lifetime_when_shorter(broker: Broker) -> None:
    broker.sts.expires_in = 120
    creds = await broker.provider.issue("alice", "users/alice", 3600)
    assert creds["expires_in"] == 120


async def test_provider_surfaces_an_sts_refusal_in_one_line(broker: Broker) -> None:
    provider = GCSProvider(BUCKET, StaticCredentials(token="ya29.revoked"), broker.sts.token_url)
    with pytest.raises(ProviderError) as info:
        await provider.issue("alice", "users/alice", 900)
    message = str(info.value)
    assert message.startswith("Google token exchange failed: Error code invalid_grant")
    assert "\n" not in message and "ya29.revoked" not in message
    assert broker.sts.exchanges[-1].status == 400


async def test_provider_with_the_sts_unreachable_fails_in_one_line(broker: Broker) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1/token"
    provider = GCSProvider(BUCKET, StaticCredentials(token=SOURCE_TOKEN), closed)
    with pytest.raises(ProviderError, match="^Google token exchange failed: ") as info:
        await provider.issue("alice", "users/alice", 900)
    assert "\n" not in str(info.value)


# --- (c) google-auth and gcsfs refresh through the broker, across expiry ------------------


async def test_google_auth_default_refreshes_through_the_broker_across_expiry(
    broker: Broker, tmp_path, monkeypatch
) -> None:
    # Shorter than google-auth's refresh margin: every use must fetch a new token.
    broker.sts.expires_in = 1
    _user_credentials_file(tmp_path, monkeypatch, broker.token_url, "alice-hub-token")
    creds, _ = google.auth.default()
    alice = access_boundary(BUCKET, "users/alice")
    seen: list[str] = []
    with requests.Session() as session:
        for _ in range(4):
            headers: dict[str, str] = {}
            await asyncio.to_thread(
                creds.before_request, Request(session), "GET", "https://storage.example", headers
            )
            token = _bearer(headers)
            issued = broker.sts.token_info(token)
            assert issued is not None, "the client holds an unknown or expired token"
            assert issued.boundary == alice
            seen.append(token)
            # Let this one expire at the STS before the next use.
            await _wait_expired(broker.sts, token)
    assert len(set(seen)) == len(seen) == 4
    assert [e.boundary for e in broker.sts.exchanges] == [alice] * 4


async def test_gcsfs_credentials_refresh_through_the_broker(
    broker: Broker, tmp_path, monkeypatch
) -> None:
    broker.sts.expires_in = 2
    _user_credentials_file(tmp_path, monkeypatch, broker.token_url, "Bob-hub-token")
    # gcsfs's own credential object, built as GCSFileSystem() builds it by default.
    gcreds = await asyncio.to_thread(GoogleCredentials, None, "read_write", "google_default")
    bob = access_boundary(BUCKET, "users/-42ob")
    tokens = []
    for _ in range(3):
        headers: dict[str, str] = {}
        await asyncio.to_thread(gcreds.apply, headers)
        token = _bearer(headers)
        issued = broker.sts.token_info(token)
        assert issued is not None and issued.boundary == bob
        tokens.append(token)
        await _wait_expired(broker.sts, token)
    assert len(set(tokens)) == 3


@pytest.mark.parametrize(
    ("env", "user"),
    [
        ({"JUPYTERHUB_API_TOKEN": "Bob-hub-token"}, "-42ob"),
        # A worker: its broker-only token wins over any server token in its environment.
        (
            {
                "JUPYTERHUB_API_TOKEN": "Bob-hub-token",
                "PANGEO_SCRATCH_BROKER_TOKEN": "alice-worker-token",
            },
            "alice",
        ),
    ],
)
async def test_static_file_refreshes_through_the_broker_across_expiry(
    broker: Broker, tmp_path, monkeypatch, env: dict[str, str], user: str
) -> None:
    broker.sts.expires_in = 1
    _static_credentials_file(tmp_path, monkeypatch, broker.token_url, env)
    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    expected = access_boundary(BUCKET, f"users/{user}")
    seen: list[str] = []
    for _ in range(3):
        headers: dict[str, str] = {}
        await asyncio.to_thread(creds.before_request, Request(), "GET", "https://x", headers)
        token = _bearer(headers)
        issued = broker.sts.token_info(token)
        assert issued is not None and issued.boundary == expected
        seen.append(token)
        await _wait_expired(broker.sts, token)
    assert len(set(seen)) == 3
    # gcsfs, from the same file.
    gcreds = await asyncio.to_thread(GoogleCredentials, None, "read_write", "google_default")
    headers = {}
    await asyncio.to_thread(gcreds.apply, headers)
    assert broker.sts.token_info(_bearer(headers)).boundary == expected


async def test_static_file_without_a_token_in_the_environment_fails_clearly(
    broker: Broker, tmp_path, monkeypatch
) -> None:
    _static_credentials_file(tmp_path, monkeypatch, broker.token_url, {})
    creds, _ = google.auth.default()
    with pytest.raises(
        google.auth.exceptions.RefreshError,
        match="neither PANGEO_SCRATCH_BROKER_TOKEN nor JUPYTERHUB_API_TOKEN is set",
    ):
        await asyncio.to_thread(creds.refresh, Request())
    assert broker.sts.exchanges == []


async def test_a_long_lifetime_is_reused_not_refetched(
    broker: Broker, tmp_path, monkeypatch
) -> None:
    _user_credentials_file(tmp_path, monkeypatch, broker.token_url, "alice-hub-token")
    creds, _ = google.auth.default()
    tokens = set()
    for _ in range(3):
        headers: dict[str, str] = {}
        await asyncio.to_thread(creds.before_request, Request(), "GET", "https://x", headers)
        tokens.add(_bearer(headers))
    assert len(tokens) == 1 and len(broker.sts.exchanges) == 1


# --- (d) bad or foreign tokens are refused ------------------------------------------------


@pytest.mark.parametrize(
    ("hub_token", "reason"),
    [
        ("not-a-hub-token", "invalid or expired JupyterHub token"),
        ("other-service-token", "token lacks access:services!service=scratch-credentials"),
    ],
)
async def test_a_bad_or_foreign_token_is_refused(
    broker: Broker, tmp_path, monkeypatch, hub_token: str, reason: str
) -> None:
    _user_credentials_file(tmp_path, monkeypatch, broker.token_url, hub_token)
    creds, _ = google.auth.default()
    with pytest.raises(google.auth.exceptions.OAuthError, match=f"invalid_grant: {reason}"):
        await asyncio.to_thread(creds.refresh, Request())
    assert creds.token is None
    # The same through the static file's token exchange.
    _static_credentials_file(
        tmp_path, monkeypatch, broker.token_url, {"JUPYTERHUB_API_TOKEN": hub_token}
    )
    creds, _ = google.auth.default()
    with pytest.raises(google.auth.exceptions.OAuthError, match=f"invalid_grant: {reason}"):
        await asyncio.to_thread(creds.refresh, Request())
    assert creds.token is None
    # gcsfs passes the broker's reason on and does not fall back to anything wider.
    gcreds = await asyncio.to_thread(GoogleCredentials, None, "read_write", "google_default")
    headers: dict[str, str] = {}
    with pytest.raises(google.auth.exceptions.OAuthError, match=reason):
        await asyncio.to_thread(gcreds.apply, headers)
    assert headers == {}
    assert broker.sts.exchanges == []


async def test_refresh_without_the_broker_fails_rather_than_widening(
    broker: Broker, tmp_path, monkeypatch
) -> None:
    closed = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"
    _user_credentials_file(tmp_path, monkeypatch, closed, "alice-hub-token")
    creds, _ = google.auth.default()
    with pytest.raises(google.auth.exceptions.TransportError):
        await asyncio.to_thread(creds.refresh, Request())
    assert creds.token is None
