"""Revocation: a user removed from the allowed GitHub team gets no new scratch credentials.

`pangeo-cloud up` with GitHub login against the GitHub stand-in
(:mod:`pangeo_cloud.testing.github`), from a copy of the repository whose
`local` deployment re-checks logins every 2 s instead of 300 (so that the test
sees the re-check without waiting minutes). ada logs in through the OAuth flow
and starts a server; her server's token and a workers'-style broker-only token
get credentials. Then the stand-in removes her from the team: at the next
re-check the hub refuses her tokens, and so does the broker.
"""

from __future__ import annotations

import os
import time

import pytest
from scratch_support import broker_get, hub_api

from pangeo_cloud.local import objectstore
from pangeo_cloud.testing.harness import HubUser, UpProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TEAM = "pangeo-data:scratch-users"


@pytest.fixture
def github_up(repo_copy, edit_yaml, tmp_path):
    from pangeo_cloud.local.runtime import LocalRuntimeError, find_proxy
    from pangeo_cloud.testing.github import GitHubStandIn

    try:
        find_proxy()
    except LocalRuntimeError as exc:
        pytest.skip(str(exc))
    if objectstore.find_minio() is None:
        pytest.skip("MinIO is not built (scripts/install-objectstore.sh)")
    edit_yaml(
        repo_copy.deployments / "local" / "values" / "common.yaml",
        "    config:\n",
        "    config:\n      Authenticator:\n        auth_refresh_age: 2\n",
    )
    with GitHubStandIn() as gh:
        gh.add_user("ada", teams=[TEAM])
        args = ["--github-client-id", gh.client_id, "--github-client-secret", gh.client_secret]
        args += ["--github-url", gh.url, "--github-allowed-team", TEAM]
        env = dict(os.environ, PANGEO_CLOUD_ROOT=str(repo_copy.root))
        up = UpProcess(data_dir=tmp_path / "up", extra_args=args, env=env).start(timeout=240)
        try:
            yield up, gh
        finally:
            up.stop(check=False)


def github_login(up: UpProcess, gh, name: str) -> HubUser:
    user = HubUser(up.url, name, "")
    gh.next_user = name
    resp = user.session.get(f"{up.url}hub/oauth_login?next=", timeout=60)
    assert resp.status_code == 200 and "/hub/login" not in resp.url, resp.url
    return user


def test_removal_from_the_team_stops_new_credentials(github_up):
    up, gh = github_up
    ada = github_login(up, gh, "ada")
    ada.spawn("small")
    ada.wait_ready()
    server_token = up.server_env("ada")["JUPYTERHUB_API_TOKEN"]
    scopes = {"scopes": ["access:services!service=scratch-credentials"]}
    worker_token = hub_api(up, "POST", "/users/ada/tokens", scopes)["token"]
    assert broker_get(up, server_token)[0] == 200
    assert broker_get(up, worker_token)[0] == 200

    gh.remove_from_team("ada", TEAM)
    deadline = time.monotonic() + 120
    tokens = {"server": server_token, "worker": worker_token}
    answers = {}
    while time.monotonic() < deadline:
        answers = {name: broker_get(up, token) for name, token in tokens.items()}
        if all(code == 401 for code, _ in answers.values()):
            break
        time.sleep(1)
    for code, message in answers.values():
        assert code == 401 and "does not accept this token" in message, answers
