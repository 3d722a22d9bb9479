"""Clusters stopped with their server, and what the per-user limits cost at cluster start.

1. Server stop -> all of its clusters stopped, on `pangeo-cloud up` (deployment
   ``local``): a logged-in user with a running server creates 3 clusters; the
   clock starts when the hub has stopped the server (REST ``DELETE``) and stops
   when the gateway reports every cluster STOPPED. Baseline, same run and same
   gateway: the user stopping the same 3 clusters explicitly
   (``Gateway.stop_cluster``). The gateway checks servers every
   ``serverCheckSeconds`` (printed), which bounds the difference.
2. Cluster start (submit -> RUNNING, no workers) with limit checking on
   (``PangeoLocalBackend``) versus off (upstream ``UnsafeLocalBackend``), both
   with the federation's options handler and simple auth, requests alternating
   between the two gateways so that machine load hits both alike.

    python benchmarks/bench_gateway_cleanup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_dask import user_token
from common import BareGateway, exit_on_sigterm, table

from pangeo_cloud.testing.harness import HubUser, UpProcess

N_CLUSTERS = 3
WAIT = 180  # seconds for any state change
POLL = 0.05  # seconds between status polls (the timing resolution)


def wait_all(gateway, names: list[str], status: str) -> float:
    """Poll until every cluster in `names` has `status`; the monotonic time it happened."""
    deadline = time.monotonic() + WAIT
    pending = set(names)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"clusters {sorted(pending)} not {status} within {WAIT} s")
        pending = {n for n in pending if gateway.get_cluster(n).status.name != status}
        if pending:
            time.sleep(POLL)
    return time.monotonic()


def start_clusters(gateway, n: int) -> list[str]:
    names = [gateway.submit() for _ in range(n)]
    wait_all(gateway, names, "RUNNING")
    return names


def stop_server(user: HubUser) -> float:
    """Stop the user's server through the hub; the time the hub says it is stopped."""
    resp = user.session.delete(
        f"{user.base}/hub/api/users/{user.name}/server",
        headers={"X-XSRFToken": user._xsrf()},
        timeout=120,
    )
    resp.raise_for_status()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        model = user.session.get(f"{user.base}/hub/api/user", timeout=30).json()
        if not model.get("servers"):
            return time.monotonic()
        time.sleep(POLL)
    raise RuntimeError(f"the server of {user.name} did not stop within {WAIT} s")


def cleanup_latency(work: Path, repeat: int) -> tuple[list[float], list[float], float]:
    from dask_gateway import Gateway
    from dask_gateway.auth import JupyterHubAuth

    up = UpProcess(data_dir=work / "pangeo")
    with_server, explicit = [], []
    try:
        print("starting pangeo-cloud up ...", flush=True)
        up.start(timeout=300)
        rt = up.runtime
        period = rt["values"]["jupyterhub"]["custom"]["pangeo"]["gateway"].get(
            "serverCheckSeconds", 30
        )
        user = HubUser(up.url, "bench", up.password)
        user.login()
        profile = (user.profiles() or [None])[0]  # the spawn form's first (default) size
        gateway = Gateway(
            address=f"{up.url}services/dask-gateway",
            proxy_address=f"gateway://127.0.0.1:{rt['ports']['gateway']}",
            auth=JupyterHubAuth(api_token=user_token(up, "bench")),
        )
        for i in range(repeat):
            user.spawn(profile)
            user.wait_ready()
            names = start_clusters(gateway, N_CLUSTERS)
            t0 = time.monotonic()
            for name in names:
                gateway.stop_cluster(name)
            explicit.append(wait_all(gateway, names, "STOPPED") - t0)

            names = start_clusters(gateway, N_CLUSTERS)
            t0 = stop_server(user)
            with_server.append(wait_all(gateway, names, "STOPPED") - t0)
            print(
                f"  {i + 1}: server stop -> stopped {with_server[-1]:.2f} s, "
                f"explicit stop {explicit[-1]:.2f} s",
                flush=True,
            )
        gateway.close()
    finally:
        up.stop(check=False)
    return with_server, explicit, float(period)


class PolicyGateway(BareGateway):
    """The federation's gateway policy (options handler, limits) with simple auth."""

    def __init__(self, workdir: Path, limits: bool) -> None:
        super().__init__(workdir)
        self.limits = limits

    def config(self) -> str:
        settings = {
            "scratch": {"url": "s3://bench-scratch", "endpoint": "http://127.0.0.1:9"},
            # No hub here: the server check has nobody to ask.
            "gateway": {"stopClustersWithServer": False},
        }
        policy = textwrap.dedent(
            f"""
            import json
            from pangeo_cloud.gateway.config import configure
            configure(c, json.loads({json.dumps(json.dumps(settings))}), backend="local")
            c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
            """
        )
        if not self.limits:
            policy += (
                'c.DaskGateway.backend_class = "dask_gateway_server.backends.local.'
                'UnsafeLocalBackend"\n'
            )
        # The base config first (addresses, environment), then the policy over it.
        return super().config() + policy


def start_latency(work: Path, repeat: int) -> tuple[list[float], list[float]]:
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    gateways = {
        True: PolicyGateway(work / "limits-on", limits=True),
        False: PolicyGateway(work / "limits-off", limits=False),
    }
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for g in gateways.values():
            g.start()
        clients = {
            on: Gateway(address=g.address, auth=BasicAuth(username="bench"))
            for on, g in gateways.items()
        }
        for i in range(repeat):
            for on in (True, False):
                t0 = time.monotonic()
                name = clients[on].submit()
                times[on].append(wait_all(clients[on], [name], "RUNNING") - t0)
                clients[on].stop_cluster(name)
                wait_all(clients[on], [name], "STOPPED")
            print(
                f"  {i + 1}: start with limits {times[True][-1]:.2f} s, "
                f"without {times[False][-1]:.2f} s",
                flush=True,
            )
        for client in clients.values():
            client.close()
    finally:
        for g in gateways.values():
            g.stop()
    return times[True], times[False]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (5)")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="pangeo-bench-gateway-"))
    try:
        on, off = start_latency(work, args.repeat)
        server, explicit, period = cleanup_latency(work, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"(the gateway checks users' servers every {period:g} s; 'bare' = the baseline)")
    print(
        table(
            [
                (f"{N_CLUSTERS} clusters: server stop -> stopped", server, explicit),
                ("cluster start, limits on vs off", on, off),
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
