"""The GCS path end to end on loopback: google-auth and gcsfs -> broker endpoint -> STS stand-in.

Real HTTP everywhere: the broker's token endpoint, its provider talking to the
stand-in of Google's STS, and unmodified google-auth / gcsfs credentials loaded
by ``google.auth.default()`` from the file a user's server gets (see
gcs_broker_support for the broker and what stands in for its hub authentication).
"""

from __future__ import annotations

import asyncio

import google.auth
import google.auth.exceptions
import pytest
import requests
from gcs_broker_support import (
    BUCKET,
    SOURCE_TOKEN,
    TOKEN_PATH,
    Broker,
    bearer,
    gcs_broker_fixture,  # noqa: F401 (the gcs_broker fixture)
    static_credentials_file,
    user_credentials_file,
    wait_expired,
)
from gcsfs.credentials import GoogleCredentials
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials as StaticCredentials

from pangeo_cloud.broker.gcs import GCSProvider, access_boundary
from pangeo_cloud.broker.providers import ProviderError
from pangeo_cloud.ports import free_port
from pangeo_cloud.testing.google_sts import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# --- (b) the provider asks Google's STS for exactly the boundary we want -----------------


async def test_provider_requests_exactly_the_users_boundary(gcs_broker: Broker) -> None:
    creds = await gcs_broker.provider.issue("alice", "users/alice", 900)
    exchange = gcs_broker.sts.exchanges[-1]
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
    issued = gcs_broker.sts.token_info(creds["access_token"])
    assert issued is not None and issued.boundary == exchange.boundary


async def test_provider_reports_the_sts_lifetime_when_shorter(gcs_broker: Broker) -> None:
    gcs_broker.sts.expires_in = 120
    creds = await gcs_broker.provider.issue("alice", "users/alice", 3600)
    assert creds["expires_in"] == 120


async def test_provider_surfaces_an_sts_refusal_in_one_line(gcs_broker: Broker) -> None:
    provider = GCSProvider(
        BUCKET, StaticCredentials(token="ya29.revoked"), gcs_broker.sts.token_url
    )
    with pytest.raises(ProviderError) as info:
        await provider.issue("alice", "users/alice", 900)
    message = str(info.value)
    assert message.startswith("Google token exchange failed: Error code invalid_grant")
    assert "\n" not in message and "ya29.revoked" not in message
    assert gcs_broker.sts.exchanges[-1].status == 400


async def test_provider_with_the_sts_unreachable_fails_in_one_line(gcs_broker: Broker) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1/token"
    provider = GCSProvider(BUCKET, StaticCredentials(token=SOURCE_TOKEN), closed)
    with pytest.raises(ProviderError, match="^Google token exchange failed: ") as info:
        await provider.issue("alice", "users/alice", 900)
    assert "\n" not in str(info.value)


# --- (c) google-auth and gcsfs refresh through the gcs_broker, across expiry ------------------


async def test_google_auth_default_refreshes_through_the_broker_across_expiry(
    gcs_broker: Broker, tmp_path, monkeypatch
) -> None:
    # Shorter than google-auth's refresh margin: every use must fetch a new token.
    gcs_broker.sts.expires_in = 1
    user_credentials_file(tmp_path, monkeypatch, gcs_broker.token_url, "alice-hub-token")
    creds, _ = google.auth.default()
    alice = access_boundary(BUCKET, "users/alice")
    seen: list[str] = []
    with requests.Session() as session:
        for _ in range(4):
            headers: dict[str, str] = {}
            await asyncio.to_thread(
                creds.before_request, Request(session), "GET", "https://storage.example", headers
            )
            token = bearer(headers)
            issued = gcs_broker.sts.token_info(token)
            assert issued is not None, "the client holds an unknown or expired token"
            assert issued.boundary == alice
            seen.append(token)
            # Let this one expire at the STS before the next use.
            await wait_expired(gcs_broker.sts, token)
    assert len(set(seen)) == len(seen) == 4
    assert [e.boundary for e in gcs_broker.sts.exchanges] == [alice] * 4


