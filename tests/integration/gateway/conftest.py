"""A real JupyterHub configured from a production deployment, and a real dask-gateway-server.

The hub is gcp-us-central1-b `prod`: that stage's merged `jupyterhub:` values,
mapped as z2jh maps them and then configured by our own ``z2jh_entry.py``
(``launch_hub`` of tests/integration/hub/hub_process_support.py), so GitHub team
login (through the GitHub stand-in), ``refresh_pre_spawn``, the membership
re-check, teams as groups, group-restricted profiles and the services and
roles of ``hub.services`` / ``hub.loadRoles`` (the gateway's ``list:users``)
are all on. The gateway runs ``pangeo_cloud.gateway.config.configure`` with the
same stage's ``jupyterhub.custom.pangeo`` and backend="local"
(PangeoLocalBackend: real `dask scheduler` / `dask worker` processes), and
authenticates users' tokens against the hub.

Users log in through the stand-in (so they exist with ``auth_state`` and their
teams as groups); their servers (``jupyterhub-singleuser`` through
``SimpleLocalProcessSpawner``: no Kubernetes here) are started through the
hub's REST API afterwards, passing the pre-spawn refresh and re-check. The
gateway stops the clusters of users without a running server, so
`Federation.user` starts one for each user by default; the `federation`
fixture stops the servers a test started.

Test-only changes to the deployment's values are in `hub_values` and
`GATEWAY_OVERRIDES`, each with its reason; tests read limits from
`Federation.settings` (the effective ``custom.pangeo`` of both), never from copies.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from pangeo_cloud.ports import free_ports
from pangeo_cloud.testing.github import GitHubStandIn

# The hub harness is shared with tests/integration/hub (a plain module there).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from hub_process_support import CLIENT_ID, Hub, deployment_hub_values, launch_hub  # noqa: E402

START_TIMEOUT = 60  # seconds for the gateway to answer
SERVER_TIMEOUT = 90  # seconds for a user's server to start or stop
SERVICE = "dask-gateway"
DEPLOYMENT = "gcp-us-central1-b"
# A GitHub team of the deployment's organization, not one of its allowed teams:
# members of it are let in by the deployment's users team, and it becomes their
# JupyterHub group (the groupLimits entry below is for it).
POWER_GROUP = "pangeo-data:power-users"

# Only what a 2-core test machine and test waits need (merged onto the
# deployment's custom.pangeo.gateway with Helm's rules; everything else,
# e.g. userMaxClusters, idleTimeout, stopClustersWithServer, is production's).
GATEWAY_OVERRIDES: dict[str, Any] = {
    # Local workers are processes on this machine: at most one thread per core
    # it has, and a small default so that a few workers reach the totals below.
    "workerCores": {"max": 2, "default": 1},
    "workerMemoryGiB": {"max": 4, "default": 1},
    # Per-cluster and per-user caps reachable with a handful of scheduler and
    # worker processes (production: 40 workers / 80 cores per cluster, 50
    # workers / 100 cores per user). Totals stay >= the per-cluster caps, as
    # `validate` requires.
    "clusterMaxWorkers": 2,
    "clusterMaxCores": 7,
    "clusterMaxMemoryGiB": 12,
    "userMaxWorkers": 4,
    "userMaxCores": 7,
    "userMaxMemoryGiB": 12,
    # Production has no group limits; test_group_limits_apply needs one.
    "groupLimits": {POWER_GROUP: {"clusterMaxWorkers": 5, "userMaxWorkers": 6}},
    # Production checks servers every 30 s; clusters of a stopped server must
    # stop well within the tests' 60 s waits.
    "serverCheckSeconds": 1,
}

# Singleuser servers as local processes (the hub's own OS user), started
# through the REST API: z2jh's slow_spawn_timeout 0 answers at once, the
# harness polls readiness.
AFTER_ENTRY = f"""
import sys
homes = os.path.join(settings["dir"], "homes")
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(homes, "{{username}}")
c.Spawner.cmd = [os.path.join(os.path.dirname(sys.executable), "jupyterhub-singleuser")]
# Test machines often run as root, which jupyter-server refuses by default.
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.start_timeout = {SERVER_TIMEOUT}
c.Spawner.http_timeout = {SERVER_TIMEOUT}
"""


def hub_values(gateway_url: str, gateway_token: str) -> dict[str, Any]:
    """The deployment's merged values with the test's overrides, each with its reason."""
    return deployment_hub_values(
        DEPLOYMENT,
        "prod",
        hub={
            "services": {
                SERVICE: {
                    # Production: the gateway chart's traefik Service.
                    "url": gateway_url,
                    # z2jh generates it into the hub Secret, where the gateway
                    # chart reads it; here the harness hands one to both.
                    "apiToken": gateway_token,
                }
            }
        },
        # Without the scratch-credentials broker (deployment_hub_values' default:
        # none runs beside this federation; the health tests run it).
        custom={"pangeo": {"gateway": GATEWAY_OVERRIDES}},
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Wait until `url` answers 200 (a proxy answers 404 before its routes exist)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:  # includes HTTPError
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{_tail(log)}")


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Stop a process group we started: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Federation:
    """Handles on the running hub, the GitHub stand-in and the gateway."""

    hub_process: Hub
    github: GitHubStandIn
    # The deployment's team whose members may log in (not its admin team).
    team: str
    # A token with admin:servers, as `pangeo-cloud clusters` needs (a hub
    # admin's in production; here the harness's admin service).
    admin_token: str
    gateway_address: str
    gateway_log: Path
    gateway_pid: int
    clusters_dir: Path
    homes: Path
    # The effective jupyterhub.custom.pangeo of hub and gateway (overrides applied).
    settings: dict
    _clients: list = field(default_factory=list)
    _servers: set = field(default_factory=set)

    def hub(self, method: str, path: str, body: dict | None = None) -> Any:
        """A hub REST call as the harness's admin service; raises on an error status."""
        kwargs = {} if body is None else {"json": body}
        r = self.hub_process.api(method, path, **kwargs)
        r.raise_for_status()
        return r.json() if r.content else None

    def login(self, name: str) -> None:
        """Log `name` in through the GitHub stand-in, as in a browser (OAuth flow)."""
        with httpx.Client(follow_redirects=True, timeout=30) as client:
            self.github.next_user = name
            r = client.get(f"{self.hub_process.url}/hub/oauth_login", params={"next": "/hub/home"})
        assert r.status_code == 200 and r.url.path == "/hub/home", (r.status_code, r.text[-2000:])

    def user(self, name: str, groups: tuple[str, ...] = (), server: bool = True) -> str:
        """`name` in the deployment's team and the GitHub teams `groups`, logged in.

        The hub manages groups from GitHub teams (the REST API cannot set them),
        so each group is a team of the stand-in. With `server`, the user's
        server is started; return the name.
        """
        try:
            self.github.user(name)
        except KeyError:
            self.github.add_user(name)
        for team in (self.team, *groups):
            self.github.add_to_team(name, team)
        self.login(name)
        if server:
            self.start_server(name)
        return name

    def _server_state(self, name: str) -> dict | None:
        return (self.hub("GET", f"/users/{name}")["servers"] or {}).get("")

    def _wait_server(self, name: str, ready: bool) -> None:
        deadline = time.monotonic() + SERVER_TIMEOUT
        while time.monotonic() < deadline:
            state = self._server_state(name)
            if (state is not None and state.get("ready")) if ready else state is None:
                return
            if ready and state is None:  # the spawn failed: no point in waiting
                pytest.fail(f"{name}'s server failed to start:\n{self.hub_process.log()[-3000:]}")
            time.sleep(0.25)
        pytest.fail(
            f"{name}'s server did not {'start' if ready else 'stop'} in {SERVER_TIMEOUT} s:\n"
            + self.hub_process.log()[-3000:]
        )

    def start_server(self, name: str) -> None:
        """Start `name`'s server through the REST API (pre-spawn refresh and re-check)."""
        (self.homes / name).mkdir(parents=True, exist_ok=True)
        if self._server_state(name) is not None:
            self._servers.add(name)
            return self._wait_server(name, ready=True)
        checks = self._membership_checks(name)
        r = self.hub_process.api("POST", f"/users/{name}/server", json={})
        assert r.status_code in (201, 202), r.text
        self._servers.add(name)
        self._wait_server(name, ready=True)
        # The production path: the hub asked GitHub again before this spawn.
        assert self._membership_checks(name) > checks, "no membership re-check before the spawn"

    def _membership_checks(self, name: str) -> int:
        """How often the stand-in was asked whether `name` is in a team or organization."""
        return sum(
            1
            for method, uri in list(self.github.requests)
            if method == "GET" and uri.split("?")[0].endswith(f"/members/{name}")
        )

    def stop_server(self, name: str) -> None:
        """Stop `name`'s server through the hub, as the user or the culler would."""
        with contextlib.suppress(httpx.HTTPStatusError):  # already stopped
            self.hub("DELETE", f"/users/{name}/server")
        self._wait_server(name, ready=False)
        self._servers.discard(name)

    def token(self, name: str, scopes: list[str] | None = None) -> str:
        """A new API token for user `name` (default: what a notebook server gets)."""
        if scopes is None:
            scopes = [
                f"access:services!service={SERVICE}",
                "read:users:name!user",
                "read:users:groups!user",
            ]
        return self.hub("POST", f"/users/{name}/tokens", {"scopes": scopes})["token"]

    def gateway(self, token: str):  # -> dask_gateway.Gateway
        """A client as a notebook would make it; closed at the end of the test."""
        from dask_gateway import Gateway
        from dask_gateway.auth import JupyterHubAuth

        gateway = Gateway(address=self.gateway_address, auth=JupyterHubAuth(api_token=token))
        self._clients.append(gateway)
        return gateway

    def scheduler_pid(self, cluster_name: str) -> int:
        """The pid of a running cluster's scheduler (local backend: cwd is its directory)."""
        workdir = str(self.clusters_dir / cluster_name)
        for proc in psutil.process_iter(["cwd", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if proc.info["cwd"] == workdir and "scheduler" in cmdline:
                return proc.pid
        raise LookupError(f"no scheduler process runs in {workdir}")

    def close_clients(self) -> None:
        while self._clients:
            self._clients.pop().close()

    def stop_servers(self) -> None:
        for name in sorted(self._servers):
            self.stop_server(name)


def _gateway_config(ports: dict[str, int], hub_api: str, tmp: Path) -> str:
    return textwrap.dedent(
        f"""
        import json
        from pangeo_cloud.gateway.config import configure

        with open({str(tmp / "pangeo-settings.json")!r}) as f:
            configure(c, json.load(f), backend="local")
        c.DaskGateway.address = "127.0.0.1:{ports["gateway_api"]}"
        c.Proxy.address = "127.0.0.1:{ports["gateway"]}"
        c.DaskGateway.log_level = "DEBUG"
        c.JupyterHubAuthenticator.jupyterhub_api_url = "{hub_api}"
        c.UnsafeLocalBackend.clusters_directory = "{tmp / "clusters"}"
        # Report cluster state quickly (the default checks are for production).
        c.UnsafeLocalBackend.cluster_heartbeat_period = 2
        c.UnsafeLocalBackend.check_timeouts_period = 1
        # An overdue scheduler (stalled, see test_gateway_stalls.py) gets this long
        # to answer a health check; a dead one refuses the connection at once.
        c.HeartbeatProbeMixin.heartbeat_probe_timeout = 30
        """
    )


def _users_team(values: dict[str, Any]) -> str:
    """The deployment's first allowed team that is not an admin team."""
    allowed = values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"]
    admins = values["custom"]["pangeo"]["auth"]["adminTeams"]
    return next(team for team in allowed if team not in admins)


def _start_gateway(tmp: Path, ports: dict[str, int], hub_api: str, token: str):
    (tmp / "dask_gateway_config.py").write_text(_gateway_config(ports, hub_api, tmp))
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": token}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for key in list(env):
        if key.startswith("DASK_GATEWAY"):
            del env[key]
    log = tmp / "gateway.log"
    command = [sys.executable, "-m", "dask_gateway_server", "-f"]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, str(tmp / "dask_gateway_config.py")],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="session")
