"""The `health-check` service's token on a real hub: only its own throw-away users.

The hub is configured from gcp-us-central1-b's production values, so the
service and its role are exactly what the chart renders (the role pinned by
pangeo-cloud's generated layer, whatever the secrets file says). Users run as
real `jupyterhub-singleuser` processes (SimpleLocalProcessSpawner, as in the
other hub tests: no Kubernetes here).

Proved here, with the hub's own answers:

- the token can create a user only through the hub's endpoint
  (``POST /hub/api/pangeo/service-users``), only under a new ``health-check-``
  name, can then start its server, take a short-lived token of it for that
  server alone (``POST /hub/api/pangeo/service-users/<name>/tokens``), reach
  the server with that token, and delete the user;
- it can neither read, start, stop, delete, rename nor mint a token for any
  other user (a real user with a running server, an admin), nor reach another
  user's server, nor create a user through the normal API;
- the token it mints for its own user cannot act for anyone else either.
"""

from __future__ import annotations

import httpx
import pytest
from hub_process_support import deployment_hub_values, launch_hub

from pangeo_cloud.hub.service_users import make_ticket

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DEPLOYMENT = "gcp-us-central1-b"
SERVICE = "health-check"
ADMIN = "ops-admin"  # a hub admin, as adminTeams members are
ALICE = "alice"  # a real user with a running server
SERVER_TIMEOUT = 60
# What the hub says the service's token may do (its role's scopes, expanded):
# written out here, so any widening of the role fails this test.
EXPECTED_SCOPES = [
    "custom:pangeo-cloud:create:service-users",
    "delete:servers!group=health-check-users",
    "delete:users!group=health-check-users",
    "list:users!group=health-check-users",
    "read:servers!group=health-check-users",
    "read:users!group=health-check-users",
    "read:users:activity!group=health-check-users",
    "read:users:groups!group=health-check-users",
    "read:users:name!group=health-check-users",
    "servers!group=health-check-users",
]

AFTER_ENTRY = f"""
import sys
c.Authenticator.admin_users = {{{ADMIN!r}}}
homes = os.path.join(settings["dir"], "homes")
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(homes, "{{username}}")
c.Spawner.cmd = [os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]
# Test machines often run as root, which jupyter-server refuses by default.
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.start_timeout = {SERVER_TIMEOUT}
c.Spawner.http_timeout = {SERVER_TIMEOUT}
"""


