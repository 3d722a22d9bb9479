"""`pangeo-cloud up` refuses bad input with one line naming the option that fixes it.

Each case runs the real command as a subprocess and checks: a non-zero exit,
exactly one line on stderr naming the option, and no process left running
that belongs to the attempt.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pangeo_cloud.testing.harness import UpProcess, free_port, up_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def run_up(args: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    if "--port" not in args:  # never depend on 8000 being free on this machine
        args = [*args, "--port", str(free_port())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    return subprocess.run(
        [*(prefix or []), *up_command(), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line or environment contains `text`."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for part in ("cmdline", "environ"):
            try:
                if needle in (entry / part).read_bytes():
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return found


def assert_one_line_naming(result: subprocess.CompletedProcess, option: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert option in lines[0], lines[0]
    assert lines[0].startswith("pangeo-cloud up: error: "), lines[0]
    return lines[0]


def test_port_in_use(tmp_path):
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_up(["--port", str(port), "--data-dir", str(data)])
    line = assert_one_line_naming(result, "--port")
    assert str(port) in line
    assert processes_mentioning(str(data)) == []


def test_data_dir_without_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    data = locked / "data"
    prefix = None
    if os.geteuid() == 0:
        # Root ignores permission bits; drop the capabilities that let it.
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
        if not any(
            os.access(os.path.join(d, "setpriv"), os.X_OK)
            for d in os.environ.get("PATH", "").split(":")
        ):
            pytest.skip("running as root and setpriv (util-linux) is not installed")
    try:
        result = run_up(["--port", str(free_port()), "--data-dir", str(data)], prefix=prefix)
    finally:
        locked.chmod(0o700)
    line = assert_one_line_naming(result, "--data-dir")
    assert "Permission denied" in line
    assert not data.exists()
    assert processes_mentioning(str(data)) == []


def test_unknown_deployment(tmp_path):
    data = tmp_path / "data"
    result = run_up(["--deployment", "no-such-place", "--data-dir", str(data)])
    line = assert_one_line_naming(result, "--deployment")
    assert "no-such-place" in line and "local" in line  # names the known ones
    assert not data.exists()
    assert processes_mentioning(str(data)) == []


def test_unknown_stage(tmp_path):
    data = tmp_path / "data"
    result = run_up(["--stage", "prod", "--data-dir", str(data)])
    line = assert_one_line_naming(result, "--stage")
    assert "dev" in line


def test_github_login_needs_both_client_options(tmp_path):
    result = run_up(["--github-client-id", "abc", "--data-dir", str(tmp_path / "data")])
    assert_one_line_naming(result, "--github-client-secret")


def test_github_deployment_without_client_options(tmp_path):
    result = run_up(
        ["--deployment", "aws-us-west-2", "--stage", "staging", "--data-dir", str(tmp_path / "d")]
    )
    assert_one_line_naming(result, "--github-client-id")


def test_second_up_on_the_same_data_dir_is_refused(tmp_path):
    up = UpProcess(data_dir=tmp_path / "data").start(timeout=240)
    try:
        result = run_up(["--port", str(free_port()), "--data-dir", str(up.data_dir)])
        line = assert_one_line_naming(result, "--data-dir")
        assert "in use" in line
        # The refused attempt did not disturb the running one.
        assert up.proc.poll() is None
    finally:
        assert up.stop() == []