def federation_session(tmp_path_factory) -> Federation:
    if shutil.which("configurable-http-proxy") is None:
        pytest.skip("configurable-http-proxy (npm) is not installed")
    tmp = tmp_path_factory.mktemp("gateway-federation")
    (tmp / "clusters").mkdir()
    ports = dict(zip(("gateway", "gateway_api"), free_ports(2), strict=True))
    gateway_token = secrets.token_hex(32)
    address = f"http://127.0.0.1:{ports['gateway']}"
    values = hub_values(address, gateway_token)
    settings = values["custom"]["pangeo"]
    (tmp / "pangeo-settings.json").write_text(json.dumps(settings))

    with GitHubStandIn(client_id=CLIENT_ID) as github:
        hub = launch_hub(
            tmp / "hub",
            values,
            spawner_class="jupyterhub.spawner.SimpleLocalProcessSpawner",
            github_url=github.url,
            after_entry=AFTER_ENTRY,
            avoid=ports.values(),
        )
        gateway = None
        try:
            gateway = _start_gateway(tmp, ports, f"{hub.url}/hub/api", gateway_token)
            wait_for_http(address + "/api/health", gateway, tmp / "gateway.log", START_TIMEOUT)
            yield Federation(
                hub_process=hub,
                github=github,
                team=_users_team(values),
                # An admin:servers token (the harness's admin service): the
                # health-check service reaches only its own throw-away users.
                admin_token=hub.token,
                gateway_address=address,
                gateway_log=tmp / "gateway.log",
                gateway_pid=gateway.pid,
                clusters_dir=tmp / "clusters",
                homes=tmp / "hub" / "homes",
                settings=settings,
            )
        finally:
            if gateway is not None:
                stop(gateway)
            hub.stop()


@pytest.fixture
def federation(federation_session: Federation):
    """The session's federation; Gateway clients made in a test are closed after it.

    Garbage is collected only here, in the test's thread. dask_gateway's
    ``Gateway.__del__`` closes the client synchronously through its IO loop; if
    automatic collection runs on that loop's own thread (any allocation there can
    trigger it) and finds an unclosed client (e.g. the one inside a
    ``new_cluster()`` that raised), the loop waits on itself forever: a teardown
    that hung until the test timeout in a clean run.
    """
    gc.disable()
    try:
        yield federation_session
    finally:
        federation_session.close_clients()
        federation_session.stop_servers()
        gc.collect()  # here, under this test's warning filters
        gc.enable()
