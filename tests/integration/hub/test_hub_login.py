"""GitHub team login, admins, refusals and the profile form, end to end over HTTP.

A real JupyterHub (with configurable-http-proxy) runs the real
GitHubOAuthenticator against the GitHub stand-in, and the real KubeSpawner
renders the profile form; nothing here needs Kubernetes, because no server is
started: every spawn attempt in this module is one that must be refused.
"""

from __future__ import annotations

import time
from contextlib import closing

import httpx
import pytest
from hub_process_support import chart_hub_values, form_action, page_text

from pangeo_cloud.testing.github import GitHubStandIn

pytestmark = pytest.mark.integration

HELP_URL = "https://example.org/ask-for-access"
USERS_TEAM = "pangeo-data:users"
ADMIN_TEAM = "pangeo-data:operators"
GPU_TEAM = "pangeo-data:gpu-users"
GPU_PROFILE = {
    "display_name": "GPU",
    "slug": "gpu",
    "description": "One NVIDIA T4, for members of the GPU team only.",
    "allowed_groups": [GPU_TEAM],
    "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "1"}},
}


def values() -> dict:
    base = chart_hub_values()
    return chart_hub_values(
        custom={
            "pangeo": {
                "scratch": {"url": "gs://pangeo-scratch-test", "project": "pangeo-test"},
                "auth": {"adminTeams": [ADMIN_TEAM], "accessHelpUrl": HELP_URL},
            }
        },
        hub={
            "config": {
                "GitHubOAuthenticator": {
                    "allowed_organizations": [USERS_TEAM, ADMIN_TEAM],
                    # Short, so that a membership change is seen within the test.
                    "auth_refresh_age": 2,
                },
            }
        },
        singleuser={"profileList": base["singleuser"]["profileList"] + [GPU_PROFILE]},
        cull={"enabled": False},
    )


@pytest.fixture(scope="module")
def github():
    # One team per page, so the real authenticator has to follow Link headers.
    with GitHubStandIn(client_id="pangeo-test-client", max_per_page=1) as gh:
        gh.add_user("alice", teams=[USERS_TEAM])
        gh.add_user("gary", teams=[USERS_TEAM, GPU_TEAM])
        gh.add_user("olivia", teams=[ADMIN_TEAM])
        gh.add_user("oscar", orgs=["pangeo-data"], teams=["pangeo-data:other-team"])
        gh.add_user("dave", teams=[USERS_TEAM])
        gh.add_user("erin", teams=[USERS_TEAM])
        yield gh


@pytest.fixture(scope="module")
def hub(github, launch, tmp_path_factory):
    hub = launch(
        tmp_path_factory.mktemp("login-hub"),
        values(),
        spawner_class="kubespawner.KubeSpawner",
        github_url=github.url,
    )
    return hub


def login(hub, github, user: str) -> tuple[httpx.Client, httpx.Response]:
    """A fresh browser session logging in with GitHub as `user`."""
    client = httpx.Client(follow_redirects=True, timeout=30)
    github.next_user = user
    response = client.get(f"{hub.url}/hub/oauth_login", params={"next": "/hub/spawn"})
    return client, response


def test_team_member_logs_in_and_sees_profiles(hub, github):
    client, r = login(hub, github, "alice")
    with closing(client):
        assert r.status_code == 200, r.text
        assert r.url.path.startswith("/hub/spawn")
        text = page_text(r)
        for profile in chart_hub_values()["singleuser"]["profileList"]:
            assert profile["display_name"] in text
            assert profile["description"] in text
        assert "GPU" not in text  # restricted to the GPU team
    model = hub.user("alice")
    assert model["groups"] == [USERS_TEAM]
    assert model["admin"] is False
    assert model["servers"] == {}


def test_group_member_is_offered_the_restricted_profile(hub, github):
    client, r = login(hub, github, "gary")
    with closing(client):
        assert r.status_code == 200, r.text
        text = page_text(r)
        assert GPU_PROFILE["display_name"] in text and GPU_PROFILE["description"] in text
        assert "allowed_groups" not in r.text  # our key does not leak into the page
    # Both teams arrived, one per page of GET /user/teams.
    assert sorted(hub.user("gary")["groups"]) == [GPU_TEAM, USERS_TEAM]
    assert ("GET", "/api/v3/user/teams?per_page=1&page=2") in github.requests


def test_org_member_outside_the_teams_is_refused_with_explanation(hub, github):
    client, r = login(hub, github, "oscar")
    with closing(client):
        assert r.status_code == 403
        text = page_text(r)
        assert "Access denied" in text
        assert (
            "Sorry, your GitHub account is not a member of any GitHub team allowed to use "
            f"this hub ({ADMIN_TEAM}, {USERS_TEAM}), so you cannot log in." in text
        )
        assert f'<a href="{HELP_URL}">' in r.text
        assert f"To ask for access, use {HELP_URL}" in text
    assert hub.api("GET", "/users/oscar").status_code == 404
    assert "User oscar is not part of allowed_organizations" in hub.log()


def test_admin_team_member_is_admin(hub, github):
    client, r = login(hub, github, "olivia")
    client.close()
    assert r.status_code == 200, r.text
    model = hub.user("olivia")
    assert model["admin"] is True
    assert model["groups"] == [ADMIN_TEAM]


def test_user_removed_from_team_is_refused_at_next_login(hub, github):
    client, r = login(hub, github, "dave")
    client.close()
    assert r.status_code == 200, r.text
    github.remove_from_team("dave", USERS_TEAM)
    try:
        client, r = login(hub, github, "dave")
        client.close()
        assert r.status_code == 403
        assert "not a member of any GitHub team allowed" in page_text(r)
    finally:
        github.add_to_team("dave", USERS_TEAM)


def test_user_removed_from_team_loses_a_running_login(hub, github):
    client, r = login(hub, github, "erin")
    try:
        assert r.status_code == 200, r.text
        assert client.get(f"{hub.url}/hub/home").status_code == 200
        github.remove_from_team("erin", USERS_TEAM)
        time.sleep(3)  # past auth_refresh_age: the next request refreshes the login
        r = client.get(f"{hub.url}/hub/home", follow_redirects=False)
        assert r.status_code == 302 and "/hub/login" in r.headers["location"], r.text
        assert "erin is no longer in an allowed GitHub team" in hub.log()
    finally:
        client.close()
        github.add_to_team("erin", USERS_TEAM)


@pytest.mark.parametrize("choice", ["gpu", "enormous"])
def test_form_value_naming_no_offered_profile_is_refused(hub, github, choice):
    client, r = login(hub, github, "alice")
    with closing(client):
        assert r.status_code == 200
        action = form_action(r)
        assert action.startswith(f"{hub.url}/hub/spawn")
        r = client.post(action, data={"profile": choice})
        text = page_text(r)
        assert (
            f"Error: The server size '{choice}' is not offered to you; please choose one of: "
            "Small (small), Medium (medium), Large (large), Huge (huge)." in text
        ), text[:2000]
        assert "Small" in text  # the form is shown again
    model = hub.user("alice")
    assert model["servers"] == {} and model["pending"] is None


def test_api_spawn_of_restricted_profile_is_refused(hub, github):
    client, r = login(hub, github, "alice")
    client.close()
    assert r.status_code == 200
    r = hub.api("POST", "/users/alice/server", json={"profile": "gpu"})
    assert r.status_code == 400, r.text
    assert "The server size 'gpu' is not offered to you" in r.json()["message"]
    assert hub.user("alice")["servers"] == {}
    assert "Refusing spawn for alice" in hub.log()
