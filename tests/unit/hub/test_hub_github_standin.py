"""The GitHub stand-in speaks the protocol GitHubOAuthenticator relies on."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from pangeo_cloud.testing.github import GitHubStandIn


@pytest.fixture
def gh():
    with GitHubStandIn(max_per_page=2) as standin:
        yield standin


def login(gh, user: str) -> str:
    r = httpx.get(
        f"{gh.url}/login/oauth/authorize",
        params={
            "client_id": gh.client_id,
            "redirect_uri": "http://hub.example/hub/oauth_callback?x=1",
            "state": "s1",
            "scope": "read:org",
            "login": user,
        },
    )
    assert r.status_code == 302
    target = urlparse(r.headers["Location"])
    query = parse_qs(target.query)
    assert target.netloc == "hub.example" and query["state"] == ["s1"] and query["x"] == ["1"]
    r = httpx.post(
        f"{gh.url}/login/oauth/access_token",
        data={
            "client_id": gh.client_id,
            "client_secret": gh.client_secret,
            "code": query["code"][0],
        },
        headers={"Accept": "application/json"},
    )
    token = r.json()
    assert token["token_type"] == "bearer" and token["scope"] == "read:org"
    # A code is single use.
    again = httpx.post(
        f"{gh.url}/login/oauth/access_token",
        data={
            "client_id": gh.client_id,
            "client_secret": gh.client_secret,
            "code": query["code"][0],
        },
        headers={"Accept": "application/json"},
    )
    assert again.json() == {"error": "bad_verification_code"}
    return token["access_token"]


def test_oauth_user_teams_and_membership(gh):
    gh.add_user("alice", teams=["pangeo-data:users", "pangeo-data:gpu", "other:x"])
    gh.add_user("bob", orgs=["pangeo-data"])
    token = login(gh, "alice")
    api = f"{gh.url}/api/v3"
    headers = {"Authorization": f"token {token}"}
    user = httpx.get(f"{api}/user", headers=headers).json()
    assert user["login"] == "alice" and user["email"] == "alice@example.org" and user["id"]
    assert httpx.get(f"{api}/user").status_code == 401

    teams, url, pages = [], f"{api}/user/teams?per_page=100", 0
    while url:
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        teams += r.json()
        pages += 1
        nxt = [p for p in r.headers.get("Link", "").split(", ") if 'rel="next"' in p]
        url = nxt[0][1 : nxt[0].index(">")] if nxt else None
    assert pages == 2
    assert sorted(f"{t['organization']['login']}:{t['slug']}" for t in teams) == [
        "other:x",
        "pangeo-data:gpu",
        "pangeo-data:users",
    ]

    def status(path):
        return httpx.get(f"{api}{path}", headers=headers).status_code

    assert status("/orgs/pangeo-data/teams/users/members/alice") == 204
    assert status("/orgs/pangeo-data/teams/users/members/bob") == 404
    assert status("/orgs/pangeo-data/members/bob") == 204
    assert status("/orgs/nowhere/members/bob") == 404
    gh.remove_from_team("alice", "pangeo-data:users")
    assert status("/orgs/pangeo-data/teams/users/members/alice") == 404


def test_next_user_and_unknown_user(gh):
    gh.add_user("carol")
    gh.next_user = "carol"
    params = {"client_id": gh.client_id, "redirect_uri": "http://h/cb", "state": "s"}
    r = httpx.get(f"{gh.url}/login/oauth/authorize", params=params)
    assert r.status_code == 302
    gh.next_user = "nobody"
    assert httpx.get(f"{gh.url}/login/oauth/authorize", params=params).status_code == 404
    bad = dict(params, client_id="wrong")
    assert httpx.get(f"{gh.url}/login/oauth/authorize", params=bad).status_code == 404
