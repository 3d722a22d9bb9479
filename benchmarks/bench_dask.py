"""A Dask cluster from request to 2 running workers: pangeo-cloud against a bare gateway.

pangeo-cloud: `pangeo-cloud up`'s gateway (a hub service behind the hub's
proxy, our options handler and limits, JupyterHub token auth), reached as a
notebook reaches it. Baseline, same run: a plain dask-gateway-server with the
same UnsafeLocalBackend and simple auth. Each repetition times
``new_cluster()`` + ``scale(2)`` until the scheduler sees 2 workers; the
shutdown is not timed. Each repetition runs in a fresh Python process, as each
notebook is one: with dask-gateway 2026.3.0 / distributed 2026.8, the third or
fourth cluster created from one process hangs in ``wait_for_workers`` (with
the bare gateway too).

    python benchmarks/bench_dask.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BareGateway, exit_on_sigterm, table

from pangeo_cloud.testing.harness import HubUser, UpProcess

WAIT = 180  # seconds for 2 workers


def cluster_to_two_workers(spec: dict) -> float:
    """Time one cluster in a fresh process (see the module docstring)."""
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one-cluster", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=WAIT + 60,
    )
    for line in result.stdout.splitlines():
        if line.startswith("SECONDS "):
            return float(line.split()[1])
    raise RuntimeError(f"the cluster did not reach 2 workers:\n{result.stdout}{result.stderr}")


def one_cluster(spec: dict) -> float:
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth, JupyterHubAuth

    if spec["auth"] == "jupyterhub":
        auth = JupyterHubAuth(api_token=spec["token"])
    else:
        auth = BasicAuth(username=spec["username"])
    gateway = Gateway(address=spec["address"], proxy_address=spec.get("proxy_address"), auth=auth)
    start = time.monotonic()
    cluster = gateway.new_cluster()
    try:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=WAIT)
        took = time.monotonic() - start
        client.close()
    finally:
        cluster.shutdown()
        gateway.close()
    return took


def user_token(up: UpProcess, name: str) -> str:
    """A token like a notebook server's: it may reach the dask-gateway service."""
    user = HubUser(up.url, name, up.password)
    user.login()
    resp = user.session.post(
        f"{up.url}hub/api/users/{name}/tokens",
        json={
            "scopes": [
                "access:services!service=dask-gateway",
                "read:users:name!user",
                "read:users:groups!user",
            ],
            "note": "benchmark",
        },
        headers={"X-XSRFToken": user._xsrf()},
        timeout=60,
    )
    resp.raise_for_status()
    return resp.json()["token"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="clusters per gateway (5)")
    parser.add_argument("--one-cluster", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    exit_on_sigterm()
    if args.one_cluster:
        print(f"SECONDS {one_cluster(json.loads(args.one_cluster)):.4f}", flush=True)
        return 0

    work = Path(tempfile.mkdtemp(prefix="pangeo-bench-dask-"))
    ours: list[float] = []
    bare_times: list[float] = []
    up = UpProcess(data_dir=work / "pangeo")
    try:
        print("starting pangeo-cloud up ...", flush=True)
        up.start(timeout=300)
        rt = up.runtime
        # The gateway stops the clusters of users without a running server.
        owner = HubUser(up.url, "bench", up.password)
        owner.login()
        owner.spawn((owner.profiles() or [None])[0])  # the spawn form's first size
        owner.wait_ready()
        spec = {
            "address": f"{up.url}services/dask-gateway",
            "proxy_address": f"gateway://127.0.0.1:{rt['ports']['gateway']}",
            "auth": "jupyterhub",
            "token": user_token(up, "bench"),
        }
        for i in range(args.repeat):
            ours.append(cluster_to_two_workers(spec))
            print(f"  pangeo-cloud cluster {i + 1}: {ours[-1]:.2f} s", flush=True)
    finally:
        up.stop(check=False)
    bare = BareGateway(work / "bare")
    try:
        print("starting the bare dask-gateway-server ...", flush=True)
        bare.start()
        spec = {"address": bare.address, "auth": "basic", "username": "bench"}
        for i in range(args.repeat):
            bare_times.append(cluster_to_two_workers(spec))
            print(f"  bare cluster {i + 1}: {bare_times[-1]:.2f} s", flush=True)
    finally:
        bare.stop()

    print()
    print(table([("Dask cluster request -> 2 running workers", ours, bare_times)]))
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
