"""The GCS scratch path end to end with real processes: hub, broker service, google-auth.

A real JupyterHub configured as the GCP prod stage (its `scratch-credentials`
service pointed at a broker on loopback), the real broker service process
(``python -m pangeo_cloud.broker.service``) with the GCS provider, whose own
identity comes from the stand-in of the GKE metadata server and whose token
exchange goes to the stand-in of Google's STS, and an unmodified
``google.auth.default()`` in a separate process with the environment a user's
server gets (:func:`pangeo_cloud.scratch.scratch_env`): the credentials file
the chart ships (``gcs-credentials.json`` beside ``google_client.py``) and the
user's hub token.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hub_process_support import CLIENT_ID, Hub, deployment_hub_values

from pangeo_cloud.broker import ACCESS_SCOPE, google_client
from pangeo_cloud.broker.gcs import access_boundary
from pangeo_cloud.ports import free_port
from pangeo_cloud.scratch import scratch_env, scratch_key_prefix
from pangeo_cloud.testing.github import GitHubStandIn
from pangeo_cloud.testing.google_metadata import GoogleMetadataStandIn
from pangeo_cloud.testing.google_sts import GoogleSTSStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SOURCE_TOKEN = "ya29.broker-workload-identity-token"
PREFIX = "/services/scratch-credentials/"
# What google-auth does at a user's first GCS call, in its own process.
GOOGLE_AUTH_PROBE = """
import json, google.auth
from google.auth.transport.requests import Request
creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
creds.refresh(Request())
print(json.dumps({"type": type(creds).__module__, "token": creds.token}))
"""


@dataclass
class Stack:
    hub: Hub
    github: GitHubStandIn
    sts: GoogleSTSStandIn
    metadata: GoogleMetadataStandIn
    broker_url: str
    scratch: dict
    client_dir: Path


def wait_healthy(url: str, broker: subprocess.Popen, log: Path) -> None:
    """Poll the broker's health check until it answers 200 (it probes the provider)."""
    deadline = time.monotonic() + 60
    answer = "no answer"
    while time.monotonic() < deadline:
        assert broker.poll() is None, f"the broker exited:\n{log.read_text()[-4000:]}"
        try:
            with urllib.request.urlopen(url + "api/health", timeout=30):
                return
        except urllib.error.HTTPError as exc:
            answer = f"{exc.code} {exc.read().decode()}"
        except OSError as exc:
            answer = str(exc)
        time.sleep(0.2)
    raise AssertionError(f"broker never healthy: {answer}\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def stack(launch, tmp_path_factory, request) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("gcs-broker")
    port = free_port()
    service_token = os.urandom(24).hex()
    values = deployment_hub_values(
        "gcp-us-central1-b",
        "prod",
        with_broker=True,
        # The broker runs on loopback, not as the cluster's Service; the hub
        # needs its token to accept the broker's questions about users' tokens.
        hub={
            "services": {
                "scratch-credentials": {
                    "url": f"http://127.0.0.1:{port}",
                    "apiToken": service_token,
                }
            }
        },
    )
    # Users log in through GitHub (the stand-in): the prod hub refuses the tokens of
    # users whose GitHub membership it never checked ("stale auth info").
    github = stack_github(values)
    request.addfinalizer(github.stop)
    hub = launch(
        base / "hub", values, spawner_class="kubespawner.KubeSpawner", github_url=github.url
    )
    broker_url = f"http://127.0.0.1:{port}{PREFIX}"
    scratch = dict(values["custom"]["pangeo"]["scratch"])
    # The ConfigMap pangeo-cloud-scratch-client as mounted into a user pod.
    client_dir = base / "scratch-client"
    client_dir.mkdir()
    shutil.copy(google_client.__file__, client_dir / "google_client.py")
    credentials = client_dir / "gcs-credentials.json"
    command = f"{shlex.quote(sys.executable)} -I -S {client_dir / 'google_client.py'} subject-token"
    info = google_client.external_account_info(google_client.token_url_from(broker_url), command)
    credentials.write_text(json.dumps(info))
    scratch["broker"] = {**scratch["broker"], "url": broker_url}
    scratch["broker"]["gcsCredentialsFile"] = str(credentials)

    with GoogleSTSStandIn() as sts, GoogleMetadataStandIn(SOURCE_TOKEN) as metadata:
        sts.add_source_token(SOURCE_TOKEN)
        config = base / "broker.json"
        config.write_text(
            json.dumps(
                {"scratch": scratch, "lifetime": 900, "provider": {"tokenUrl": sts.token_url}}
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCE_"))}
        env.update(
            metadata.environment(),
            CLOUDSDK_CONFIG=str(base / "no-gcloud"),  # no gcloud login may stand in
            JUPYTERHUB_API_URL=f"{hub.url}/hub/api",
            JUPYTERHUB_API_TOKEN=service_token,
            JUPYTERHUB_SERVICE_NAME="scratch-credentials",
            JUPYTERHUB_SERVICE_PREFIX=PREFIX,
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        )
        log = base / "broker.log"
        cmd = [sys.executable, "-m", "pangeo_cloud.broker.service", "--config", str(config)]
        broker = subprocess.Popen([*cmd, "--log", str(log)], env=env, start_new_session=True)
        try:
            wait_healthy(broker_url, broker, log)
            yield Stack(hub, github, sts, metadata, broker_url, scratch, client_dir)
        finally:
            broker.terminate()
            broker.wait(20)


def stack_github(values: dict) -> GitHubStandIn:
    """The GitHub stand-in with alice and bob in the deployment's users' team."""
    allowed = values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"]
    admins = values["custom"]["pangeo"]["auth"]["adminTeams"]
    team = next(t for t in allowed if t not in admins)
    github = GitHubStandIn(client_id=CLIENT_ID).start()
    for name in ("alice", "bob"):
        github.add_user(name, teams=[team])
    return github


def user_token(stack: Stack, name: str, scopes: list[str]) -> str:
    """``name`` logs in with GitHub, then gets an API token with exactly ``scopes``."""
    stack.github.next_user = name
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        page = browser.get(f"{stack.hub.url}/hub/oauth_login", params={"next": "/hub/home"})
    assert page.status_code == 200 and page.url.path == "/hub/home", page.url
    hub = stack.hub
    reply = hub.api("POST", f"/users/{name}/tokens", json={"scopes": scopes})
    reply.raise_for_status()
    return reply.json()["token"]


def google_auth_in_a_server(
    stack: Stack, name: str, token: str, variable: str = "JUPYTERHUB_API_TOKEN"
) -> subprocess.CompletedProcess:
    """google.auth.default() in a process with a user server's (or Dask worker's) environment.

    Workers carry their cluster's broker-only token as PANGEO_SCRATCH_BROKER_TOKEN
    (pangeo_cloud.gateway.scratch_token) and the same scratch_env otherwise.
    """
    env = {"PATH": os.environ["PATH"], "HOME": str(stack.client_dir)}
    env["CLOUDSDK_CONFIG"] = str(stack.client_dir / "no-gcloud")
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    env.update(scratch_env(stack.scratch, name))
    env[variable] = token
    return subprocess.run(
        [sys.executable, "-c", GOOGLE_AUTH_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_health_probe_exchanges_for_the_probe_prefix_only(stack: Stack) -> None:
    # wait_healthy got a 200: the GCS provider minted a token for the probe prefix,
    # from the source token the metadata server handed the broker.
    assert stack.metadata.token_requests >= 1
    probes = [e for e in stack.sts.exchanges if e.status == 200]
    assert probes and probes[0].boundary == access_boundary("pangeo-scratch", "-broker-health")
    assert probes[0].form["subject_token"] == SOURCE_TOKEN


def test_google_auth_gets_a_token_bounded_to_the_users_prefix(stack: Stack) -> None:
    token = user_token(stack, "alice", [ACCESS_SCOPE])
    result = google_auth_in_a_server(stack, "alice", token)
    assert result.returncode == 0, result.stderr[-4000:]
    reply = json.loads(result.stdout.splitlines()[-1])
    assert reply["type"] == "google.auth.pluggable"  # the external_account file was used
    issued = stack.sts.token_info(reply["token"])
    assert issued is not None, "the token is not one the STS issued"
    prefix = scratch_key_prefix(stack.scratch, "alice")
    assert prefix == "alice"
    assert issued.boundary == access_boundary("pangeo-scratch", prefix)
    assert issued.subject_token == SOURCE_TOKEN


def test_a_dask_workers_broker_token_gets_the_same_boundary(stack: Stack) -> None:
    token = user_token(stack, "alice", [ACCESS_SCOPE])
    result = google_auth_in_a_server(stack, "alice", token, "PANGEO_SCRATCH_BROKER_TOKEN")
    assert result.returncode == 0, result.stderr[-4000:]
    issued = stack.sts.token_info(json.loads(result.stdout.splitlines()[-1])["token"])
    assert issued is not None
    assert issued.boundary == access_boundary("pangeo-scratch", "alice")


def test_a_token_without_the_broker_scope_is_refused(stack: Stack) -> None:
    token = user_token(stack, "bob", ["read:users:name!user=bob"])
    before = len(stack.sts.exchanges)
    result = google_auth_in_a_server(stack, "bob", token)
    assert result.returncode != 0
    assert f"this token lacks the scope {ACCESS_SCOPE}" in result.stderr, result.stderr[-4000:]
    # Refused before the provider: no token was minted for anyone.
    assert len(stack.sts.exchanges) == before
