"""A real JupyterHub and a real dask-gateway-server on loopback, once per session.

The hub (with configurable-http-proxy) registers `dask-gateway` as a service and
grants every user `access:services!service=dask-gateway` through the `user`
role, as the chart does. The gateway runs `pangeo_cloud.gateway.config.configure`
with backend="local" (UnsafeLocalBackend: real `dask scheduler` / `dask worker`
processes) and authenticates users' tokens against the hub. Users, groups and
tokens are made through the hub's REST API by an admin service.
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
        "groupLimits": {POWER_GROUP: {"clusterMaxWorkers": 5}},
    },
}


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
    settings: dict = field(default_factory=lambda: SETTINGS)
    _clients: list = field(default_factory=list)

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

    def user(self, name: str, groups: tuple[str, ...] = ()) -> str:
        """Create `name` (and its groups) if needed; return the name."""
        try:
            self.hub("POST", f"/users/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # already exists
                raise
        for group in groups:
            try:
                self.hub("POST", f"/groups/{group}")
            except urllib.error.HTTPError as exc:
                if exc.code != 409:
                    raise
            self.hub("POST", f"/groups/{group}/users", {"users": [name]})
        return name

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
        c.JupyterHub.services = [
            {{"name": "{SERVICE}", "api_token": "{tokens["gateway"]}",
              "url": "http://127.0.0.1:{ports["gateway"]}", "display": False}},
            {{"name": "{ADMIN_SERVICE}", "api_token": "{tokens["admin"]}"}},
        ]
        c.JupyterHub.load_roles = [
            # As the chart's hub.loadRoles.user.
            {{"name": "user", "scopes": ["self", "access:services!service={SERVICE}"]}},
            {{"name": "{ADMIN_SERVICE}", "services": ["{ADMIN_SERVICE}"],
              "scopes": ["admin:users", "admin:groups", "tokens", "list:users"]}},
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
    gc.collect()  # collect closed clients here, under this test's warning filters
