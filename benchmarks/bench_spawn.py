"""Login to a ready server: `pangeo-cloud up` against a bare JupyterHub, same run.

For each hub: ``--repeat`` single users one after another (p50/p95 over them),
then ``--users`` users logging in and starting at once (p50/p95 over the users).
"Ready" is what the browser waits for: the server answers its API after the
OAuth handshake. Both hubs log in with a shared password; pangeo-cloud's users
pick the Small profile through the spawn form, the bare hub has no form.

A spawn the hub gives up on (the server is stopped or failed) is counted and
reported for each hub, with its reason, and never waited on; times are over
the spawns that succeeded. Exit status 1 if pangeo-cloud had a failed spawn.

    python benchmarks/bench_spawn.py [--users 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
import tempfile
import time
from pathlib import Path

from common import BareHub, exit_on_sigterm, table

from pangeo_cloud.testing.harness import HubUser, SpawnFailed, UpProcess


def login_to_ready(url: str, name: str, password: str, profile: str | None) -> float:
    start = time.monotonic()
    user = HubUser(url, name, password)
    user.login()
    user.spawn(profile)
    user.wait_ready(timeout=900)
    return time.monotonic() - start


def _collect(futures: list, failures: list[str]) -> list[float]:
    times = []
    for future in futures:
        try:
            times.append(future.result())
        except (SpawnFailed, RuntimeError) as exc:
            failures.append(str(exc))
    return times


def measure(url: str, password: str, prefix: str, profile: str | None, args) -> dict:
    failures: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        single = _collect(
            [
                pool.submit(login_to_ready, url, f"{prefix}-solo{i}", password, profile)
                for i in range(args.repeat)
            ],
            failures,
        )
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.users) as pool:
        futures = [
            pool.submit(login_to_ready, url, f"{prefix}-crowd{i}", password, profile)
            for i in range(args.users)
        ]
        crowd = _collect(futures, failures)
    return {"single": single, "crowd": crowd, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50, help="users starting at once (50)")
    parser.add_argument("--repeat", type=int, default=5, help="single-user repetitions (5)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    work = Path(tempfile.mkdtemp(prefix="pangeo-bench-spawn-"))
    results = {}
    up = UpProcess(data_dir=work / "pangeo")
    try:
        print(f"starting pangeo-cloud up in {work / 'pangeo'} ...", flush=True)
        up.start(timeout=300)
        print(f"  up after {up.ready_seconds:.1f} s; measuring ...", flush=True)
        results["pangeo"] = measure(up.url, up.password, "p", "small", args)
    finally:
        up.stop(check=False)
    bare = BareHub(work / "bare")
    try:
        print("starting the bare JupyterHub ...", flush=True)
        bare.start()
        print("  measuring ...", flush=True)
        results["bare"] = measure(bare.url, bare.password, "b", None, args)
    finally:
        bare.stop()

    print()
    print(
        table(
            [
                (
                    "login -> ready server, 1 user",
                    results["pangeo"]["single"],
                    results["bare"]["single"],
                ),
                (
                    f"login -> ready server, {args.users} users at once",
                    results["pangeo"]["crowd"],
                    results["bare"]["crowd"],
                ),
            ]
        )
    )
    print(f"\n`pangeo-cloud up` was ready {up.ready_seconds:.1f} s after it started.")
    for name in ("pangeo", "bare"):
        failures = results[name]["failures"]
        print(f"failed spawns ({name}): {len(failures)}")
        for reason in failures:
            print(f"  - {reason}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if results["pangeo"]["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
