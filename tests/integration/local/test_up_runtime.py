"""A real `pangeo-cloud up`: what it starts, what it keeps, how it stops.

Over plain HTTP (the browser flows are in tests/e2e): the printed login works,
profiles reach the server's environment, restricted profiles are offered only
to their group, the scratch store has the bucket and the expiry rule, SIGTERM
stops every process of the run, and a restart keeps homes, scratch objects
and the password.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from pangeo_cloud.local import objectstore, processes
from pangeo_cloud.testing.harness import HubUser, UpProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def chp():
    from pangeo_cloud.local.runtime import LocalRuntimeError, find_proxy

    try:
        return find_proxy()
    except LocalRuntimeError as exc:
        pytest.skip(str(exc))


def server_env(up: UpProcess, user: str) -> dict[str, str]:
    return up.server_env(user)


def test_up_serves_profiles_scratch_and_stops_clean_then_restarts_with_data(tmp_path, chp):
    data = tmp_path / "data"
    up = UpProcess(data_dir=data).start(timeout=240)
    try:
        out = up.text
        assert f"Open:     {up.url}" in out
        assert up.password in out  # printed with the URL
        assert stat.S_IMODE(os.stat(data / "secrets.json").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(data / "run" / "runtime.json").st_mode) == 0o600

        # Operators (a group password) see the restricted profile; others do not.
        olga = HubUser(up.url, "olga", up.secrets["group_passwords"]["operators"])
        olga.login()
        assert olga.profiles() == ["small", "medium", "large", "huge"]
        alice = HubUser(up.url, "alice", up.password)
        alice.login()
        assert alice.profiles() == ["small", "medium", "large"]
        alice.spawn("medium")
        alice.wait_ready()

        env = server_env(up, "alice")
        rt = up.runtime
        assert env["PANGEO_SCRATCH"] == "s3://pangeo-scratch/alice/"
        assert env["AWS_ENDPOINT_URL"] == rt["store"]["endpoint"]
        assert env["CPU_LIMIT"] == "2.0" and env["MEM_LIMIT"] == str(
            4 * 2**30
        )  # Medium: "4G", JupyterHub units
        assert env["DASK_GATEWAY__ADDRESS"] == f"{up.url}services/dask-gateway"
        assert env["DASK_GATEWAY__PROXY_ADDRESS"] == f"gateway://127.0.0.1:{rt['ports']['gateway']}"
        assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
        # KubeSpawner-style formatting: the client expands it from JUPYTER_IMAGE_SPEC.
        assert env["DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE"] == "{JUPYTER_IMAGE_SPEC}"
        assert env["JUPYTER_IMAGE_SPEC"] == "pangeo/pangeo-notebook:2026.11.18"
        assert env["HOME"] == str(data / "homes" / "alice")

        # The idle culler runs as a hub service with the values' cull settings.
        cmdlines = []
        for pid in processes.tagged(rt["run_id"]):
            with contextlib.suppress(OSError):
                cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        culler = [c for c in cmdlines if b"jupyterhub_idle_culler" in c]
        assert len(culler) == 1, cmdlines
        assert b"--timeout=3600" in culler[0] and b"--cull-every=600" in culler[0]
        assert any(b"pangeo_cloud.local.gateway" in c for c in cmdlines)

        store = rt["store"]
        client = objectstore.s3_client(store["endpoint"], store["access_key"], store["secret_key"])
        assert objectstore.expiry_days_of(client, "pangeo-scratch") == 7
        client.put_object(Bucket="pangeo-scratch", Key="alice/kept.txt", Body=b"kept")
        (data / "homes" / "alice" / "notes.txt").write_text("kept too\n")
        password = up.password
        run_id = rt["run_id"]

        # SIGTERM (as a service manager would) stops every process of the run.
        os.kill(up.proc.pid, signal.SIGTERM)
        up.proc.wait(90)
        assert up.proc.returncode == 0
        assert list(processes.tagged(run_id)) == []
        assert "stopped; homes and scratch data are kept" in up.text
    finally:
        up.stop(check=False)

    again = UpProcess(data_dir=data).start(timeout=240)
    try:
        assert again.password == password
        store = again.runtime["store"]
        client = objectstore.s3_client(store["endpoint"], store["access_key"], store["secret_key"])
        if store["kind"] == "minio":  # moto, the fallback, keeps objects in memory only
            body = client.get_object(Bucket="pangeo-scratch", Key="alice/kept.txt")["Body"].read()
            assert body == b"kept"
        assert (data / "homes" / "alice" / "notes.txt").read_text() == "kept too\n"
        alice = HubUser(again.url, "alice", password)
        alice.login()
        alice.spawn("small")
        alice.wait_ready()
        assert server_env(again, "alice")["MEM_LIMIT"] == str(2 * 2**30)  # Small this time
    finally:
        started = time.monotonic()
        assert again.stop() == []
        assert time.monotonic() - started < 60
