"""Scratch throughput with brokered versus static credentials, and credential issue latency.

One `pangeo-cloud up` (MinIO), one user with a running server. Throughput:
a fresh process with the server's environment writes SIZE MiB to its scratch
prefix as a multipart upload in 8 MiB parts, then reads it back in 8 MiB ranged
GETs, with

- brokered credentials: the server's own environment (AWS_CONFIG_FILE whose
  credential_process runs the broker's client: STS session credentials for the
  user's prefix), as users run;
- static credentials: the same environment with the store's key in
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (what `up` handed every user before
  the broker; botocore then never calls credential_process).

Rounds alternate the two; the printed ratio is brokered / static throughput
(target >= 0.95). Latency: the broker's HTTP API (token check with the hub +
STS AssumeRole) and the whole credential_process (python3 client.py aws), each
p50 / p99.

    python benchmarks/bench_scratch.py [--size-mib 1024] [--rounds 2] [--issues 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import exit_on_sigterm, percentile

from pangeo_cloud.testing.harness import HubUser, UpProcess

PART = 8 * 2**20


def transfer(size_mib: int) -> dict[str, float]:
    """Write then read SIZE MiB in 8 MiB parts, in this process's environment."""
    from urllib.parse import urlparse

    import boto3

    scratch = os.environ["PANGEO_SCRATCH"]
    bucket, prefix = urlparse(scratch).netloc, urlparse(scratch).path.strip("/")
    key = f"{prefix}/bench-{os.getpid()}.bin"
    s3 = boto3.client("s3")
    method = boto3.Session().get_credentials().method
    data = os.urandom(PART)
    parts = max(1, size_mib * 2**20 // PART)
    start = time.monotonic()
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = []
    for n in range(1, parts + 1):
        part = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=data)
        etags.append({"ETag": part["ETag"], "PartNumber": n})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": etags}
    )
    wrote = time.monotonic() - start
    start = time.monotonic()
    for n in range(parts):
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={n * PART}-{(n + 1) * PART - 1}")
        assert len(body["Body"].read()) == PART
    read = time.monotonic() - start
    s3.delete_object(Bucket=bucket, Key=key)
    return {"write": wrote, "read": read, "mib": parts * PART / 2**20, "method": method}


def run_transfer(env: dict[str, str], size_mib: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--transfer", str(size_mib)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def issue_latency(env: dict[str, str], n: int) -> list[float]:
    """The broker's API as the client calls it (hub token check + STS AssumeRole)."""
    url = env["PANGEO_SCRATCH_BROKER_URL"] + "api/credentials"
    request = urllib.request.Request(
        url, headers={"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"}
    )
    times = []
    for _ in range(n):
        start = time.monotonic()
        with urllib.request.urlopen(request, timeout=30) as resp:
            json.loads(resp.read())
        times.append(time.monotonic() - start)
    return times


def process_latency(env: dict[str, str], n: int) -> list[float]:
    """What botocore waits for: the whole credential_process command."""
    config = Path(env["AWS_CONFIG_FILE"]).read_text()
    line = next(x for x in config.splitlines() if x.startswith("credential_process"))
    import shlex

    command = shlex.split(line.split("=", 1)[1])
    times = []
    for _ in range(n):
        start = time.monotonic()
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)
        times.append(time.monotonic() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="data per transfer (1024)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode (2)")
    parser.add_argument("--issues", type=int, default=200, help="credential issues timed (200)")
    parser.add_argument("--transfer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.transfer:
        print(json.dumps(transfer(args.transfer)), flush=True)
        return 0
    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="pangeo-bench-scratch-"))
    up = UpProcess(data_dir=work / "up")
    results: dict[str, list[dict]] = {"brokered": [], "static": []}
    try:
        print("starting pangeo-cloud up ...", flush=True)
        up.start(timeout=300)
        if up.runtime["store"]["kind"] != "minio":
            print("warning: moto stands in for MinIO: brokered credentials are not enforced")
        user = HubUser(up.url, "bench", up.password)
        user.login()
        user.spawn("small")
        user.wait_ready()
        brokered = up.server_env("bench")
        store = up.runtime["store"]
        keys = {"AWS_ACCESS_KEY_ID": "access_key", "AWS_SECRET_ACCESS_KEY": "secret_key"}
        static = {**brokered, **{name: store[key] for name, key in keys.items()}}
        for i in range(args.rounds):
            for mode, env in (("static", static), ("brokered", brokered)):
                r = run_transfer(env, args.size_mib)
                results[mode].append(r)
                print(
                    f"  round {i + 1} {mode:<8} ({r['method']}): write {r['mib'] / r['write']:.0f}"
                    f" MiB/s, read {r['mib'] / r['read']:.0f} MiB/s",
                    flush=True,
                )
        api = issue_latency(brokered, args.issues)
        proc = process_latency(brokered, max(10, args.issues // 10))
    finally:
        up.stop(check=False)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(
        f"{'scratch throughput (' + str(args.size_mib) + ' MiB, 8 MiB parts)':<44}"
        f" {'brokered':>10} {'static':>10} {'ratio':>7}"
    )
    for what in ("write", "read"):
        # Best of the rounds per mode: the machine is shared, the best run is the least disturbed.
        b = max(r["mib"] / r[what] for r in results["brokered"])
        s = max(r["mib"] / r[what] for r in results["static"])
        print(f"  {what:<42} {b:>6.0f} MiB/s {s:>6.0f} MiB/s {b / s:>6.2f}x")
    print()
    print(f"{'credential issue latency':<44} {'n':>4} {'p50':>8} {'p99':>8}")
    for name, times in (
        ("broker API (hub token check + STS)", api),
        ("credential_process (python3 client.py aws)", proc),
    ):
        print(
            f"  {name:<42} {len(times):>4} {percentile(times, 50) * 1000:>6.1f}ms"
            f" {percentile(times, 99) * 1000:>6.1f}ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
