"""Shared helpers of the benchmarks: bare baselines, percentiles, the result table.

Run the benchmarks on demand (they are not tests, pytest does not collect them)::

    python benchmarks/bench_spawn.py        # login -> ready server, 1 and 50 users
    python benchmarks/bench_dask.py         # Dask cluster request -> 2 running workers
    python benchmarks/bench_gateway_cleanup.py  # server stop -> clusters stopped; limits cost

Each measures `pangeo-cloud up` (deployment ``local``) and, in the same run, a
bare baseline on the same machine: a plain JupyterHub with JupyterHub's own
local spawner (SimpleLocalProcessSpawner: the default LocalProcessSpawner
needs a system account per user) and no hooks, and a plain dask-gateway-server
with the same UnsafeLocalBackend. The ratio is pangeo-cloud / baseline.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pangeo_cloud.local import processes  # noqa: E402
from pangeo_cloud.local.runtime import find_proxy  # noqa: E402
from pangeo_cloud.testing.harness import free_port  # noqa: E402


def exit_on_sigterm() -> None:
    """SIGTERM (e.g. from `timeout`) runs the `finally` blocks that stop what was started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p50 of [1, 2, 3, 4] is 2)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def table(rows: list[tuple[str, list[float], list[float]]]) -> str:
    """rows: (measurement, pangeo seconds, baseline seconds) -> the printed table."""
    head = (
        f"{'measurement':<40} {'n':>3} {'pangeo p50':>10} {'p95':>7} "
        f"{'bare p50':>9} {'p95':>7} {'ratio p50':>9} {'ratio p95':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, ours, bare in rows:
        o50, o95, b50, b95 = (
            percentile(ours, 50),
            percentile(ours, 95),
            percentile(bare, 50),
            percentile(bare, 95),
        )
        lines.append(
            f"{name:<40} {len(ours):>3} {o50:>9.2f}s {o95:>6.2f}s "
            f"{b50:>8.2f}s {b95:>6.2f}s {o50 / b50:>8.2f}x {o95 / b95:>8.2f}x"
        )
    return "\n".join(lines)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2).close()
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class BareHub:
    """A plain JupyterHub: CHP, SimpleLocalProcessSpawner, shared password, no hooks."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.password = secrets.token_urlsafe(12)
        self.run_id = "bench-bare-hub-" + secrets.token_hex(6)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> BareHub:
        self.dir.mkdir(parents=True, exist_ok=True)
        chp = find_proxy()
        bindir = os.path.dirname(sys.executable)
        args = ["--allow-root"] if os.geteuid() == 0 else []
        config = textwrap.dedent(
            f"""
            c.JupyterHub.ip = "127.0.0.1"
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {free_port()}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
            c.ConfigurableHTTPProxy.command = [{chp!r}]
            c.JupyterHub.db_url = "sqlite:///{self.dir / "hub.sqlite"}"
            c.JupyterHub.cookie_secret_file = "{self.dir / "cookie_secret"}"
            c.JupyterHub.authenticator_class = "shared-password"
            c.SharedPasswordAuthenticator.user_password = {self.password!r}
            c.SharedPasswordAuthenticator.allow_all = True
            c.JupyterHub.spawner_class = "simple"
            c.SimpleLocalProcessSpawner.home_dir_template = "{self.dir}/homes/{{username}}"
            c.Spawner.cmd = [{os.path.join(bindir, "jupyterhub-singleuser")!r}]
            c.Spawner.args = {args!r}
            c.Spawner.default_url = "/lab"
            c.Spawner.environment = {{"PANGEO_LOCAL_RUN": {self.run_id!r}}}
            c.Spawner.start_timeout = 180
            c.Spawner.http_timeout = 180
            """
        )
        (self.dir / "jupyterhub_config.py").write_text(config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        env["PATH"] = os.pathsep.join([bindir, os.path.dirname(chp), env.get("PATH", "")])
        env["PANGEO_LOCAL_RUN"] = self.run_id
        self.proc = processes.start(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.dir / "jupyterhub_config.py")],
            env=env,
            log=self.dir / "hub.log",
            cwd=self.dir,
        )
        wait_http(f"{self.url}hub/api/", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop(self.proc, timeout=60)
        processes.sweep(self.run_id)


class BareGateway:
    """A plain dask-gateway-server: UnsafeLocalBackend, SimpleAuthenticator, no policy."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.run_id = "bench-bare-gateway-" + secrets.token_hex(6)
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        """The gateway's config file (subclasses add a policy)."""
        dask = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
        return textwrap.dedent(
            f"""
            c.DaskGateway.address = "127.0.0.1:{free_port()}"
            c.Proxy.address = "127.0.0.1:{self.port}"
            c.DaskGateway.backend_class = (
                "dask_gateway_server.backends.local.UnsafeLocalBackend"
            )
            # distributed >= 2026.8 installs only `dask` (see DESIGN.md).
            c.LocalClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
            c.LocalClusterConfig.worker_cmd = [{dask!r}, "worker"]
            c.LocalClusterConfig.environment = {{"PANGEO_LOCAL_RUN": {self.run_id!r}}}
            c.UnsafeLocalBackend.clusters_directory = "{self.dir / "clusters"}"
            """
        )

    def start(self) -> BareGateway:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.config()
        (self.dir / "dask_gateway_config.py").write_text(config)
        env = dict(os.environ, PANGEO_LOCAL_RUN=self.run_id)
        # The gateway imports pangeo_cloud from this checkout when a policy is configured.
        paths = [str(REPO / "src"), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        self.proc = processes.start(
            [sys.executable, "-m", "dask_gateway_server", "-f", "dask_gateway_config.py"],
            env=env,
            log=self.dir / "gateway.log",
            cwd=self.dir,
        )
        wait_http(f"{self.address}/api/health", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop(self.proc, timeout=60)
        processes.sweep(self.run_id)
