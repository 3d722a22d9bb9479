"""GCS scratch credentials: how long google-auth takes to get a token through the broker.

What a user's server pays at each refresh, on loopback: google-auth's
``refresh()`` from the two credentials files (:mod:`pangeo_cloud.broker.google_client`)
through the broker's GCS token endpoint (:class:`~pangeo_cloud.broker.gcs.GCSTokenHandler`,
real tornado server) and its provider to the stand-in of Google's STS. Baseline,
same run: the provider's own token exchange at the same STS stand-in, without
the broker hop (what a client holding the broker's identity would pay). The
hub's token check (one request to the hub per refresh, no cache) is replaced
by a table lookup here, and the STS is a stand-in: the numbers are our
overhead, not Google's latency.

    python benchmarks/bench_gcs_credentials.py [--repeat 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import google.auth
from common import exit_on_sigterm, percentile
from google.auth.transport.requests import Request
from google.oauth2.credentials import Credentials as StaticCredentials
from tornado import web

from pangeo_cloud.broker import google_client
from pangeo_cloud.broker.gcs import GCSProvider, GCSTokenHandler, access_boundary
from pangeo_cloud.ports import free_port
from pangeo_cloud.testing.google_sts import GoogleSTSStandIn

SOURCE = "ya29.bench-source"
HUB_TOKEN = "bench-hub-token"


@contextlib.contextmanager
def broker(provider: GCSProvider) -> Iterator[str]:
    """The broker's GCS token endpoint on loopback (own event loop thread); yields its URL."""

    async def authenticate(token: str) -> str:
        if token != HUB_TOKEN:
            raise web.HTTPError(401, "unknown token")
        return "alice"

    async def issue(username: str) -> dict:
        return await provider.issue(username, "alice", 3600)

    path = "/services/scratch-credentials/" + google_client.TOKEN_ROUTE
    app = web.Application([(path, GCSTokenHandler, {"authenticate": authenticate, "issue": issue})])
    port = free_port()
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def listen() -> None:
            app.listen(port, "127.0.0.1")

        loop.run_until_complete(listen())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def timed_round_robin(
    measurements: dict[str, Callable[[], None]], repeat: int
) -> dict[str, list[float]]:
    """Time each measurement ``repeat`` times, interleaved so machine load hits all alike."""
    for refresh in measurements.values():
        refresh()  # warm-up: connections, imports
    out: dict[str, list[float]] = {name: [] for name in measurements}
    for _ in range(repeat):
        for name, refresh in measurements.items():
            start = time.perf_counter()
            refresh()
            out[name].append(time.perf_counter() - start)
    return out


def credentials_from(info: dict, work: Path) -> google.auth.credentials.Credentials:
    path = work / f"{info['type']}.json"
    path.write_text(json.dumps(info))
    os.environ["GOOGLE_APPLICATION_CREDENTIALS"] = str(path)
    creds, _ = google.auth.default()
    return creds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100, help="refreshes per measurement")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    os.environ["GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"] = "1"
    os.environ["JUPYTERHUB_API_TOKEN"] = HUB_TOKEN
    request = Request()
    with GoogleSTSStandIn() as sts, tempfile.TemporaryDirectory() as tmp:
        sts.add_source_token(SOURCE)
        provider = GCSProvider("pangeo-scratch", StaticCredentials(token=SOURCE), sts.token_url)
        boundary = access_boundary("pangeo-scratch", "alice")
        with broker(provider) as token_url:
            # As in user pods: isolated (-I) and without site-packages (-S), the file
            # needs only the standard library; this is most of the executable's cost.
            command = " ".join(
                shlex.quote(p)
                for p in (sys.executable, "-I", "-S", google_client.__file__, "subject-token")
            )
            static = credentials_from(
                google_client.external_account_info(token_url, command), Path(tmp)
            )
            per_server = credentials_from(
                google_client.authorized_user_info(token_url, HUB_TOKEN), Path(tmp)
            )
            rows = timed_round_robin(
                {
                    "baseline: direct STS exchange": lambda: provider._exchange(boundary, 3600),
                    "broker, authorized-user file": lambda: per_server.refresh(request),
                    "broker, static file (executable)": lambda: static.refresh(request),
                },
                args.repeat,
            )
    base = percentile(rows["baseline: direct STS exchange"], 50)
    print(f"{'measurement':<36} {'n':>4} {'p50':>8} {'p99':>8} {'p50 / baseline':>15}")
    for name, values in rows.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(
            f"{name:<36} {len(values):>4} {p50 * 1000:>6.1f}ms {p99 * 1000:>6.1f}ms "
            f"{p50 / base:>14.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
