"""`pangeo-cloud health` against hubs configured from the production deployments' values.

The hub is `pangeo-cloud up --deployment <cloud> --stage prod`: the merged values
of that stage, mapped as z2jh maps them and then configured by our own
``z2jh_entry.py``, so GitHub login (through the stand-in), ``refresh_pre_spawn``,
the membership re-check, group-restricted profiles and the services are all on,
as in the cluster. (The spawner and the gateway backend are the local ones: the
full Kubernetes path is the production-hub tier in tests/integration/prodhub.)

Before the service-user ticket, the check stopped at ``start-server`` with
``403 auth has expired for health-check-<id>``: a user created through the REST
API has no GitHub token to re-check. These tests also prove that the exemption
opens no door: without a valid ticket (none, forged, another user's, expired) a
REST-created user is refused exactly as before, whatever its name.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from pangeo_cloud.deploy.health import HealthOptions, run_health
from pangeo_cloud.hub.service_users import make_ticket
from pangeo_cloud.local.harness import UpProcess
from pangeo_cloud.testing.github import GitHubStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TEAM = "pangeo-data:health-test-team"
CLIENT_ID, CLIENT_SECRET = "health-test-client", "health-test-secret"


@pytest.fixture(scope="module", params=["gcp-us-central1-b", "aws-us-west-2"])
def prod_hub(request, tmp_path_factory):
    with GitHubStandIn() as github:
        up = UpProcess(
            tmp_path_factory.mktemp(f"up-{request.param}"),
            extra_args=[
                *("--deployment", request.param, "--stage", "prod"),
                *("--github-client-id", CLIENT_ID, "--github-client-secret", CLIENT_SECRET),
                *("--github-url", github.url, "--github-allowed-team", TEAM),
            ],
        ).start()
        try:
            yield up
        finally:
            up.stop(check=False)


def _admin(up: UpProcess) -> httpx.Client:
    token = up.secrets["health_check_token"]
    return httpx.Client(
        base_url=f"{up.url}hub/api/", headers={"Authorization": f"token {token}"}, timeout=30
    )


def test_health_passes_on_production_values(prod_hub) -> None:
    done = run_health(
        HealthOptions(
            prod_hub.url,
            prod_hub.secrets["health_check_token"],
            start_timeout=240,
            exec_timeout=300,
        ),
        out=print,
    )
    steps = [line.split()[1] for line in done]
    assert steps == [
        "hub",
        "create-user",
        "start-server",
        "server-ready",
        "user-token",
        "kernel",
        "scratch",
        "dask-gateway",
    ]
    assert "ticket of service health-check" in done[1]


def _spawn_status(api: httpx.Client, name: str, auth_state=None) -> httpx.Response:
    assert api.post(f"users/{name}").status_code == 201
    if auth_state is not None:
        assert api.patch(f"users/{name}", json={"auth_state": auth_state}).status_code == 200
    return api.post(f"users/{name}/server")


@pytest.mark.parametrize(
    "case", ["no-ticket", "forged", "other-user", "expired", "unknown-service"]
)
def test_rest_user_without_a_valid_ticket_is_refused(prod_hub, case) -> None:
    token = prod_hub.secrets["health_check_token"]
    # The same name pattern as the health check's own users: the name is no key.
    name = f"health-check-{secrets.token_hex(4)}"
    tickets = {
        "no-ticket": None,
        "forged": make_ticket("not-the-service-token", "health-check", name),
        "other-user": make_ticket(token, "health-check", name + "x"),
        "expired": make_ticket(token, "health-check", name, now=time.time() - 7200),
        "unknown-service": make_ticket(token, "jupyterhub-idle-culler", name),
    }
    with _admin(prod_hub) as api:
        try:
            r = _spawn_status(api, name, tickets[case])
            assert r.status_code == 403, r.text
            assert "auth has expired" in r.json()["message"]
            assert not api.get(f"users/{name}").json()["servers"]
        finally:
            api.delete(f"users/{name}/server")
            api.delete(f"users/{name}")
