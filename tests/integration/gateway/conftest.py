"""A real JupyterHub and a real dask-gateway-server on loopback, once per session.

The hub (with configurable-http-proxy) registers `dask-gateway` as a service and
grants every user `access:services!service=dask-gateway` through the `user`
role, and the gateway's service `list:users`, as the chart does. The gateway
runs `pangeo_cloud.gateway.config.configure` with backend="local"
(PangeoLocalBackend: real `dask scheduler` / `dask worker` processes) and
authenticates users' tokens against the hub. Users, groups, tokens and servers
are made through the hub's REST API by an admin service.

The gateway stops the clusters of users without a running server (checked
every second here), so `Federation.user` starts a real server for each user
(``jupyterhub-singleuser`` through ``SimpleLocalProcessSpawner``), as every
notebook user has one; the `federation` fixture stops the servers a test
started.
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
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from pangeo_cloud.ports import free_ports

START_TIMEOUT = 60  # seconds for the hub or the gateway to answer
SERVICE = "dask-gateway"
ADMIN_SERVICE = "pangeo-test-admin"
POWER_GROUP = "pangeo-data:power-users"

# Kept small for a 2-core machine: local workers are 1 core / 1 GiB processes.
SETTINGS = {
    "scratch": {
        "url": "s3://pangeo-scratch",
        "endpoint": "http://127.0.0.1:9",
        "region": "us-west-2",
    },
    "gateway": {
        "idleTimeout": 600,
        "clusterMaxCores": 8,
        "clusterMaxMemoryGiB": 16,
        "clusterMaxWorkers": 2,
        "workerCores": {"min": 1, "max": 2, "default": 1},
        "workerMemoryGiB": {"min": 0.5, "max": 4, "default": 1},
        # Per user, over all their clusters (each local scheduler counts 1 core, 2 GiB).
        "userMaxClusters": 3,
        "userMaxCores": 7,
        "userMaxMemoryGiB": 12,
        "userMaxWorkers": 4,
        "groupLimits": {POWER_GROUP: {"clusterMaxWorkers": 5, "userMaxWorkers": 6}},
        "serverCheckSeconds": 1,
    },
}
SERVER_TIMEOUT = 90  # seconds for a user's server to start or stop


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


def _stop_leftover_proxy(pid_file: Path) -> None:
    """The hub starts CHP in its own session and normally stops it; make sure."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


