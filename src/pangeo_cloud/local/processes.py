"""Processes started by `pangeo-cloud up`: each in its own process group.

Everything the runtime starts (directly, or through the hub: the proxy,
services, user servers, Dask schedulers and workers) carries
``PANGEO_LOCAL_RUN=<run id>`` in its environment. Stopping is orderly first
(SIGTERM to the hub's group: JupyterHub stops the servers, services and proxy
it started), then :func:`sweep` ends whatever still carries the tag, so that
nothing of this run is left behind, and nothing else is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from pangeo_cloud import toolcache
from pangeo_cloud.local.errors import LocalRuntimeError

TAG = "PANGEO_LOCAL_RUN"


def start(
    command: list[str], *, env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `command` in a new session (its own process group), output to `log`."""
    with open(log, "ab") as out:
        os.chmod(log, 0o600)
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the process group, wait, then SIGKILL it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group may outlive its leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def tagged(run_id: str) -> Iterator[int]:
    """PIDs of live processes whose environment has PANGEO_LOCAL_RUN=run_id."""
    needle = f"{TAG}={run_id}".encode()
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            yield int(entry.name)


def sweep(run_id: str, grace: float = 5, exclude: set[int] | None = None) -> list[int]:
    """End every process of this run still alive: SIGTERM, then SIGKILL. Returns the PIDs."""
    pids = [pid for pid in tagged(run_id) if pid not in (exclude or set())]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[-1].split()[0]
        return state != "Z"
    except OSError:
        return False


def answers(url: str, ok: Callable[[int], bool] = lambda code: code == 200) -> bool:
    """Whether a started process answers at `url` (any HTTP status `ok` accepts)."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return ok(resp.status)
    except urllib.error.HTTPError as exc:
        return ok(exc.code)
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    """The last `lines` of a process's log, indented for a message."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text)


def find_proxy() -> str:
    """configurable-http-proxy: PATH, then the tool cache of scripts/install-system.sh."""
    bindir = toolcache.node_dir() / "bin"
    found = toolcache.find("configurable-http-proxy", bindir)
    if found:
        return found
    raise LocalRuntimeError(
        f"configurable-http-proxy (npm) not found on PATH or in {bindir}; "
        "run scripts/install-system.sh (or `make system`)"
    )
