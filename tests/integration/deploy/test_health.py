"""`pangeo-cloud health` against hubs configured from the production deployments' values.

The hub is `pangeo-cloud up --deployment <cloud> --stage prod`: that stage's
merged values, mapped as z2jh maps them and then configured by our own
``z2jh_entry.py``, so GitHub login (through the stand-in), ``refresh_pre_spawn``,
the membership re-check, group-restricted profiles and the services (Dask
Gateway, the idle culler, the health-check service) are all on, as in the
cluster. The spawner, the gateway backend and the scratch store are the local
ones (real processes, MinIO); the full Kubernetes path is the production-hub
tier (tests/integration/prodhub).

Before the service-user ticket, the check stopped at ``start-server`` with
``403 auth has expired for health-check-<id>``: a user created through the REST
API has no GitHub token to re-check. These tests also prove that the exemption
opens no door: without a valid ticket (none, forged, another user's, expired, of
another service) a REST-created user is refused exactly as before, whatever
its name.
"""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from pangeo_cloud.deploy.health import STEPS, HealthError, HealthOptions, Retry, run_health
from pangeo_cloud.hub.service_users import make_ticket
from pangeo_cloud.testing.github import GitHubStandIn
from pangeo_cloud.testing.harness import UpProcess

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
        up.deployment = request.param
        up.token = up.secrets["health_check_token"]
        try:
            yield up
        finally:
            up.stop(check=False)


def _admin(up: UpProcess) -> httpx.Client:
    # The run's local-admin service: the health-check token reaches only its own
    # throw-away users, and these tests look at (and make) others.
    token = up.secrets["admin_token"]
    return httpx.Client(
        base_url=f"{up.url}hub/api/", headers={"Authorization": f"token {token}"}, timeout=30
    )


def _users(up: UpProcess) -> list[str]:
    with _admin(up) as api:
        return [u["name"] for u in api.get("users").json()]


def test_every_step_passes_and_nothing_is_left(prod_hub) -> None:
    lines: list[str] = []
    done = run_health(
        HealthOptions(prod_hub.url, prod_hub.token, start_timeout=240, exec_timeout=300),
        out=lines.append,
    )
    assert [line.split()[1] for line in done] == list(STEPS), lines
    assert "ticket of service health-check" in done[STEPS.index("create-user")]
    scratch = next(line for line in done if line.split()[1] == "scratch")
    assert "/health-2dcheck-" in scratch  # the escaped name's own prefix
    dask = next(line for line in done if line.split()[1] == "dask-gateway")
    assert "worker PANGEO_SCRATCH=" in dask and "/health-2dcheck-" in dask
    assert lines[-1].startswith("ok   cleanup")
    assert not [u for u in _users(prod_hub) if u.startswith("health-check-")]


def test_failing_step_is_named_and_cleaned_up(prod_hub) -> None:
    lines: list[str] = []
    with pytest.raises(HealthError) as info:
        run_health(
            HealthOptions(
                prod_hub.url,
                prod_hub.token,
                user="health-check-badprofile",
                profile="no-such-size",
                dask=False,
                start_timeout=120,
            ),
            out=lines.append,
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("health check failed at step 'start-server'")
    assert "HTTP 400" in message and "'no-such-size' is not offered to you" in message
    assert lines[-1].startswith("ok   cleanup")
    assert "health-check-badprofile" not in _users(prod_hub)


def test_bad_token_fails_at_the_first_step(prod_hub) -> None:
    with pytest.raises(HealthError, match="step 'hub'.*rejected the token"):
        run_health(
            HealthOptions(prod_hub.url, "not-a-token", retry=Retry(attempts=1)),
            out=lambda _: None,
        )


def test_cli(prod_hub, repo_paths, capsys, monkeypatch) -> None:
    import pangeo_cloud.cli as cli

    monkeypatch.setenv("PANGEO_HEALTH_TOKEN", prod_hub.token)
    code = cli.main(
        [
            *("--root", str(repo_paths.root), "health", prod_hub.deployment, "prod"),
            *("--hub-url", prod_hub.url, "--skip-dask", "--start-timeout", "240"),
            "--allow-other-host",  # the stage's domain is not this loopback hub
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"healthy: {prod_hub.deployment}/prod" in out and "ok   scratch" in out


@pytest.mark.parametrize(
    ("prefix", "refusal"),
    [
        # A real user's name: not a throw-away name at all (the hub's 400).
        ("scientist-", "is not allowed: throw-away users are named health-check-"),
        # An existing user with a throw-away-style name (a GitHub account could
        # have it): the hub's 409, never taken over.
        ("health-check-", "already exists"),
    ],
)
def test_existing_user_is_refused_and_kept(prod_hub, prefix: str, refusal: str) -> None:
    """`--user` naming an existing user: one line, and the user (their server, home) stays."""
    name = f"{prefix}{secrets.token_hex(4)}"
    with _admin(prod_hub) as api:
        assert api.post(f"users/{name}").status_code == 201
        try:
            lines: list[str] = []
            with pytest.raises(HealthError) as info:
                run_health(
                    HealthOptions(prod_hub.url, prod_hub.token, user=name, start_timeout=120),
                    out=lines.append,
                )
            message = str(info.value)
            assert "\n" not in message
            assert message.startswith("health check failed at step 'create-user'")
            assert name in message and refusal in message, message
            assert name in _users(prod_hub)
            assert not api.get(f"users/{name}").json()["servers"]
            assert not any(line.startswith(("ok   cleanup", "FAIL cleanup")) for line in lines)
        finally:
            api.delete(f"users/{name}")


@pytest.mark.parametrize("case", ["no-ticket", "forged", "other-user", "expired", "other-service"])
def test_rest_user_without_a_valid_ticket_is_refused(prod_hub, case) -> None:
    token = prod_hub.token
    # The same name pattern as the health check's own users: the name is no key.
    name = f"health-check-{secrets.token_hex(4)}"
    tickets = {
        "no-ticket": None,
        "forged": make_ticket("not-the-service-token", "health-check", name),
        "other-user": make_ticket(token, "health-check", name + "x"),
        "expired": make_ticket(token, "health-check", name, now=time.time() - 7200),
        "other-service": make_ticket(token, "jupyterhub-idle-culler", name),
    }
    with _admin(prod_hub) as api:
        try:
            assert api.post(f"users/{name}").status_code == 201
            if tickets[case] is not None:
                r = api.patch(f"users/{name}", json={"auth_state": tickets[case]})
                assert r.status_code == 200, r.text
            r = api.post(f"users/{name}/server")
            assert r.status_code == 403, r.text
            assert "auth has expired" in r.json()["message"]
            assert not api.get(f"users/{name}").json()["servers"]
        finally:
            api.delete(f"users/{name}/server")
            api.delete(f"users/{name}")