@dataclass
class Federation:
    """Handles on the running hub and gateway."""

    hub_api: str
    admin_token: str
    gateway_address: str
    gateway_log: Path
    gateway_pid: int
    clusters_dir: Path
    homes: Path
    settings: dict = field(default_factory=lambda: SETTINGS)
    _clients: list = field(default_factory=list)
    _servers: set = field(default_factory=set)

    def hub(self, method: str, path: str, body: dict | None = None) -> dict | None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.hub_api + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.admin_token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def user(self, name: str, groups: tuple[str, ...] = (), server: bool = True) -> str:
        """Create `name` (and its groups) if needed, with a running server; return the name."""
        try:
            self.hub("POST", f"/users/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # already exists
                raise
        if server:
            self.start_server(name)
        for group in groups:
            try:
                self.hub("POST", f"/groups/{group}")
            except urllib.error.HTTPError as exc:
                if exc.code != 409:
                    raise
            self.hub("POST", f"/groups/{group}/users", {"users": [name]})
        return name

    def _server_state(self, name: str) -> dict | None:
        return (self.hub("GET", f"/users/{name}")["servers"] or {}).get("")

    def _wait_server(self, name: str, ready: bool) -> None:
        deadline = time.monotonic() + SERVER_TIMEOUT
        while time.monotonic() < deadline:
            state = self._server_state(name)
            if (state is not None and state.get("ready")) if ready else state is None:
                return
            time.sleep(0.25)
        pytest.fail(f"{name}'s server did not {'start' if ready else 'stop'} in {SERVER_TIMEOUT} s")

    def start_server(self, name: str) -> None:
        """Start `name`'s server (a real jupyterhub-singleuser) and wait until it is ready."""
        (self.homes / name).mkdir(parents=True, exist_ok=True)
        if self._server_state(name) is None:
            self.hub("POST", f"/users/{name}/server", {})
        self._servers.add(name)
        self._wait_server(name, ready=True)

    def stop_server(self, name: str) -> None:
        """Stop `name`'s server through the hub, as the user or the culler would."""
        with contextlib.suppress(urllib.error.HTTPError):  # already stopped
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


def _hub_config(tmp: Path, ports: dict[str, int], tokens: dict[str, str]) -> str:
    return textwrap.dedent(
        f"""
        c.JupyterHub.ip = "127.0.0.1"
        c.JupyterHub.port = {ports["proxy"]}
        c.JupyterHub.hub_ip = "127.0.0.1"
        c.JupyterHub.hub_port = {ports["hub"]}
        c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports["proxy_api"]}"
        c.ConfigurableHTTPProxy.should_start = True
        c.ConfigurableHTTPProxy.pid_file = "{tmp / "proxy.pid"}"
        c.JupyterHub.db_url = "sqlite:///{tmp / "hub.sqlite"}"
        c.JupyterHub.cookie_secret_file = "{tmp / "cookie_secret"}"
        c.JupyterHub.pid_file = "{tmp / "hub.pid"}"
        c.JupyterHub.authenticator_class = "null"
        # Real single-user servers, as the hub's own OS user.
        c.JupyterHub.spawner_class = "simple"
        c.Spawner.cmd = ["{Path(sys.executable).parent / "jupyterhub-singleuser"}"]
        c.SimpleLocalProcessSpawner.home_dir_template = "{tmp / "homes"}/{{username}}"
        # As z2jh: the REST spawn answers at once; readiness is polled.
        # Test machines often run as root, which jupyter-server refuses by default.
        c.Spawner.args = {["--allow-root"] if os.geteuid() == 0 else []}
        c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
        c.Spawner.start_timeout = {SERVER_TIMEOUT}
        c.Spawner.http_timeout = {SERVER_TIMEOUT}
        c.JupyterHub.services = [
            {{"name": "{SERVICE}", "api_token": "{tokens["gateway"]}",
              "url": "http://127.0.0.1:{ports["gateway"]}", "display": False}},
            {{"name": "{ADMIN_SERVICE}", "api_token": "{tokens["admin"]}"}},
        ]
        c.JupyterHub.load_roles = [
            # As the chart's hub.loadRoles.user.
            {{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}},
            # As the chart's hub.loadRoles.dask-gateway: which users have a server.
            {{"name": "{SERVICE}", "services": ["{SERVICE}"], "scopes": ["list:users"]}},
            {{"name": "{ADMIN_SERVICE}", "services": ["{ADMIN_SERVICE}"],
              "scopes": ["admin:users", "admin:groups", "admin:servers", "tokens",
                         "list:users", "access:services!service={SERVICE}"]}},
        ]
        """
    )


def _gateway_config(ports: dict[str, int], hub_api: str, tmp: Path) -> str:
    return textwrap.dedent(
        f"""
        import json
        from pangeo_cloud.gateway.config import configure

        configure(c, json.loads({json.dumps(json.dumps(SETTINGS))}), backend="local")
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


@pytest.fixture(scope="session")
def federation_session(tmp_path_factory) -> Federation:
    chp = shutil.which("configurable-http-proxy")
    if chp is None:
        pytest.skip("configurable-http-proxy (npm) is not installed")
    tmp = tmp_path_factory.mktemp("gateway-federation")
    (tmp / "clusters").mkdir()
    names = ("proxy", "hub", "proxy_api", "gateway", "gateway_api")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    tokens = {"gateway": secrets.token_hex(32), "admin": secrets.token_hex(32)}
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    for key in list(env):
        if key.startswith(("JUPYTERHUB_", "DASK_GATEWAY")):
            del env[key]

    (tmp / "jupyterhub_config.py").write_text(_hub_config(tmp, ports, tokens))
    hub_log = tmp / "hub.log"
    with hub_log.open("wb") as out:
        hub = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
            cwd=tmp,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    procs = [hub]
    try:
        hub_api = f"http://127.0.0.1:{ports['hub']}/hub/api"
        wait_for_http(hub_api + "/", hub, hub_log, START_TIMEOUT)

        (tmp / "dask_gateway_config.py").write_text(_gateway_config(ports, hub_api, tmp))
        gateway_log = tmp / "gateway.log"
        gateway_env = {**env, "JUPYTERHUB_API_TOKEN": tokens["gateway"]}
        with gateway_log.open("wb") as out:
            gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dask_gateway_server",
                    "-f",
                    str(tmp / "dask_gateway_config.py"),
                ],
                cwd=tmp,
                env=gateway_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(gateway)
        address = f"http://127.0.0.1:{ports['gateway']}"
        wait_for_http(address + "/api/health", gateway, gateway_log, START_TIMEOUT)
        yield Federation(
            hub_api=hub_api,
            admin_token=tokens["admin"],
            gateway_address=address,
            gateway_log=gateway_log,
            gateway_pid=gateway.pid,
            clusters_dir=tmp / "clusters",
            homes=tmp / "homes",
        )
    finally:
        for proc in reversed(procs):
            stop(proc)
        _stop_leftover_proxy(tmp / "proxy.pid")


@pytest.fixture
def federation(federation_session: Federation):
    """The session's federation; Gateway clients made in a test are closed after it."""
    yield federation_session
    federation_session.close_clients()
    federation_session.stop_servers()
    gc.collect()  # collect closed clients here, under this test's warning filters
