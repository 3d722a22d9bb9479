"""Real single-user servers: the scratch environment, idle culling, failed spawns.

The hub is configured from aws-us-west-2's production values (s3:// scratch
with its region, GitHub team login with ``refresh_pre_spawn`` and the
membership re-check, the services), and every user logs in through the GitHub
stand-in before their server is started through the REST API, so each spawn
passes the same pre-spawn refresh as in production. Test-only differences,
each because a test cannot wait or has no cluster:

- JupyterHub's SimpleLocalProcessSpawner (real `jupyterhub-singleuser`
  processes) instead of KubeSpawner: no Kubernetes here (KubeSpawner runs in
  tests/integration/k8s and the production-hub tier);
- the real jupyterhub-idle-culler with a timeout of seconds, not an hour;
- a pre-spawn hook configured before ours (as an operator's hub.extraConfig
  might) that prepares home directories and fails for one user, to check what
  a failed hook leaves behind.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hub_process_support import chart_hub_values, deployment_hub_values

from pangeo_cloud.scratch import escape_username
from pangeo_cloud.testing.github import GitHubStandIn

pytestmark = pytest.mark.integration

DEPLOYMENT = "aws-us-west-2"
CULL_TIMEOUT = 8  # seconds idle before the culler stops a server
CULL_EVERY = 2
FAILURE_DETAIL = "home volume service unreachable (test detail)"
USERS = ["erin-smith", "ivy", "bea", "crash"]

# Runs as the server's command: records the real process environment in the
# server's working directory (its home), then becomes jupyterhub-singleuser.
WRAPPER = """\
import json, os, shutil, sys
with open("pangeo-env.json", "w") as f:
    json.dump(dict(os.environ), f)
exe = shutil.which("jupyterhub-singleuser")
root = ["--allow-root"] if os.geteuid() == 0 else []  # test containers run as root
os.execv(exe, [exe] + sys.argv[1:] + root)
"""

BEFORE_ENTRY = f"""
def _prepare_home(spawner):
    if spawner.user.name == "crash":
        raise RuntimeError({FAILURE_DETAIL!r})
    os.makedirs(spawner.home_dir, exist_ok=True)

