"""The scratch bucket's S3-compatible store on loopback.

MinIO server, built from the Go module proxy by ``scripts/install-objectstore.sh``
into the tool cache, keeps its objects under ``<data>/objectstore`` so that a
restart keeps scratch data. Where MinIO could not be built, moto's S3 server (a
Python package of the ``local`` extra) stands in; it keeps objects in memory
only, and `pangeo-cloud up` says so when it starts.

Either way the bucket named by ``custom.pangeo.scratch.url`` is created and
gets the expiry rule (``custom.pangeo.scratch.expiryDays``) as a bucket
lifecycle configuration, as the cloud buckets have.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIFECYCLE_RULE_ID = "pangeo-scratch-expiry"


class ObjectStoreError(RuntimeError):
    """The store did not start or refused the bucket setup; one clear line."""


def tools_dir() -> Path:
    cache = Path(os.environ.get("PANGEO_CACHE_DIR", Path.home() / ".cache" / "pangeo-cloud"))
    return Path(os.environ.get("PANGEO_TOOLS_DIR", cache / "bin"))


def find_minio() -> str | None:
    """MinIO's server binary: $PANGEO_MINIO, PATH, then the tool cache."""
    explicit = os.environ.get("PANGEO_MINIO")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("minio")
    if found:
        return found
    candidate = tools_dir() / "minio"
    return str(candidate) if os.access(candidate, os.X_OK) else None


@dataclass
class StoreSpec:
    """How to start the store, and what clients need to reach it."""

    kind: str  # "minio" or "moto"
    command: list[str]
    env: dict[str, str]
    endpoint: str
    health_url: str
    persistent: bool


def store_spec(
    data_dir: Path, port: int, access_key: str, secret_key: str, *, prefer: str = "auto"
) -> StoreSpec:
    """The command for MinIO if available (or `prefer="minio"`), else moto."""
    endpoint = f"http://127.0.0.1:{port}"
    minio = None if prefer == "moto" else find_minio()
    if prefer == "minio" and minio is None:
        raise ObjectStoreError(
            "minio not found on PATH or in the tool cache; run scripts/install-objectstore.sh"
        )
    if minio:
        return StoreSpec(
            kind="minio",
            command=[
                minio,
                "server",
                str(data_dir / "objectstore"),
                "--address",
                f"127.0.0.1:{port}",
                "--quiet",
            ],
            env={
                "MINIO_ROOT_USER": access_key,
                "MINIO_ROOT_PASSWORD": secret_key,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
                "MINIO_CALLHOME_ENABLE": "off",
                # Check lifecycle rules often enough to be seen working locally.
                "MINIO_SCANNER_SPEED": "default",
            },
            endpoint=endpoint,
            health_url=f"{endpoint}/minio/health/live",
            persistent=True,
        )
    return StoreSpec(
        kind="moto",
        command=[sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={},
        endpoint=endpoint,
        health_url=f"{endpoint}/moto-api/",
        persistent=False,
    )


def wait_healthy(url: str, alive: Any, timeout: float) -> None:
    """Wait until `url` answers (any HTTP status below 500); `alive()` false = gave up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise ObjectStoreError("the object store exited while starting")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise ObjectStoreError(f"the object store did not answer at {url} within {timeout:.0f} s")


def s3_client(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1"):  # noqa: ANN201
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region or "us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def lifecycle_rules(expiry_days: int) -> dict[str, Any]:
    return {
        "Rules": [
            {
                "ID": LIFECYCLE_RULE_ID,
                "Status": "Enabled",
                "Filter": {"Prefix": ""},
                "Expiration": {"Days": int(expiry_days)},
            }
        ]
    }


def ensure_bucket(client: Any, bucket: str, expiry_days: int | None, region: str = "") -> None:
    """Create `bucket` if needed and set its expiry rule (idempotent)."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ObjectStoreError(f"cannot create bucket {bucket!r}: {exc}") from None
    if expiry_days:
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration=lifecycle_rules(expiry_days)
        )


def expiry_days_of(client: Any, bucket: str) -> int | None:
    """The expiry rule's days as the store reports it (None if absent)."""
    from botocore.exceptions import ClientError

    try:
        rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError:
        return None
    for rule in rules:
        if rule.get("ID") == LIFECYCLE_RULE_ID:
            return int(rule["Expiration"]["Days"])
    return None
