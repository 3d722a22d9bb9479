"""Unit tests of the GCS path: the access boundary, the token endpoint, the credentials file."""

from __future__ import annotations

import json
import stat
from urllib.parse import urlencode

import google.auth
import pytest
from google.auth import external_account_authorized_user, pluggable
from tornado import web

from pangeo_cloud.broker import google_client
from pangeo_cloud.broker.gcs import (
    GCSProvider,
    TokenRefused,
    access_boundary,
    gcs_token_endpoint,
)
from pangeo_cloud.broker.providers import Provider, ProviderError, get_provider

FORM = "application/x-www-form-urlencoded"


BUCKET = "//storage.googleapis.com/projects/_/buckets/pangeo-scratch"


def test_boundary_is_exactly_the_prefix_and_its_listing() -> None:
    assert access_boundary("pangeo-scratch", "alice") == {
        "accessBoundary": {
            "accessBoundaryRules": [
                {
                    "availablePermissions": ["inRole:roles/storage.objectAdmin"],
                    "availableResource": BUCKET,
                    "availabilityCondition": {
                        "expression": "resource.name.startsWith("
                        "'projects/_/buckets/pangeo-scratch/objects/alice/')"
                    },
                },
                {
                    "availablePermissions": ["inRole:roles/storage.objectViewer"],
                    "availableResource": BUCKET,
                    "availabilityCondition": {
                        "expression": "api.getAttribute("
                        "'storage.googleapis.com/objectListPrefix', '').startsWith('alice/')"
                    },
                },
            ]
        }
    }


def test_boundary_for_the_brokers_health_probe_prefix() -> None:
    # The service probes with a prefix no username escapes to (it starts with '-').
    rules = access_boundary("b-1", "-broker-health")["accessBoundary"]["accessBoundaryRules"]
    assert rules[1]["availabilityCondition"]["expression"].endswith(
        ".startsWith('-broker-health/')"
    )


def test_boundary_under_a_bucket_path_and_an_escaped_name() -> None:
    rules = access_boundary("b-1", "scratch/-41lice")["accessBoundary"]["accessBoundaryRules"]
    assert rules[0]["availabilityCondition"]["expression"] == (
        "resource.name.startsWith('projects/_/buckets/b-1/objects/scratch/-41lice/')"
    )
    assert rules[1]["availabilityCondition"]["expression"].endswith(
        ".startsWith('scratch/-41lice/')"
    )


@pytest.mark.parametrize(
    "prefix",
    ["", "/alice", "alice/", "al'ice", "a') || true || ('", "a/../b", "al ice", "a//b"],
)
def test_boundary_refuses_a_prefix_that_could_widen_it(prefix: str) -> None:
    with pytest.raises(ProviderError, match="scratch prefix"):
        access_boundary("pangeo-scratch", prefix)


@pytest.mark.parametrize("bucket", ["", "Bucket", "b'", "x", "a/b"])
def test_boundary_refuses_a_bad_bucket(bucket: str) -> None:
    with pytest.raises(ProviderError, match="not a valid GCS bucket name"):
        access_boundary(bucket, "alice")


