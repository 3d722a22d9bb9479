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

import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pangeo_cloud import toolcache

# botocore and cryptography come with the `local` extra (pyproject.toml), not with the
# CLI's dependencies: they are imported where used, so that this module loads without them.
from pangeo_cloud.broker.policy import OBJECT_ACTIONS

LIFECYCLE_RULE_ID = "pangeo-scratch-expiry"


class ObjectStoreError(RuntimeError):
    """The store did not start or refused the bucket setup; one clear line."""


def find_minio() -> str | None:
    """MinIO's server binary: $PANGEO_MINIO, PATH, then the tool cache."""
    explicit = os.environ.get("PANGEO_MINIO")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return toolcache.find("minio")


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


def s3_client(endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1"):
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


# -- the broker's own MinIO identity ------------------------------------------------
#
# The scratch-credentials broker must not hold MinIO's root key. It gets a
# dedicated MinIO user whose policy allows the scratch bucket only; the broker
# calls MinIO's STS AssumeRole with that user's keys and a per-user session
# policy, and MinIO intersects the two. MinIO's admin API (what `mc admin`
# speaks) creates the user: SigV4-signed HTTP, and for add-user a body
# encrypted with the root secret (madmin-go's EncryptData format, the PBKDF2 +
# AES-256-GCM variant, which every MinIO server accepts).

BROKER_POLICY_NAME = "pangeo-scratch-broker"
_ADMIN = "/minio/admin/v3"
_SIO_BUFSIZE = 1 << 14  # sio-go's BufSize
_PBKDF2_AES_GCM = 0x02
_PBKDF2_COST = 8192


def broker_user_policy(bucket: str) -> dict[str, Any]:
    """What the broker's MinIO user may do: every user's prefix, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
        ],
    }


def madmin_encrypt(password: str, data: bytes) -> bytes:
    """madmin-go EncryptData: salt(32) | 0x02 | nonce(8) | sio-go stream (AES-256-GCM).

    sio-go seals the plaintext in 16 KiB fragments, nonce = nonce(8) || LE32(seq);
    fragment 0 is the empty message whose tag becomes the associated data
    (prefixed 0x00, or 0x80 for the final fragment) of the data fragments.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    salt = os.urandom(32)
    nonce = os.urandom(8)
    key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_COST, 32)
    aead = AESGCM(key)

    def seq_nonce(seq: int) -> bytes:
        return nonce + seq.to_bytes(4, "little")

    tag = aead.encrypt(seq_nonce(0), b"", b"")
    out = bytearray(salt + bytes([_PBKDF2_AES_GCM]) + nonce)
    seq = 1
    # Full fragments while more than one fragment's worth remains; the rest is final.
    while len(data) > _SIO_BUFSIZE:
        out += aead.encrypt(seq_nonce(seq), data[:_SIO_BUFSIZE], b"\x00" + tag)
        data = data[_SIO_BUFSIZE:]
        seq += 1
    out += aead.encrypt(seq_nonce(seq), data, b"\x80" + tag)
    return bytes(out)


def minio_admin(
    endpoint: str,
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes = b"",
) -> bytes:
    """One signed request to MinIO's admin API; ObjectStoreError on refusal."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{endpoint}{_ADMIN}{path}?{urlencode(query)}"
    request = AWSRequest(method=method, url=url, data=body)
    S3SigV4Auth(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        url, data=body or None, method=method, headers=dict(request.headers.items())
    )
    try:
        with urllib.request.urlopen(prepared, timeout=30) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise ObjectStoreError(f"MinIO admin {path} refused: HTTP {exc.code} {detail}") from None


def ensure_broker_user(
    endpoint: str, root_key: str, root_secret: str, bucket: str, user_key: str, user_secret: str
) -> None:
    """Create (or update) the broker's MinIO user with the bucket-only policy (idempotent)."""

    def admin(method: str, path: str, query: dict[str, str], body: bytes = b"") -> bytes:
        return minio_admin(endpoint, root_key, root_secret, method, path, query, body)

    policy = json.dumps(broker_user_policy(bucket)).encode()
    admin("PUT", "/add-canned-policy", {"name": BROKER_POLICY_NAME}, policy)
    user = json.dumps({"secretKey": user_secret, "status": "enabled"}).encode()
    admin("PUT", "/add-user", {"accessKey": user_key}, madmin_encrypt(root_secret, user))
    admin(
        "PUT",
        "/set-user-or-group-policy",
        {"policyName": BROKER_POLICY_NAME, "userOrGroup": user_key, "isGroup": "false"},
    )
