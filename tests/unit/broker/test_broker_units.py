"""Broker pieces without a hub or a store: policy, STS parameters, client, config, spawn check.

The end-to-end behaviour (MinIO enforcing the policy, the hub's tokens) is in
tests/integration/scratch; here each piece's contract and its error messages.
HTTP peers are real servers on loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pangeo_cloud.broker import client, policy, providers, service
from pangeo_cloud.broker.s3 import S3Provider
from pangeo_cloud.ports import free_port

# -- policy ---------------------------------------------------------------------------


def test_session_policy_reaches_only_the_prefix():
    doc = policy.session_policy("bucket", "alice")
    objects, listing = doc["Statement"]
    assert objects["Resource"] == ["arn:aws:s3:::bucket/alice/*"]
    assert set(objects["Action"]) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Resource"] == ["arn:aws:s3:::bucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["alice/", "alice/*"]}}
    nested = policy.session_policy("b", "team/-41lice")
    assert nested["Statement"][0]["Resource"] == ["arn:aws:s3:::b/team/-41lice/*"]


@pytest.mark.parametrize("bad", ["", "/alice", "alice/", "a*", "a?b", "x/../y", "..", "a$b"])
def test_prefixes_that_could_widen_the_policy_are_refused(bad):
    with pytest.raises(ValueError, match="not a scratch prefix"):
        policy.session_policy("bucket", bad)


def test_session_names_are_valid_and_distinct():
    assert policy.session_name("alice") == "scratch-alice"
    long = "x" * 100
    names = {policy.session_name(n) for n in ("a b", "a_b", "a/b", long, long + "y")}
    assert len(names) == 5
    for name in names:
        assert 2 <= len(name) <= 64
        assert all(c.isalnum() or c in "_+=,.@-" for c in name)


def test_sts_duration_within_the_role_chaining_limits():
    assert policy.sts_duration(20) == 900
    assert policy.sts_duration(1800) == 1800
    assert policy.sts_duration(43200) == 3600


# -- S3 provider: the AssumeRole call ---------------------------------------------------


async def test_s3_provider_asks_sts_for_the_prefix_policy_and_reports_the_lifetime():
    import botocore.session
    from botocore.stub import Stubber

    sts = botocore.session.get_session().create_client(
        "sts", region_name="us-west-2", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stub = Stubber(sts)
    sts_expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=900)
    stub.add_response(
        "assume_role",
        {
            "Credentials": {
                "AccessKeyId": "ASIAEXAMPLEEXAMPLE",
                "SecretAccessKey": "secret",
                "SessionToken": "token",
                "Expiration": sts_expiry,
            }
        },
        {
            "RoleArn": "arn:aws:iam::123456789012:role/scratch",
            "RoleSessionName": "scratch-alice",
            "Policy": json.dumps(policy.session_policy("bucket", "alice"), separators=(",", ":")),
            "DurationSeconds": 900,
        },
    )
    provider = S3Provider("bucket", "arn:aws:iam::123456789012:role/scratch", client=sts)
    with stub:
        creds = await provider.issue("alice", "alice", 20)
    stub.assert_no_pending_responses()
    assert set(creds) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    expiry = dt.datetime.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    # Reported: now + 20 s (clients refresh then), although STS gave 900 s.
    assert expiry < sts_expiry - dt.timedelta(seconds=800)


async def test_s3_provider_turns_a_refusal_into_one_line():
    import botocore.session
    from botocore.stub import Stubber

    sts = botocore.session.get_session().create_client(
        "sts", region_name="us-west-2", aws_access_key_id="k", aws_secret_access_key="s"
    )
    stub = Stubber(sts)
    stub.add_client_error("assume_role", "AccessDenied", "not allowed to assume")
    provider = S3Provider("bucket", "arn:aws:iam::123456789012:role/scratch", client=sts)
    with stub, pytest.raises(providers.ProviderError) as exc:
        await provider.issue("alice", "alice", 3600)
    assert str(exc.value) == (
        "STS AssumeRole of arn:aws:iam::123456789012:role/scratch refused: "
        "AccessDenied: not allowed to assume"
    )


def test_provider_registry_and_missing_settings():
    assert "s3" in providers.schemes()
    with pytest.raises(providers.ProviderError, match="roleArn"):
        providers.get_provider("s3", {"bucket": "b"})
    with pytest.raises(providers.ProviderError, match=r"no scratch credential provider for ftp://"):
        providers.get_provider("ftp", {})


# -- service configuration ------------------------------------------------------------


def test_service_config_errors_name_the_key(tmp_path):
    with pytest.raises(service.BrokerConfigError, match="cannot read broker configuration"):
        service.load_config(str(tmp_path / "missing.json"))
    with pytest.raises(service.BrokerConfigError, match="scratch.url"):
        service.build({"scratch": {}}, hub_auth=object())
    with pytest.raises(service.BrokerConfigError, match="lifetime must be seconds"):
        service.build(
            {"scratch": {"url": "s3://b"}, "lifetime": "1h", "provider": {"roleArn": "r"}},
            hub_auth=object(),
        )
    scheme, settings = service.provider_settings(
        {"scratch": {"url": "s3://b/team", "region": "r"}, "provider": {"roleArn": "x"}}
    )
    assert scheme == "s3"
    assert settings == {
        "url": "s3://b/team",
        "bucket": "b",
        "region": "r",
        "endpoint": "",
        "project": "",
        "roleArn": "x",
    }


# -- client -----------------------------------------------------------------------------


class Peer:
    """A loopback HTTP server answering GETs with a fixed status and body; records headers."""

    def __init__(self, status: int, body: dict) -> None:
        self.requests: list[dict[str, str]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server API
                peer.requests.append({"path": self.path, **dict(self.headers)})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/scratch-credentials/"


@pytest.fixture
def peer() -> Iterator[callable]:
    started: list[Peer] = []

    def start(status: int, body: dict) -> Peer:
        started.append(Peer(status, body))
        return started[-1]

    yield start
    for p in started:
        p.server.shutdown()


CREDS = {
    "Version": 1,
    "AccessKeyId": "a",
    "SecretAccessKey": "s",
    "SessionToken": "t",
    "Expiration": "2030-01-01T00:00:00Z",
}


def test_client_prefers_the_worker_token_and_prints_credential_process_json(peer, capsys):
    p = peer(200, {**CREDS, "extra": "dropped"})
    env = {
        "PANGEO_SCRATCH_BROKER_URL": p.url,
        "PANGEO_SCRATCH_BROKER_TOKEN": "worker",
        "JUPYTERHUB_API_TOKEN": "server",
    }
    assert client.aws(client.fetch(env)) == CREDS
    assert p.requests[0]["path"] == "/services/scratch-credentials/api/credentials"
    assert p.requests[0]["Authorization"] == "token worker"


def test_client_refusal_is_one_line_and_not_retried(peer):
    p = peer(401, {"error": "the hub does not accept this token"})
    env = {"PANGEO_SCRATCH_BROKER_URL": p.url, "JUPYTERHUB_API_TOKEN": "gone"}
    with pytest.raises(client.BrokerError) as exc:
        client.fetch(env, sleep=lambda s: None)
    assert "refused (HTTP 401: the hub does not accept this token)" in str(exc.value)
    assert len(p.requests) == 1


def test_client_retries_a_broker_that_is_down_then_says_so():
    slept: list[float] = []
    env = {
        "PANGEO_SCRATCH_BROKER_URL": f"http://127.0.0.1:{free_port()}/services/x/",
        "JUPYTERHUB_API_TOKEN": "t",
    }
    refused = r"did not answer \(\[Errno 111\] Connection refused\)"
    with pytest.raises(client.BrokerError, match=refused):
        client.fetch(env, sleep=slept.append)
    assert slept == [0.5, 1.0]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "PANGEO_SCRATCH_BROKER_URL is not set"),
        ({"PANGEO_SCRATCH_BROKER_URL": "http://x/"}, "no token"),
    ],
)
def test_client_without_settings(env, message):
    with pytest.raises(client.BrokerError, match=message):
        client.fetch(env)


def test_client_refuses_a_non_s3_answer():
    with pytest.raises(client.BrokerError, match="missing"):
        client.aws({"access_token": "x"})


def test_client_main_prints_nothing_on_failure(monkeypatch, capsys):
    monkeypatch.delenv("PANGEO_SCRATCH_BROKER_URL", raising=False)
    assert client.main(["aws"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("scratch credentials: PANGEO_SCRATCH_BROKER_URL is not set")
    assert client.main(["nope"]) == 2


# -- the hub's pre-spawn check --------------------------------------------------------


async def test_spawn_check_passes_a_healthy_broker_and_refuses_otherwise(peer):
    from pangeo_cloud.hub.spawn import SpawnPreparationError, check_broker

    await check_broker({"url": "s3://b"})  # no broker configured: nothing to check
    healthy = peer(200, {"status": "ok"})
    await check_broker({"url": "s3://b", "broker": {"url": healthy.url}})
    assert healthy.requests[0]["path"] == "/services/scratch-credentials/api/health"

    broken = peer(503, {"error": "STS AssumeRole of arn:x refused: AccessDenied"})
    with pytest.raises(SpawnPreparationError) as exc:
        await check_broker({"url": "s3://b", "broker": {"url": broken.url}})
    assert "cannot issue storage credentials (HTTP 503" in str(exc.value)
    assert "AccessDenied" in str(exc.value)

    down = f"http://127.0.0.1:{free_port()}/services/scratch-credentials/"
    with pytest.raises(SpawnPreparationError, match="does not answer"):
        await check_broker({"url": "s3://b", "broker": {"url": down}})


# -- the service when the hub is down ---------------------------------------------


async def test_service_answers_one_line_when_the_hub_is_unreachable():
    from jupyterhub.services.auth import HubAuth
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    hub_auth = HubAuth(
        api_url=f"http://127.0.0.1:{free_port()}/hub/api", api_token="t", cache_max_age=0
    )
    broker = service.Broker(
        S3Provider("b", "arn:aws:iam::123456789012:role/scratch"), {"url": "s3://b"}, 60, hub_auth
    )
    port = free_port()
    server = service.make_app(broker, "/services/scratch-credentials/").listen(port, "127.0.0.1")
    try:
        with pytest.raises(HTTPClientError) as exc:
            await AsyncHTTPClient().fetch(
                f"http://127.0.0.1:{port}/services/scratch-credentials/api/credentials",
                headers={"Authorization": "token user-token"},
            )
    finally:
        server.stop()
    assert exc.value.code == 500
    assert json.loads(exc.value.response.body)["error"].startswith("Failed to connect to Hub API")


async def test_gcs_token_route_refuses_in_one_line_when_the_hub_is_unreachable():
    from google.oauth2.credentials import Credentials
    from jupyterhub.services.auth import HubAuth
    from tornado.httpclient import AsyncHTTPClient

    from pangeo_cloud.broker.gcs import GCSProvider

    hub_auth = HubAuth(
        api_url=f"http://127.0.0.1:{free_port()}/hub/api", api_token="t", cache_max_age=0
    )
    # The provider is never reached: authentication fails first.
    gcs = GCSProvider("bkt", Credentials(token="x"), f"http://127.0.0.1:{free_port()}/v1/token")
    brokers = {
        "gs": service.Broker(gcs, {"url": "gs://bkt"}, 60, hub_auth),
        "s3": service.Broker(S3Provider("b", "arn:aws:iam::1:role/s"), {"url": "s3://b"}, 60, None),
    }
    answers = {}
    for scheme, broker in brokers.items():
        port = free_port()
        app = service.make_app(broker, "/services/scratch-credentials/")
        server = app.listen(port, "127.0.0.1")
        try:
            answers[scheme] = await AsyncHTTPClient().fetch(
                f"http://127.0.0.1:{port}/services/scratch-credentials/api/token/gcs",
                method="POST",
                body="grant_type=refresh_token&refresh_token=user-token",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                raise_error=False,
            )
        finally:
            server.stop()
    assert answers["gs"].code == 500
    body = json.loads(answers["gs"].body)
    assert body["error"] == "invalid_grant"
    assert body["error_description"].startswith("Failed to connect to Hub API")
    assert answers["s3"].code == 404  # mounted for gs:// deployments only


def test_broker_env_per_scheme():
    from pangeo_cloud.scratch import broker_env

    broker = {
        "url": "http://b/services/scratch-credentials/",
        "awsConfigFile": "/etc/s/aws-config",
        "gcsCredentialsFile": "/etc/s/gcs-credentials.json",
    }
    assert broker_env({"url": "s3://x", "broker": broker}) == {
        "PANGEO_SCRATCH_BROKER_URL": broker["url"],
        "AWS_CONFIG_FILE": "/etc/s/aws-config",
    }
    assert broker_env({"url": "gs://x", "broker": broker}) == {
        "PANGEO_SCRATCH_BROKER_URL": broker["url"],
        "GOOGLE_APPLICATION_CREDENTIALS": "/etc/s/gcs-credentials.json",
        "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES": "1",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }
    without_file = {"url": broker["url"]}
    assert broker_env({"url": "gs://x", "broker": without_file}) == {
        "PANGEO_SCRATCH_BROKER_URL": broker["url"]
    }
    assert broker_env({"url": "gs://x"}) == {}
