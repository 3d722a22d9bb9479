"""What a user's code does with its scratch, run with the environment of that user's server.

``python scratch_probe.py server OTHER_PREFIX``: in this process (the server's
environment: its token, AWS_CONFIG_FILE, PANGEO_SCRATCH; no keys);
``python scratch_probe.py worker OTHER_PREFIX``: the same function on a worker
of a new Dask Gateway cluster of this user (GatewayCluster() without arguments);
``python scratch_probe.py refresh``: one client writing across three reported expiries.

Prints one JSON object: own round trips, then each cross-user attempt's outcome
(the S3 error code, or "allowed").
"""

from __future__ import annotations

import json
import os
import sys
import time


def s3_error(call) -> str:
    """The S3 error code of ``call()``, or "allowed"."""
    import urllib.error

    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        # A refused HEAD has no body to carry the code: S3 answers a bare 403.
        return "AccessDenied" if code == "403" else code
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        return "AccessDenied" if "<Code>AccessDenied</Code>" in body else f"HTTP {exc.code} {body}"
    except PermissionError:
        return "AccessDenied"
    return "allowed"


def probe(other: str) -> dict:
    """Own prefix round trips, then cross-user attempts against ``other``'s prefix."""
    import urllib.request
    from urllib.parse import urlparse

    import boto3
    import fsspec
    import numpy as np
    import zarr

    scratch = os.environ["PANGEO_SCRATCH"]
    bucket = urlparse(scratch).netloc
    own = urlparse(scratch).path.strip("/")
    s3 = boto3.client("s3")
    out: dict = {"prefix": own, "has_static_key": "AWS_ACCESS_KEY_ID" in os.environ}

    # Own prefix: zarr through fsspec exactly as the user guide says, boto3, multipart.
    mapper = fsspec.get_mapper(scratch + "probe.zarr")
    data = np.arange(1000, dtype="int32").reshape(10, 100)
    zarr.create_array(mapper, data=data, chunks=(5, 50), overwrite=True)
    out["own_zarr"] = bool((zarr.open_array(mapper, mode="r")[:] == data).all())
    s3.put_object(Bucket=bucket, Key=f"{own}/note.txt", Body=b"mine")
    out["own_read"] = s3.get_object(Bucket=bucket, Key=f"{own}/note.txt")["Body"].read() == b"mine"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{own}/")
    out["own_list"] = sorted(o["Key"] for o in listed.get("Contents", []))[:3]
    mp = s3.create_multipart_upload(Bucket=bucket, Key=f"{own}/big.bin")
    part = s3.upload_part(
        Bucket=bucket, Key=f"{own}/big.bin", UploadId=mp["UploadId"], PartNumber=1, Body=b"x" * 5
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=f"{own}/big.bin",
        UploadId=mp["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    out["own_multipart"] = s3.head_object(Bucket=bucket, Key=f"{own}/big.bin")["ContentLength"]

    # Someone else's prefix (and the bucket root): every attempt must be refused.
    secret = f"{other}/secret.txt"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": secret})
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    attempts = {
        "list_bucket_root": lambda: s3.list_objects_v2(Bucket=bucket),
        "list_bucket_root_delimited": lambda: s3.list_objects_v2(Bucket=bucket, Delimiter="/"),
        "list_other_prefix": lambda: s3.list_objects_v2(Bucket=bucket, Prefix=f"{other}/"),
        "read": lambda: s3.get_object(Bucket=bucket, Key=secret),
        "head": lambda: s3.head_object(Bucket=bucket, Key=secret),
        "overwrite": lambda: s3.put_object(Bucket=bucket, Key=secret, Body=b"overwritten"),
        "write_new": lambda: s3.put_object(Bucket=bucket, Key=f"{other}/planted", Body=b"x"),
        "delete": lambda: s3.delete_object(Bucket=bucket, Key=secret),
        "multipart_upload": lambda: s3.create_multipart_upload(Bucket=bucket, Key=f"{other}/mp"),
        "copy_out": lambda: s3.copy_object(
            Bucket=bucket, Key=f"{own}/stolen", CopySource={"Bucket": bucket, "Key": secret}
        ),
        "presign_then_fetch": lambda: urllib.request.urlopen(url, timeout=30).read(),
        "s3fs_ls_other": lambda: fs.ls(f"{bucket}/{other}/"),
        "zarr_write_other": lambda: zarr.create_array(
            fsspec.get_mapper(f"s3://{bucket}/{other}/x.zarr"), data=data, overwrite=True
        ),
    }
    out["attempts"] = {name: s3_error(call) for name, call in attempts.items()}
    return out


def on_worker(other: str) -> dict:
    from dask.distributed import Client
    from dask_gateway import GatewayCluster

    cluster = GatewayCluster()
    try:
        cluster.scale(1)
        client = Client(cluster)
        client.wait_for_workers(1, timeout=240)
        result = client.submit(probe, other, pure=False).result(timeout=240)
        env = client.submit(
            lambda: {
                **{k: os.environ.get(k, "") for k in ("USER", "AWS_ACCESS_KEY_ID")},
                "has_server_token": "JUPYTERHUB_API_TOKEN" in os.environ,
                "has_broker_token": bool(os.environ.get("PANGEO_SCRATCH_BROKER_TOKEN")),
            },
            pure=False,
        ).result()
        result["worker_env"] = env
        client.close()
        return result
    finally:
        cluster.shutdown()


def refresh(periods: int = 3) -> dict:
    """One client writing across several reported expiry periods (a long job)."""
    import datetime as dt
    from urllib.parse import urlparse

    import boto3

    scratch = os.environ["PANGEO_SCRATCH"]
    bucket, own = urlparse(scratch).netloc, urlparse(scratch).path.strip("/")
    session = boto3.Session()
    s3 = session.client("s3")
    creds = session.get_credentials()
    keys, expiries = [], []
    for n in range(periods + 1):
        s3.put_object(Bucket=bucket, Key=f"{own}/period-{n}.txt", Body=str(n).encode())
        keys.append(creds.get_frozen_credentials().access_key)
        expiries.append(creds._expiry_time)  # botocore's RefreshableCredentials keeps it here
        while dt.datetime.now(dt.UTC) <= expiries[-1]:  # past this reported expiry
            time.sleep(0.5)
    return {
        "method": creds.method,
        "distinct_keys": len(set(keys)),
        "expiries_increase": all(a < b for a, b in zip(expiries, expiries[1:], strict=False)),
        "last": s3.get_object(Bucket=bucket, Key=f"{own}/period-{periods}.txt")["Body"]
        .read()
        .decode(),
    }


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        result = probe(sys.argv[2])
    elif mode == "worker":
        result = on_worker(sys.argv[2])
    else:
        result = refresh()
    print(json.dumps(result))
