"""A real hub for `pangeo-cloud health` on loopback, once per session.

Real processes only: JupyterHub 5 with configurable-http-proxy and
SimpleLocalProcessSpawner (real `jupyterhub-singleuser` servers with kernels),
dask-gateway-server with the project's gateway policy on the local backend
(real `dask scheduler` / `dask worker` processes, authenticated by the hub),
and moto's S3 server as the scratch bucket. The hub sets each user's
PANGEO_SCRATCH with the project's own `pangeo_cloud.scratch.scratch_env`; a
user whose name contains "noscratch" gets none (to see a step fail).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from pangeo_cloud.ports import free_ports

START_TIMEOUT = 90
HEALTH_SERVICE = "health-check"
GATEWAY_SERVICE = "dask-gateway"
BUCKET = "pangeo-scratch"


@dataclass
class LoopbackHub:
    url: str  # the public (proxy) address, ends with "/"
    token: str  # the health-check service's admin token
    logs: Path


def _wait(url: str, proc: subprocess.Popen, log: Path, ok=(200,)) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _start(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@pytest.fixture(scope="session")
def loopback_hub(tmp_path_factory) -> LoopbackHub:
    if shutil.which("configurable-http-proxy") is None:
        pytest.skip("configurable-http-proxy (npm) is not on PATH; run scripts/install-system.sh")
    bindir = Path(sys.executable).parent
    for tool in ("jupyterhub-singleuser", "moto_server"):
        if not (bindir / tool).exists():
            pytest.skip(f"{tool} not installed in {bindir}; pip install -e '.[dev]'")
    tmp = tmp_path_factory.mktemp("health-hub")
    names = ("proxy", "hub", "proxy_api", "gateway", "gateway_api", "s3")
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    tokens = {"gateway": secrets.token_hex(32), "health": secrets.token_hex(32)}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JUPYTERHUB_", "DASK_GATEWAY", "AWS_", "PANGEO_"))
    }
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    s3 = f"http://127.0.0.1:{ports['s3']}"
    gateway_public = f"http://127.0.0.1:{ports['gateway']}"
    settings = {
        "scratch": {"url": f"s3://{BUCKET}", "endpoint": s3, "region": "us-east-1"},
        "gateway": {
            "idleTimeout": 600,
            "clusterMaxCores": 4,
            "clusterMaxMemoryGiB": 8,
            "clusterMaxWorkers": 2,
            "workerCores": {"min": 1, "max": 1, "default": 1},
            "workerMemoryGiB": {"min": 0.5, "max": 2, "default": 1},
        },
    }
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            _start(
                [str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(ports["s3"])],
                tmp / "s3.log",
                env,
                tmp,
            )
        )
        _wait(s3 + "/", procs[-1], tmp / "s3.log")
        req = urllib.request.Request(f"{s3}/{BUCKET}", method="PUT")
        urllib.request.urlopen(req, timeout=10).close()

        (tmp / "jupyterhub_config.py").write_text(
            textwrap.dedent(f"""
            import os
            from pangeo_cloud.scratch import scratch_env
            SCRATCH = {settings["scratch"]!r}
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {ports["proxy"]}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {ports["hub"]}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{ports["proxy_api"]}"
            c.ConfigurableHTTPProxy.pid_file = "{tmp / "proxy.pid"}"
            c.JupyterHub.db_url = "sqlite:///{tmp / "hub.sqlite"}"
            c.JupyterHub.cookie_secret_file = "{tmp / "cookie_secret"}"
            c.JupyterHub.pid_file = "{tmp / "hub.pid"}"
            c.JupyterHub.authenticator_class = "null"
            c.JupyterHub.spawner_class = "simple"
            c.Spawner.cmd = ["{bindir / "jupyterhub-singleuser"}"]
            # Containers and CI machines often run as root.
            c.Spawner.args = ["--ServerApp.allow_root=True"]
            c.Spawner.start_timeout = 120
            # As the chart's hub.config.Spawner.server_token_scopes.
            c.Spawner.server_token_scopes = [
                "users:activity!user", "access:servers!server",
                "access:services!service={GATEWAY_SERVICE}",
                "read:users:name!user", "read:users:groups!user",
            ]
            c.Spawner.http_timeout = 120
            c.SimpleLocalProcessSpawner.home_dir_template = "{tmp / "homes"}/{{username}}"
            c.Spawner.environment = {{
                "DASK_GATEWAY__ADDRESS": "{gateway_public}",
                "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "PATH": {env["PATH"]!r},
            }}

            def pre_spawn_hook(spawner):
                os.makedirs("{tmp / "homes"}/" + spawner.user.name, exist_ok=True)
                if "noscratch" not in spawner.user.name:
                    spawner.environment = {{**spawner.environment,
                                           **scratch_env(SCRATCH, spawner.user.name)}}

            c.Spawner.pre_spawn_hook = pre_spawn_hook
            c.JupyterHub.services = [
                {{"name": "{GATEWAY_SERVICE}", "api_token": "{tokens["gateway"]}",
                  "url": "{gateway_public}", "display": False}},
                {{"name": "{HEALTH_SERVICE}", "api_token": "{tokens["health"]}"}},
            ]
            c.JupyterHub.load_roles = [
                {{"name": "user",
                  "scopes": ["self", "access:services!service={GATEWAY_SERVICE}"]}},
                # As the stage secrets' hub.loadRoles.health-check.
                {{"name": "{HEALTH_SERVICE}", "services": ["{HEALTH_SERVICE}"],
                  "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"]}},
            ]
        """)
        )
        procs.append(
            _start(
                [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py")],
                tmp / "hub.log",
                env,
                tmp,
            )
        )
        hub_api = f"http://127.0.0.1:{ports['hub']}/hub/api"
        _wait(hub_api + "/", procs[-1], tmp / "hub.log")

        (tmp / "clusters").mkdir()
        (tmp / "dask_gateway_config.py").write_text(
            textwrap.dedent(f"""
            from pangeo_cloud.gateway.config import configure
            configure(c, {settings!r}, backend="local")
            c.DaskGateway.address = "127.0.0.1:{ports["gateway_api"]}"
            c.Proxy.address = "127.0.0.1:{ports["gateway"]}"
            c.JupyterHubAuthenticator.jupyterhub_api_url = "{hub_api}"
            c.UnsafeLocalBackend.clusters_directory = "{tmp / "clusters"}"
            c.UnsafeLocalBackend.cluster_heartbeat_period = 2
            c.UnsafeLocalBackend.check_timeouts_period = 1
        """)
        )
        procs.append(
            _start(
                [
                    sys.executable,
                    "-m",
                    "dask_gateway_server",
                    "-f",
                    str(tmp / "dask_gateway_config.py"),
                ],
                tmp / "gateway.log",
                {**env, "JUPYTERHUB_API_TOKEN": tokens["gateway"]},
                tmp,
            )
        )
        _wait(gateway_public + "/api/health", procs[-1], tmp / "gateway.log")
        yield LoopbackHub(f"http://127.0.0.1:{ports['proxy']}/", tokens["health"], tmp)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int((tmp / "proxy.pid").read_text().strip()), signal.SIGTERM)
