"""GitHub team login, admins, refusals and the profile form, end to end over HTTP.

The hub is configured from each cloud's production values (gcp and aws
`prod`: their teams, admin teams, help URL, profiles including the
operators-only one), mapped as z2jh maps them and then by our own entry
script. A real JupyterHub (with configurable-http-proxy) runs the real
GitHubOAuthenticator against the GitHub stand-in, and the real KubeSpawner
renders the profile form; nothing here needs Kubernetes, because no server is
started: every spawn attempt in this module is one that must be refused.
"""

from __future__ import annotations

import time
from contextlib import closing

import httpx
import pytest
from hub_process_support import deployment_hub_values, form_action, page_text

from pangeo_cloud.testing.github import GitHubStandIn

pytestmark = pytest.mark.integration

RESTRICTED = "huge"  # the production profile offered to the admin team only


def values(deployment: str) -> dict:
    # Only override: a short auth_refresh_age, so that a membership change is
    # seen within the test (production: 300 s).
    return deployment_hub_values(
        deployment,
        "prod",
        hub={"config": {"GitHubOAuthenticator": {"auth_refresh_age": 2}}},
    )


@pytest.fixture(scope="module", params=["gcp-us-central1-b", "aws-us-west-2"])
def prod_values(request) -> dict:
    return values(request.param)


@pytest.fixture(scope="module")
def teams(prod_values) -> dict:
    """The deployment's own teams: users (not admin) and the admin team."""
    allowed = prod_values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"]
    admin = prod_values["custom"]["pangeo"]["auth"]["adminTeams"][0]
    users = next(
        t for t in allowed if t not in prod_values["custom"]["pangeo"]["auth"]["adminTeams"]
    )
    restricted = next(
        p for p in prod_values["singleuser"]["profileList"] if p["slug"] == RESTRICTED
    )
    assert restricted["allowed_groups"] == [admin]
    return {"users": users, "admin": admin, "allowed": sorted(allowed), "restricted": restricted}


@pytest.fixture(scope="module")
def github(teams):
    users, admin = teams["users"], teams["admin"]
    org = users.split(":")[0]
    # One team per page, so the real authenticator has to follow Link headers.
    with GitHubStandIn(client_id="pangeo-test-client", max_per_page=1) as gh:
        gh.add_user("alice", teams=[users])
        gh.add_user("gary", teams=[users, admin])
        gh.add_user("olivia", teams=[admin])
        gh.add_user("oscar", orgs=[org], teams=[f"{org}:other-team"])
        gh.add_user("dave", teams=[users])
        gh.add_user("erin", teams=[users])
        yield gh


@pytest.fixture(scope="module")
def hub(github, launch, prod_values, tmp_path_factory):
    hub = launch(
        tmp_path_factory.mktemp("login-hub"),
        prod_values,
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


def test_team_member_logs_in_and_sees_profiles(hub, github, prod_values, teams):
    client, r = login(hub, github, "alice")
    with closing(client):
        assert r.status_code == 200, r.text
        assert r.url.path.startswith("/hub/spawn")
        text = page_text(r)
        for profile in prod_values["singleuser"]["profileList"]:
            if profile["slug"] == RESTRICTED:
                assert profile["description"] not in text  # for the admin team only
            else:
                assert profile["display_name"] in text
                assert profile["description"] in text
    model = hub.user("alice")
    assert model["groups"] == [teams["users"]]
    assert model["admin"] is False
    assert model["servers"] == {}


def test_group_member_is_offered_the_restricted_profile(hub, github, teams):
    client, r = login(hub, github, "gary")
    with closing(client):
        assert r.status_code == 200, r.text
        text = page_text(r)
        restricted = teams["restricted"]
        assert restricted["display_name"] in text and restricted["description"] in text
        assert "allowed_groups" not in r.text  # our key does not leak into the page
    # Both teams arrived, one per page of GET /user/teams.
    assert sorted(hub.user("gary")["groups"]) == sorted([teams["admin"], teams["users"]])
    assert ("GET", "/api/v3/user/teams?per_page=1&page=2") in github.requests


def test_org_member_outside_the_teams_is_refused_with_explanation(hub, github, prod_values, teams):
    help_url = prod_values["custom"]["pangeo"]["auth"]["accessHelpUrl"]
    client, r = login(hub, github, "oscar")
    with closing(client):
        assert r.status_code == 403
        text = page_text(r)
        assert "Access denied" in text
        # The allowed teams, except the admin team (no way in for a newcomer).
        shown = ", ".join(t for t in teams["allowed"] if t != teams["admin"])
        assert (
            "Sorry, your GitHub account is not a member of any GitHub team allowed to use "
            f"this hub ({shown}), so you cannot log in." in text
        )
        assert teams["admin"] not in text
        assert f'<a href="{help_url}">' in r.text
        assert f"To ask for access, use {help_url}" in text
    assert hub.api("GET", "/users/oscar").status_code == 404
    assert "User oscar is not part of allowed_organizations" in hub.log()


def test_admin_team_member_is_admin(hub, github, teams):
    client, r = login(hub, github, "olivia")
    client.close()
    assert r.status_code == 200, r.text
    model = hub.user("olivia")
    assert model["admin"] is True
    assert model["groups"] == [teams["admin"]]


def test_user_removed_from_team_is_refused_at_next_login(hub, github, teams):
    client, r = login(hub, github, "dave")
    client.close()
    assert r.status_code == 200, r.text
    github.remove_from_team("dave", teams["users"])
    try:
        client, r = login(hub, github, "dave")
        client.close()
        assert r.status_code == 403
        assert "not a member of any GitHub team allowed" in page_text(r)
    finally:
        github.add_to_team("dave", teams["users"])


def test_user_removed_from_team_loses_a_running_login(hub, github, teams):
    client, r = login(hub, github, "erin")
    try:
        assert r.status_code == 200, r.text
        assert client.get(f"{hub.url}/hub/home").status_code == 200
        github.remove_from_team("erin", teams["users"])
        time.sleep(3)  # past auth_refresh_age: the next request refreshes the login
        r = client.get(f"{hub.url}/hub/home", follow_redirects=False)
        assert r.status_code == 302 and "/hub/login" in r.headers["location"], r.text
        assert "erin is no longer in an allowed GitHub team" in hub.log()
    finally:
        client.close()
        github.add_to_team("erin", teams["users"])


@pytest.mark.parametrize("choice", [RESTRICTED, "enormous"])
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
            "Small (small), Medium (medium), Large (large)." in text
        ), text[:2000]
        assert "Small" in text  # the form is shown again
    model = hub.user("alice")
    assert model["servers"] == {} and model["pending"] is None


def test_api_spawn_of_restricted_profile_is_refused(hub, github):
    client, r = login(hub, github, "alice")
    client.close()
    assert r.status_code == 200
    # z2jh's slow_spawn_timeout 0 is on: the refusal still comes before any spawn.
    r = hub.api("POST", "/users/alice/server", json={"profile": RESTRICTED})
    assert r.status_code == 400, r.text
    assert f"The server size '{RESTRICTED}' is not offered to you" in r.json()["message"]
    assert hub.user("alice")["servers"] == {}
    assert "Refusing spawn for alice" in hub.log()
