"""Drive a real `pangeo-cloud up` from tests and benchmarks.

:class:`UpProcess` starts the command as a subprocess on free loopback ports
with its own data directory, waits (with a timeout) until it prints that it is
up, and stops it with SIGINT as a person would with Ctrl-C; :meth:`UpProcess.stop`
then checks that no process of the run is left. :class:`HubUser` logs in and
starts servers over plain HTTP, as the browser does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pangeo_cloud.local import processes
from pangeo_cloud.ports import free_port


def _stop_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ctrl-C the child if the test or benchmark process dies (Linux PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG


def up_command() -> list[str]:
    """`pangeo-cloud up`, run through the CLI module as a user runs it."""
    return [sys.executable, "-m", "pangeo_cloud.cli", "up"]


class SpawnFailed(RuntimeError):
    """The hub gave up on a user's server (it is no longer starting or running)."""


@dataclass
class UpProcess:
    """One `pangeo-cloud up` subprocess (see the module docstring)."""

    data_dir: Path
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)
    ready_seconds: float | None = None

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def text(self) -> str:
        return "".join(self.output)

    def start(self, timeout: float = 240) -> UpProcess:
        cmd = [
            *up_command(),
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        env = dict(self.env if self.env is not None else os.environ)
        for key in list(env):
            if key.startswith(("JUPYTERHUB_", "DASK_GATEWAY")):
                del env[key]
        started = time.monotonic()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.2):
                self.ready_seconds = time.monotonic() - started
                return self
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise RuntimeError(
                    f"pangeo-cloud up exited with {self.proc.returncode}:\n{self.text}"
                )
        self.stop(check=False)
        raise RuntimeError(f"pangeo-cloud up was not up within {timeout} s:\n{self.text}")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith("pangeo-cloud is up"):
                self._ready.set()

    @property
    def secrets(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "secrets.json").read_text())

    @property
    def runtime(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "run" / "runtime.json").read_text())

    @property
    def password(self) -> str:
        return self.secrets["user_password"]

    def server_env(self, user: str) -> dict[str, str]:
        """The environment of `user`'s running server process (read from /proc)."""
        home = str(self.data_dir / "homes" / user)
        for pid in processes.tagged(self.runtime["run_id"]):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if f"--ServerApp.root_dir={home}".encode() in cmdline:
                pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
                return {k.decode(): v.decode() for k, v in pairs}
        raise AssertionError(f"no server process for {user}")

    def log(self, name: str = "hub") -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def stop(self, timeout: float = 90, check: bool = True) -> list[int]:
        """Ctrl-C, wait; returns PIDs of this run still alive (killed), [] when clean."""
        if self.proc is None:
            return []
        run_id = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            run_id = self.runtime["run_id"]
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        left = list(processes.tagged(run_id)) if run_id else []
        if left:
            processes.sweep(run_id)
        if check and left:
            raise RuntimeError(f"pangeo-cloud up left processes running: {left}")
        return left


class HubUser:
    """A person's browser session with the hub, over plain HTTP (requests)."""

    def __init__(self, base_url: str, name: str, password: str) -> None:
        import requests

        self.base = base_url.rstrip("/")
        self.name = name
        self.password = password
        self.session = requests.Session()

    def _xsrf(self) -> str:
        return self.session.cookies.get("_xsrf", path="/hub/") or ""

    def login(self) -> None:
        self.session.get(f"{self.base}/hub/login", timeout=30)
        resp = self.session.post(
            f"{self.base}/hub/login?next=",
            data={"username": self.name, "password": self.password, "_xsrf": self._xsrf()},
            timeout=60,
        )
        if resp.status_code != 200 or "/hub/login" in resp.url:
            raise RuntimeError(f"login of {self.name} failed: HTTP {resp.status_code}")

    def profiles(self) -> list[str]:
        page = self.session.get(f"{self.base}/hub/spawn", timeout=60).text
        return re.findall(r'name="profile" id="[^"]+" value="([^"]+)"', page)

    def spawn(self, profile: str | None = None) -> None:
        if profile is None:  # a hub without a spawn form starts on GET
            resp = self.session.get(f"{self.base}/hub/spawn", timeout=120)
        else:
            data = {"_xsrf": self._xsrf(), "profile": profile}
            resp = self.session.post(f"{self.base}/hub/spawn", data=data, timeout=120)
        if resp.status_code >= 400:
            raise RuntimeError(f"spawn of {self.name} failed: HTTP {resp.status_code}")

    def server_model(self) -> dict[str, Any] | None:
        """The hub's model of this user's default server; None when it has none.

        Read through the hub's REST API with the login cookie (and the XSRF
        header JupyterHub requires for cookie-authenticated API calls).
        """
        resp = self.session.get(
            f"{self.base}/hub/api/user", headers={"X-XSRFToken": self._xsrf()}, timeout=30
        )
        resp.raise_for_status()
        return (resp.json().get("servers") or {}).get("")

    def wait_ready(self, timeout: float = 180, check_every: float = 2.0) -> None:
        """Wait until the server answers as the browser sees it (after its OAuth login).

        Raises :class:`SpawnFailed` as soon as the hub no longer has a server for
        the user (it failed or was stopped): a failed spawn is reported, never
        waited on.
        """
        deadline = time.monotonic() + timeout
        url = f"{self.base}/user/{self.name}/api/status"
        page = f"{self.base}/user/{self.name}/lab"
        next_check = time.monotonic() + check_every
        strangers = 0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                resp = self.session.get(url, timeout=30)
                if resp.status_code == 200:
                    return
                served = urlsplit(resp.url).path.startswith(f"/user/{self.name}/")
                if served and resp.status_code in (403, 404):
                    # The server answered (not the hub's "not running" page) but
                    # without its login cookie: jupyter-server says 403 or 404.
                    landing = self.session.get(page, timeout=60)
                    strangers = strangers + 1 if landing.status_code == 404 else 0
                    if strangers >= 5:
                        # Even its own page is unknown there: the proxy sends this
                        # user to a server that is not theirs (a port taken twice).
                        raise SpawnFailed(
                            f"/user/{self.name}/ is routed to a server that does not serve it"
                        )
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + check_every
                with contextlib.suppress(OSError):
                    if self.server_model() is None:
                        raise SpawnFailed(f"the hub stopped the server of {self.name}")
            time.sleep(0.2)
        raise RuntimeError(f"the server of {self.name} was not ready within {timeout} s")
