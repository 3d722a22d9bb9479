"""The broker's own MinIO identity: created through MinIO's admin API, limited to the bucket.

A real MinIO on loopback (no hub): `ensure_broker_user` (the encrypted add-user
request, the canned policy, its attachment) must give a user that can reach the
scratch bucket and nothing else (no other bucket, no admin API, no bucket
creation), that can call STS AssumeRole, and whose sessions MinIO narrows to one
prefix. Running it twice (as every `up` start does) must work.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from botocore.exceptions import ClientError

from pangeo_cloud.local import objectstore, processes
from pangeo_cloud.ports import free_port

pytestmark = pytest.mark.integration

ROOT = ("rootuser", "root-secret-for-tests")
BROKER = ("scratch-broker-test", "broker-secret-for-tests")


@pytest.fixture(scope="module")
def minio(tmp_path_factory):
    if objectstore.find_minio() is None:
        pytest.skip("MinIO is not built (scripts/install-objectstore.sh)")
    data = tmp_path_factory.mktemp("minio")
    (data / "objectstore").mkdir()
    spec = objectstore.store_spec(data, free_port(), *ROOT, prefer="minio")
    proc = processes.start(spec.command, env={**os.environ, **spec.env}, log=data / "minio.log")
    try:
        objectstore.wait_healthy(spec.health_url, lambda: proc.poll() is None, 60)
        root = objectstore.s3_client(spec.endpoint, *ROOT)
        deadline = time.monotonic() + 60
        while True:  # MinIO answers health before it accepts bucket calls
            try:
                for bucket in ("pangeo-scratch", "elsewhere"):
                    objectstore.ensure_bucket(root, bucket, 7)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        root.put_object(Bucket="elsewhere", Key="private.txt", Body=b"not the broker's")
        yield spec.endpoint, root
    finally:
        processes.stop(proc)


def refused(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def test_broker_user_reaches_the_bucket_only(minio):
    endpoint, _ = minio
    for _ in range(2):  # idempotent: every `up` start runs it
        objectstore.ensure_broker_user(endpoint, *ROOT, "pangeo-scratch", *BROKER)
    broker = objectstore.s3_client(endpoint, *BROKER)
    broker.put_object(Bucket="pangeo-scratch", Key="anyone/x", Body=b"1")
    assert broker.get_object(Bucket="pangeo-scratch", Key="anyone/x")["Body"].read() == b"1"
    assert refused(lambda: broker.get_object(Bucket="elsewhere", Key="private.txt"))
    assert refused(lambda: broker.list_objects_v2(Bucket="elsewhere"))
    assert refused(lambda: broker.create_bucket(Bucket="broker-made"))
    with pytest.raises(objectstore.ObjectStoreError, match="HTTP 403"):
        objectstore.minio_admin(endpoint, *BROKER, "PUT", "/add-user", {"accessKey": "evil"})


def test_broker_user_sessions_are_narrowed_to_one_prefix(minio, monkeypatch):
    from pangeo_cloud.broker.s3 import S3Provider

    endpoint, root = minio
    objectstore.ensure_broker_user(endpoint, *ROOT, "pangeo-scratch", *BROKER)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", BROKER[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", BROKER[1])
    provider = S3Provider(
        "pangeo-scratch", "arn:minio:iam:::role/pangeo-scratch", sts_endpoint=endpoint
    )
    creds = asyncio.run(provider.issue("ann", "ann", 900))
    import botocore.session

    ann = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    ann.put_object(Bucket="pangeo-scratch", Key="ann/own.txt", Body=b"mine")
    root.put_object(Bucket="pangeo-scratch", Key="bob/own.txt", Body=b"bob's")
    assert refused(lambda: ann.get_object(Bucket="pangeo-scratch", Key="bob/own.txt"))
    assert refused(lambda: ann.list_objects_v2(Bucket="pangeo-scratch"))
    assert refused(lambda: ann.get_object(Bucket="elsewhere", Key="private.txt"))
