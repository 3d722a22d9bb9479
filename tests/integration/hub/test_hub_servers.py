"""Real single-user servers: the scratch environment, idle culling, failed spawns.

The hub runs JupyterHub's SimpleLocalProcessSpawner (real `jupyterhub-singleuser`
processes, no cluster) with our configure() applied as in the chart, and the
real jupyterhub-idle-culler as a hub service, configured from `cull.*` the way
z2jh does, with a short timeout. A pre-spawn hook configured before ours (as an
operator's hub.extraConfig or the local runtime might) prepares home
directories and fails for one user, to check what a failed hook leaves behind.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from hub_process_support import chart_hub_values

pytestmark = pytest.mark.integration

CULL_TIMEOUT = 8  # seconds idle before the culler stops a server
CULL_EVERY = 2
SCRATCH = {
    "url": "s3://pangeo-scratch-test",
    "region": "us-west-2",
    "endpoint": "http://127.0.0.1:9000",
}
FAILURE_DETAIL = "home volume service unreachable (test detail)"

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
# Users are made through the API here (login is test_hub_login.py's subject);
# GitHubOAuthenticator would ask them to log in again, having no auth_state.
c.JupyterHub.authenticator_class = "dummy"
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
def hub(launch, tmp_path_factory):
    directory = tmp_path_factory.mktemp("servers-hub")
    (directory / "singleuser.py").write_text(WRAPPER)
    values = chart_hub_values(
        custom={"pangeo": {"scratch": SCRATCH}},
        cull={"enabled": True, "timeout": CULL_TIMEOUT, "every": CULL_EVERY},
    )
    hub = launch(
        directory,
        values,
        spawner_class="jupyterhub.spawner.SimpleLocalProcessSpawner",
        before_entry=BEFORE_ENTRY,
        after_entry=AFTER_ENTRY,
    )
    r = hub.api("POST", "/users", json={"usernames": ["erin.smith", "ivy", "bea", "crash"]})
    assert r.status_code == 201, r.text
    return hub


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


def test_server_process_gets_the_users_scratch_env(hub):
    start_server(hub, "erin.smith")
    token = user_token(hub, "erin.smith")
    # Read what the real server process had in its environment, through the proxy.
    r = httpx.get(
        f"{hub.url}/user/erin.smith/api/contents/pangeo-env.json",
        params={"content": "1", "format": "text"},
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    env = json.loads(r.json()["content"])
    assert env["PANGEO_SCRATCH"] == "s3://pangeo-scratch-test/erin-2esmith/"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-west-2"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000"
    assert env["JUPYTERHUB_USER"] == "erin.smith"
    r = hub.api("DELETE", "/users/erin.smith/server")
    assert r.status_code in (202, 204), r.text
    hub.wait_for(lambda: hub.user("erin.smith")["servers"] == {}, 30, "erin's server to stop")


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
    r = hub.api("POST", "/users/crash/server")
    assert r.status_code >= 400, r.text
    message = r.json()["message"]
    assert message == (
        "Your server could not be prepared, so it was not started; please try again, "
        "and tell the hub's operators if it happens again."
    )
    assert FAILURE_DETAIL not in message
    model = hub.user("crash")
    assert model["servers"] == {} and model["pending"] is None
    # The progress stream (what the spawn-pending page shows) says the same.
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