class Client:
    """The hub's REST API (and its proxy) with one token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"token {token}"}

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(
            method, f"{self.url}/hub/api{path}", headers=self.headers, timeout=30, **kwargs
        )

    def server(self, user: str, path: str = "api/status") -> httpx.Response:
        return httpx.get(
            f"{self.url}/user/{user}/{path}",
            headers=self.headers,
            timeout=30,
            follow_redirects=False,
        )


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    values = deployment_hub_values(DEPLOYMENT, "prod")
    hub = launch_hub(
        tmp_path_factory.mktemp("health-role"),
        values,
        spawner_class="jupyterhub.spawner.SimpleLocalProcessSpawner",
        after_entry=AFTER_ENTRY,
    )
    hub.service_token = values["hub"]["services"][SERVICE]["apiToken"]
    admin = Client(hub.url, hub.token)  # the harness's own admin service
    # alice: a user the service did not make, with a running server. She never
    # logged in here, so the harness's admin writes a ticket for her to pass
    # the pre-spawn re-check (it does not put her in the service's group).
    assert admin.api("POST", f"/users/{ALICE}").status_code == 201
    ticket = make_ticket(hub.service_token, SERVICE, ALICE)
    assert admin.api("PATCH", f"/users/{ALICE}", json={"auth_state": ticket}).status_code == 200
    assert admin.api("POST", f"/users/{ALICE}/server").status_code in (201, 202)
    hub.wait_for(lambda: _ready(admin, ALICE), SERVER_TIMEOUT, "alice's server")
    try:
        yield hub
    finally:
        hub.stop()


def _ready(client: Client, user: str) -> bool:
    model = client.api("GET", f"/users/{user}").json()
    return bool((model.get("servers") or {}).get("", {}).get("ready"))


def test_the_role_is_the_narrow_one(hub):
    me = Client(hub.url, hub.service_token).api("GET", "/user").json()
    assert me["kind"] == "service" and me["name"] == SERVICE
    assert sorted(me["scopes"]) == EXPECTED_SCOPES, "\n".join(sorted(me["scopes"]))


def test_own_throwaway_user_round_trip(hub):
    service = Client(hub.url, hub.service_token)
    r = service.api("POST", "/pangeo/service-users", json={"lifetime": 600})
    assert r.status_code == 201, r.text
    created = r.json()
    name = created["name"]
    assert name.startswith("health-check-") and created["group"] == "health-check-users"
    assert created["service"] == SERVICE and created["ticket"] is True
    try:
        assert service.api("POST", f"/users/{name}/server").status_code in (201, 202)
        hub.wait_for(lambda: _ready(service, name), SERVER_TIMEOUT, f"{name}'s server")
        path = f"/pangeo/service-users/{name}/tokens"
        r = service.api("POST", path, json={"expires_in": 600, "note": "test"})
        assert r.status_code == 201, r.text
        assert r.json()["scopes"] == [f"access:servers!user={name}"]
        user = Client(hub.url, r.json()["token"])
        assert user.server(name).status_code == 200
        # ... and that token is no key to anyone else.
        assert user.server(ALICE).status_code in (403, 404)
        assert user.api("GET", f"/users/{ALICE}").status_code in (403, 404)
        assert user.api("POST", f"/users/{ADMIN}/tokens", json={}).status_code == 403
        assert user.api("POST", f"/users/{name}/tokens", json={}).status_code == 403
        # The list shows the service's own users only.
        listed = [u["name"] for u in service.api("GET", "/users").json()]
        assert name in listed and ALICE not in listed and ADMIN not in listed
    finally:
        assert service.api("DELETE", f"/users/{name}").status_code == 204
    assert service.api("GET", f"/users/{name}").status_code == 404


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", f"/users/{ALICE}", None),
        ("PATCH", f"/users/{ALICE}", {"name": "health-check-alice"}),
        ("POST", f"/users/{ALICE}/tokens", {}),
        ("DELETE", f"/users/{ALICE}/server", None),
        ("DELETE", f"/users/{ALICE}", None),
        ("POST", f"/users/{ADMIN}/tokens", {}),
        ("POST", f"/users/{ADMIN}/server", None),
        ("DELETE", f"/users/{ADMIN}", None),
        ("PATCH", f"/users/{ADMIN}", {"admin": False}),
        ("POST", "/users/health-check-direct", None),  # the normal API: admin:users
        ("POST", "/users", {"usernames": ["health-check-direct2"]}),
        ("POST", "/groups/health-check-users/users", {"users": [ALICE]}),
        # The hub's own endpoint hands out tokens of the group's members only.
        ("POST", f"/pangeo/service-users/{ALICE}/tokens", {}),
        ("POST", f"/pangeo/service-users/{ADMIN}/tokens", {}),
    ],
)
def test_no_other_user_is_reachable(hub, method, path, body):
    r = Client(hub.url, hub.service_token).api(method, path, json=body)
    assert r.status_code in (403, 404), (method, path, r.status_code, r.text)


def test_another_users_server_is_not_reachable(hub):
    r = Client(hub.url, hub.service_token).server(ALICE)
    assert r.status_code == 403, r.text
    admin = Client(hub.url, hub.token)
    assert _ready(admin, ALICE)  # still running, untouched


@pytest.mark.parametrize(
    "body,status,message",
    [
        ({"name": ALICE}, 400, "is not allowed: throw-away users are named health-check-"),
        ({"name": "health-check-Upper"}, 400, "is not allowed"),
        ({"lifetime": "long"}, 400, "lifetime must be a positive number of seconds"),
    ],
)
def test_the_endpoint_refuses_other_names(hub, body, status, message):
    r = Client(hub.url, hub.service_token).api("POST", "/pangeo/service-users", json=body)
    assert r.status_code == status and message in r.json()["message"], r.text


def test_tokens_are_short_lived(hub):
    service = Client(hub.url, hub.service_token)
    name = service.api("POST", "/pangeo/service-users").json()["name"]
    try:
        path = f"/pangeo/service-users/{name}/tokens"
        r = service.api("POST", path, json={"expires_in": 7200})
        assert r.status_code == 400 and "expires_in must be 1 to 3600 seconds" in r.text
    finally:
        service.api("DELETE", f"/users/{name}")


def test_an_existing_name_is_refused_not_taken_over(hub):
    service = Client(hub.url, hub.service_token)
    name = service.api("POST", "/pangeo/service-users").json()["name"]
    try:
        r = service.api("POST", "/pangeo/service-users", json={"name": name})
        assert r.status_code == 409
        assert r.json()["message"] == (
            f"user {name} already exists: the hub creates throw-away users only "
            "under new names (choose another name)"
        )
    finally:
        service.api("DELETE", f"/users/{name}")


def test_only_holders_of_the_scope_may_create(hub):
    # The harness's admin service has admin:users but not the custom scope;
    # a user's own token neither.
    r = Client(hub.url, hub.token).api("POST", "/pangeo/service-users")
    assert r.status_code == 403 and "custom:pangeo-cloud:create:service-users" in r.text
    r = Client(hub.url, "not-a-token").api("POST", "/pangeo/service-users")
    assert r.status_code == 403