c.Spawner.pre_spawn_hook = _prepare_home
"""

AFTER_ENTRY = """
import sys
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(settings["dir"], "homes", "{username}")
c.Spawner.cmd = [sys.executable, os.path.join(settings["dir"], "singleuser.py")]
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.default_url = "/api/status"
# Activity through the proxy reaches the hub within a second or two.
c.JupyterHub.last_activity_interval = 1
c.JupyterHub.activity_resolution = 1
"""


@pytest.fixture(scope="module")
def values() -> dict:
    return deployment_hub_values(
        DEPLOYMENT, "prod", cull={"enabled": True, "timeout": CULL_TIMEOUT, "every": CULL_EVERY}
    )


@pytest.fixture(scope="module")
def hub(launch, values, tmp_path_factory):
    directory = tmp_path_factory.mktemp("servers-hub")
    (directory / "singleuser.py").write_text(WRAPPER)
    team = values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"][0]
    with GitHubStandIn(client_id="pangeo-test-client") as github:
        for name in USERS:
            github.add_user(name, teams=[team])
        hub = launch(
            directory,
            values,
            spawner_class="jupyterhub.spawner.SimpleLocalProcessSpawner",
            github_url=github.url,
            before_entry=BEFORE_ENTRY,
            after_entry=AFTER_ENTRY,
        )
        for name in USERS:  # each logs in once, as in a browser: the hub keeps their token
            with httpx.Client(follow_redirects=True, timeout=30) as client:
                github.next_user = name
                r = client.get(f"{hub.url}/hub/oauth_login", params={"next": "/hub/home"})
                assert r.status_code == 200 and r.url.path == "/hub/home", r.text
        yield hub


def start_server(hub, name: str) -> None:
    r = hub.api("POST", f"/users/{name}/server")
    assert r.status_code in (201, 202), r.text

    def ready():
        server = hub.user(name)["servers"].get("")
        return server and server["ready"]

    hub.wait_for(ready, 90, f"{name}'s server to be ready")


def user_token(hub, name: str) -> str:
    r = hub.api("POST", f"/users/{name}/tokens", json={"expires_in": 600, "note": "test"})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_server_process_gets_the_users_scratch_env(hub, values):
    name = "erin-smith"
    scratch = values["custom"]["pangeo"]["scratch"]
    start_server(hub, name)
    token = user_token(hub, name)
    # Read what the real server process had in its environment, through the proxy.
    r = httpx.get(
        f"{hub.url}/user/{name}/api/contents/pangeo-env.json",
        params={"content": "1", "format": "text"},
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    env = json.loads(r.json()["content"])
    assert escape_username(name) == "erin-2dsmith"  # '-' is escaped: no two users collide
    assert env["PANGEO_SCRATCH"] == f"{scratch['url'].rstrip('/')}/erin-2dsmith/"
    assert env["PANGEO_SCRATCH"].startswith("s3://")
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == scratch["region"]
    assert "AWS_ENDPOINT_URL" not in env  # real S3: no endpoint override
    assert env["JUPYTERHUB_USER"] == name
    r = hub.api("DELETE", f"/users/{name}/server")
    assert r.status_code in (202, 204), r.text
    hub.wait_for(lambda: hub.user(name)["servers"] == {}, 30, "erin's server to stop")


def test_idle_server_is_culled_and_active_one_is_not(hub):
    start_server(hub, "ivy")
    ivy_ready = time.monotonic()
    start_server(hub, "bea")
    bea = httpx.Client(
        base_url=f"{hub.url}/user/bea",
        headers={"Authorization": f"token {user_token(hub, 'bea')}"},
        timeout=30,
    )

    def use_bea() -> None:
        assert bea.get("/api/contents").status_code == 200

    def ivy_gone() -> bool:
        use_bea()
        return hub.user("ivy")["servers"] == {}

    with bea:
        hub.wait_for(ivy_gone, CULL_TIMEOUT + 6 * CULL_EVERY + 20, "ivy's idle server to be culled")
        # Not stopped early, for some other reason.
        assert time.monotonic() - ivy_ready >= CULL_TIMEOUT - 1
        # Keep bea busy for longer than the timeout: the culler must leave it alone.
        until = time.monotonic() + CULL_TIMEOUT + 2 * CULL_EVERY + 2
        while time.monotonic() < until:
            use_bea()
            assert "" in hub.user("bea")["servers"], "the culler stopped an active server"
            time.sleep(1)
        # Once bea stops working, the same culler stops bea too.
        hub.wait_for(
            lambda: hub.user("bea")["servers"] == {},
            CULL_TIMEOUT + 6 * CULL_EVERY + 20,
            "bea's server to be culled once idle",
        )
    log = hub.log()
    assert "Culling server ivy" in log
    assert "Culling server bea" in log


def test_failed_pre_spawn_hook_leaves_no_server(hub):
    message = (
        "Your server could not be prepared, so it was not started; please try again, "
        "and tell the hub's operators if it happens again."
    )
    r = hub.api("POST", "/users/crash/server")
    # z2jh's slow_spawn_timeout 0: the hub answers as soon as the spawn starts
    # (202), so the failure reaches the user on the progress page; a hub that
    # waits answers with the message itself.
    assert r.status_code == 202 or r.json()["message"] == message, r.text

    def gone() -> bool:
        model = hub.user("crash")
        return model["servers"] == {} and model["pending"] is None

    hub.wait_for(gone, 60, "the failed server to be removed")
    # The progress stream (what the spawn-pending page shows) says why.
    r = hub.api("GET", "/users/crash/server/progress")
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert events and events[-1]["failed"] is True
    assert events[-1]["message"] == f"Spawn failed: {message}"
    # The command never ran, and the details are in the hub log.
    assert not (hub.directory / "homes" / "crash" / "pangeo-env.json").exists()
    log = hub.log()
    assert "pangeo-cloud: preparing the server of crash failed" in log
    assert FAILURE_DETAIL in log


def test_hub_refuses_to_start_without_scratch_bucket(launch, tmp_path):
    values = chart_hub_values(cull={"enabled": False})  # the chart default: url ""
    assert values["custom"]["pangeo"]["scratch"]["url"] == ""
    hub = launch(
        tmp_path / "no-scratch-hub",
        values,
        spawner_class="jupyterhub.spawner.SimpleLocalProcessSpawner",
        wait=False,
    )
    assert hub.process.wait(60) == 1
    log = hub.log()
    fatal = [line for line in log.splitlines() if line.startswith("FATAL")]
    assert fatal == [
        "FATAL: pangeo-cloud hub configuration: no scratch bucket configured: set "
        "jupyterhub.custom.pangeo.scratch.url (gs://BUCKET or s3://BUCKET) in the "
        "deployment's values"
    ]
    assert "Traceback" not in log
