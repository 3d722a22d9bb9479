"""Shared by the GCS broker integration tests: the broker's token endpoint and STS on loopback.

(A uniquely named module, not conftest: test directories have no __init__.py.)

The broker is the real :class:`GCSTokenHandler` in a tornado server on this
test's event loop, with a real :class:`GCSProvider` talking to the stand-in of
Google's STS. Its JupyterHub authentication is the service's; here a fixed
token table stands in for it (:func:`authenticate`), refusing as the service does.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from google.oauth2.credentials import Credentials as StaticCredentials
from tornado import web

from pangeo_cloud.broker import google_client
from pangeo_cloud.broker.gcs import GCSProvider, GCSTokenHandler, TokenRefused
from pangeo_cloud.ports import free_port
from pangeo_cloud.scratch import scratch_key_prefix
from pangeo_cloud.testing.google_sts import GoogleSTSStandIn

BUCKET = "pangeo-scratch"
SCRATCH = {"url": f"gs://{BUCKET}/users"}
SOURCE_TOKEN = "ya29.broker-own-token"
HUB_TOKENS = {
    "alice-hub-token": "alice",
    "Bob-hub-token": "Bob",
    # A Dask worker's token: the owner's, but only the broker's scope (the service checks).
    "alice-worker-token": "alice",
}
TOKEN_PATH = "/services/scratch-credentials/" + google_client.TOKEN_ROUTE


async def authenticate(token: str) -> str:
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


@pytest.fixture(name="gcs_broker")
async def gcs_broker_fixture() -> AsyncIterator[Broker]:
    """The broker's GCS token endpoint and its STS stand-in (import this into a test module)."""
    with GoogleSTSStandIn() as sts:
        sts.add_source_token(SOURCE_TOKEN)
        provider = GCSProvider(BUCKET, StaticCredentials(token=SOURCE_TOKEN), sts.token_url)
        state = Broker(sts, provider, "", lifetime=3600)

        async def issue(username: str) -> dict:
            # What the service does: the prefix from the verified user, never from the caller.
            prefix = scratch_key_prefix(SCRATCH, username)
            return await provider.issue(username, prefix, state.lifetime)

        app = web.Application(
            [(TOKEN_PATH, GCSTokenHandler, {"authenticate": authenticate, "issue": issue})]
        )
        port = free_port()
        server = app.listen(port, "127.0.0.1")
        state.token_url = f"http://127.0.0.1:{port}{TOKEN_PATH}"
        try:
            yield state
        finally:
            server.stop()
            await server.close_all_connections()


def user_credentials_file(tmp_path, monkeypatch, token_url: str, hub_token: str) -> None:
    """The per-server variant: the file carries the token; the variable names the file."""
    path = google_client.write_file(
        tmp_path / f"{hub_token}.json", google_client.authorized_user_info(token_url, hub_token)
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))


def static_credentials_file(tmp_path, monkeypatch, token_url: str, env: dict[str, str]) -> None:
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


def bearer(headers: dict[str, str]) -> str:
    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


async def wait_expired(sts: GoogleSTSStandIn, token: str) -> None:
    deadline = time.monotonic() + 60
    while sts.token_info(token) is not None:
        assert time.monotonic() < deadline, "stand-in token never expired"
        await asyncio.sleep(0.1)