async def test_gcsfs_credentials_refresh_through_the_broker(
    gcs_broker: Broker, tmp_path, monkeypatch
) -> None:
    gcs_broker.sts.expires_in = 2
    user_credentials_file(tmp_path, monkeypatch, gcs_broker.token_url, "Bob-hub-token")
    # gcsfs's own credential object, built as GCSFileSystem() builds it by default.
    gcreds = await asyncio.to_thread(GoogleCredentials, None, "read_write", "google_default")
    bob = access_boundary(BUCKET, "users/-42ob")
    tokens = []
    for _ in range(3):
        headers: dict[str, str] = {}
        await asyncio.to_thread(gcreds.apply, headers)
        token = bearer(headers)
        issued = gcs_broker.sts.token_info(token)
        assert issued is not None and issued.boundary == bob
        tokens.append(token)
        await wait_expired(gcs_broker.sts, token)
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
    gcs_broker: Broker, tmp_path, monkeypatch, env: dict[str, str], user: str
) -> None:
    gcs_broker.sts.expires_in = 1
    static_credentials_file(tmp_path, monkeypatch, gcs_broker.token_url, env)
    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    expected = access_boundary(BUCKET, f"users/{user}")
    seen: list[str] = []
    for _ in range(3):
        headers: dict[str, str] = {}
        await asyncio.to_thread(creds.before_request, Request(), "GET", "https://x", headers)
        token = bearer(headers)
        issued = gcs_broker.sts.token_info(token)
        assert issued is not None and issued.boundary == expected
        seen.append(token)
        await wait_expired(gcs_broker.sts, token)
    assert len(set(seen)) == 3
    # gcsfs, from the same file.
    gcreds = await asyncio.to_thread(GoogleCredentials, None, "read_write", "google_default")
    headers = {}
    await asyncio.to_thread(gcreds.apply, headers)
    assert gcs_broker.sts.token_info(bearer(headers)).boundary == expected


async def test_static_file_without_a_token_in_the_environment_fails_clearly(
    gcs_broker: Broker, tmp_path, monkeypatch
) -> None:
    static_credentials_file(tmp_path, monkeypatch, gcs_broker.token_url, {})
    creds, _ = google.auth.default()
    with pytest.raises(
        google.auth.exceptions.RefreshError,
        match="neither PANGEO_SCRATCH_BROKER_TOKEN nor JUPYTERHUB_API_TOKEN is set",
    ):
        await asyncio.to_thread(creds.refresh, Request())
    assert gcs_broker.sts.exchanges == []


async def test_a_long_lifetime_is_reused_not_refetched(
    gcs_broker: Broker, tmp_path, monkeypatch
) -> None:
    user_credentials_file(tmp_path, monkeypatch, gcs_broker.token_url, "alice-hub-token")
    creds, _ = google.auth.default()
    tokens = set()
    for _ in range(3):
        headers: dict[str, str] = {}
        await asyncio.to_thread(creds.before_request, Request(), "GET", "https://x", headers)
        tokens.add(bearer(headers))
    assert len(tokens) == 1 and len(gcs_broker.sts.exchanges) == 1


# --- (d) bad or foreign tokens are refused ------------------------------------------------


@pytest.mark.parametrize(
    ("hub_token", "reason"),
    [
        ("not-a-hub-token", "invalid or expired JupyterHub token"),
        ("other-service-token", "token lacks access:services!service=scratch-credentials"),
    ],
)
async def test_a_bad_or_foreign_token_is_refused(
    gcs_broker: Broker, tmp_path, monkeypatch, hub_token: str, reason: str
) -> None:
    user_credentials_file(tmp_path, monkeypatch, gcs_broker.token_url, hub_token)
    creds, _ = google.auth.default()
    with pytest.raises(google.auth.exceptions.OAuthError, match=f"invalid_grant: {reason}"):
        await asyncio.to_thread(creds.refresh, Request())
    assert creds.token is None
    # The same through the static file's token exchange.
    static_credentials_file(
        tmp_path, monkeypatch, gcs_broker.token_url, {"JUPYTERHUB_API_TOKEN": hub_token}
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
    assert gcs_broker.sts.exchanges == []


async def test_refresh_without_the_broker_fails_rather_than_widening(
    gcs_broker: Broker, tmp_path, monkeypatch
) -> None:
    closed = f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"
    user_credentials_file(tmp_path, monkeypatch, closed, "alice-hub-token")
    creds, _ = google.auth.default()
    with pytest.raises(google.auth.exceptions.TransportError):
        await asyncio.to_thread(creds.refresh, Request())
    assert creds.token is None