def test_provider_satisfies_the_interface_and_is_registered(monkeypatch, tmp_path) -> None:
    from google.oauth2.credentials import Credentials

    provider = GCSProvider("pangeo-scratch", Credentials(token="t"), "http://127.0.0.1:1/v1/token")
    assert isinstance(provider, Provider)
    assert provider.scheme == "gs"
    # The registry builds it from settings with the broker's own identity, found by
    # google.auth.default(): here a credentials file holding a still-valid token.
    identity = tmp_path / "broker.json"
    identity.write_text(
        json.dumps(
            {
                "type": "external_account_authorized_user",
                "token": "broker-token",
                "expiry": "2999-01-01T00:00:00Z",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(identity))
    built = get_provider("gs", {"bucket": "pangeo-scratch", "tokenUrl": "http://x/v1/token"})
    assert isinstance(built, GCSProvider)
    assert (built.bucket, built.sts_endpoint) == ("pangeo-scratch", "http://x/v1/token")


def test_provider_settings_without_bucket_name_the_key() -> None:
    with pytest.raises(ProviderError, match="'bucket' is missing"):
        GCSProvider.from_settings({"url": "gs://"})


def test_provider_without_google_identity_says_so(monkeypatch, tmp_path) -> None:
    # No credentials file, no gcloud config, no metadata server: default() fails.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(ProviderError, match="the broker has no Google identity"):
        GCSProvider.from_settings({"bucket": "pangeo-scratch"})


# --- the token endpoint ---------------------------------------------------------------


async def _authenticate(token: str) -> str:
    if token == "alice-hub-token":
        return "alice"
    if token == "no-scope":
        raise web.HTTPError(403, "token lacks %s", "access:services!service=scratch-credentials")
    raise TokenRefused(401, "invalid or expired JupyterHub token")


async def _issue(username: str) -> dict:
    return {"access_token": f"tok-{username}", "expires_in": 600, "token_type": "Bearer"}


async def _call(form: dict[str, str], content_type: str = FORM, issue=_issue):
    return await gcs_token_endpoint(content_type, urlencode(form).encode(), _authenticate, issue)


EXCHANGE = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token": "alice-hub-token",
    "subject_token_type": google_client.SUBJECT_TOKEN_TYPE,
    "audience": google_client.AUDIENCE,
    "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
    "scope": "https://www.googleapis.com/auth/devstorage.read_write",
}


async def test_endpoint_issues_the_users_token_for_a_refresh() -> None:
    reply = await _call({"grant_type": "refresh_token", "refresh_token": "alice-hub-token"})
    assert reply.status == 200
    assert reply.body == {"access_token": "tok-alice", "expires_in": 600, "token_type": "Bearer"}


async def test_endpoint_issues_the_users_token_for_an_exchange() -> None:
    reply = await _call(EXCHANGE)
    assert reply.status == 200
    assert reply.body == {
        "access_token": "tok-alice",
        "expires_in": 600,
        "token_type": "Bearer",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }


@pytest.mark.parametrize(
    ("form", "content_type", "status", "error", "words"),
    [
        ({"grant_type": "password"}, FORM, 400, "unsupported_grant_type", "grant_type"),
        ({"grant_type": "refresh_token"}, FORM, 401, "invalid_request", "missing"),
        ({"grant_type": "refresh_token", "refresh_token": "x"}, "text/plain", 400, "", "form"),
        ({"grant_type": "refresh_token", "refresh_token": "foreign"}, FORM, 401, "", "expired"),
        ({"grant_type": "refresh_token", "refresh_token": "no-scope"}, FORM, 403, "", "lacks acc"),
        ({**EXCHANGE, "audience": "//iam.googleapis.com/x"}, FORM, 400, "invalid_target", "aud"),
        ({**EXCHANGE, "subject_token_type": "x"}, FORM, 400, "invalid_request", "type"),
        ({**EXCHANGE, "subject_token": ""}, FORM, 401, "invalid_request", "subject_token"),
        ({**EXCHANGE, "subject_token": "foreign"}, FORM, 401, "invalid_grant", "expired"),
    ],
)
async def test_endpoint_refuses_with_an_oauth_error(form, content_type, status, error, words):
    reply = await _call(form, content_type)
    assert reply.status == status
    assert set(reply.body) == {"error", "error_description"}
    assert not error or reply.body["error"] == error
    assert words in reply.body["error_description"]
    assert "\n" not in reply.body["error_description"]


async def test_endpoint_never_falls_back_when_the_provider_fails() -> None:
    async def broken(username: str) -> dict:
        raise ProviderError("Google token exchange failed: Error code invalid_grant")

    reply = await _call(
        {"grant_type": "refresh_token", "refresh_token": "alice-hub-token"}, issue=broken
    )
    assert reply.status == 503
    assert "access_token" not in reply.body
    assert reply.body["error_description"].startswith("Google token exchange failed")


# --- the credentials files ------------------------------------------------------------


def test_static_file_is_loaded_by_google_auth_default(tmp_path, monkeypatch) -> None:
    path = tmp_path / "gcs.json"
    info = google_client.external_account_info(
        "http://127.0.0.1:9/services/scratch-credentials/api/token/gcs",
        "python3 /x/gc.py subject-token",
    )
    path.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    creds, _ = google.auth.default()
    assert isinstance(creds, pluggable.Credentials)
    assert not creds.valid  # first use runs the command and asks the broker
    assert creds.info["token_url"].endswith("/api/token/gcs")
    assert creds.info["audience"] == google_client.AUDIENCE


def test_authorized_user_file_is_private_and_loaded_by_google_auth_default(tmp_path, monkeypatch):
    path = tmp_path / "run" / "gcs.json"
    info = google_client.authorized_user_info("http://127.0.0.1:9/token/gcs", "hub-token")
    google_client.write_file(path, info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["refresh_token"] == "hub-token"
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    creds, _ = google.auth.default()
    assert isinstance(creds, external_account_authorized_user.Credentials)
    assert creds.can_refresh and not creds.valid  # first use fetches from the broker
    assert creds.token_url == "http://127.0.0.1:9/token/gcs"


def test_subject_token_prefers_the_workers_broker_token() -> None:
    both = {"JUPYTERHUB_API_TOKEN": "server", "PANGEO_SCRATCH_BROKER_TOKEN": "worker"}
    response, status = google_client.subject_token_response(both)
    assert status == 0
    assert response == {
        "version": 1,
        "success": True,
        "token_type": google_client.SUBJECT_TOKEN_TYPE,
        "id_token": "worker",
    }
    assert (
        google_client.subject_token_response({"JUPYTERHUB_API_TOKEN": "server"})[0]["id_token"]
        == "server"
    )
    response, status = google_client.subject_token_response({})
    assert status == 1 and response["success"] is False
    assert "JUPYTERHUB_API_TOKEN" in response["message"]


def test_write_authorized_user_command(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token")
    monkeypatch.setenv("PANGEO_SCRATCH_BROKER_URL", "http://h/services/scratch-credentials/")
    path = tmp_path / "gcs.json"
    assert google_client.main(["write-authorized-user", str(path)]) == 0
    info = json.loads(path.read_text())
    assert info["type"] == "external_account_authorized_user"
    assert info["token_url"] == "http://h/services/scratch-credentials/api/token/gcs"
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    assert google_client.main(["write-authorized-user", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(("url", "token"), [("ftp://h/t", "t"), ("http://h/t", "")])
def test_authorized_user_info_refuses_bad_input(url: str, token: str) -> None:
    with pytest.raises(ValueError):
        google_client.authorized_user_info(url, token)
