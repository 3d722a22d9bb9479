"""The S3 session policy, session name and duration of one user's scratch credentials.

AWS STS ``AssumeRole`` (and MinIO's implementation of it) intersects the
assumed role's permissions with an inline session ``Policy``. The policy here
allows exactly what the storage clients (s3fs, boto3, zarr) need inside the
user's prefix and nothing outside it:

- objects under ``arn:aws:s3:::<bucket>/<prefix>/*``: get, put, delete, and the
  multipart calls (parts are uploaded with ``s3:PutObject``; aborting and
  listing parts have their own actions);
- ``s3:ListBucket`` on the bucket only when the request's ``s3:prefix`` is the
  user's prefix (``<prefix>/`` itself or anything below it). Listing the bucket
  root, or another user's prefix, is refused.

Standard library only (the broker image has botocore, but this module is also
used by tests and by ``pangeo-cloud health``).
"""

from __future__ import annotations

import hashlib
import re

# AWS limits: RoleSessionName is 2-64 characters of [\w+=,.@-];
# DurationSeconds of a chained role is 900..3600 (MinIO: at least 900 too).
SESSION_NAME_MAX = 64
MIN_DURATION = 900
MAX_DURATION = 3600
_SESSION_UNSAFE = re.compile(r"[^\w+=,.@-]", re.ASCII)

OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def check_prefix(prefix: str) -> str:
    """Refuse a prefix that could widen the policy (empty, wildcards, '..', slashes at ends)."""
    if (
        not prefix
        or prefix != prefix.strip("/")
        or any(char in prefix for char in "*?$\"'")
        or ".." in prefix.split("/")
    ):
        raise ValueError(f"not a scratch prefix: {prefix!r}")
    return prefix


def session_policy(bucket: str, prefix: str) -> dict:
    """The inline session policy reaching only ``s3://<bucket>/<prefix>/``."""
    prefix = check_prefix(prefix)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ScratchObjects",
                "Effect": "Allow",
                "Action": list(OBJECT_ACTIONS),
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"],
            },
            {
                "Sid": "ScratchList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/", f"{prefix}/*"]}},
            },
        ],
    }


def session_name(username: str) -> str:
    """A RoleSessionName naming the user (shown in CloudTrail / MinIO audit logs).

    Characters AWS does not allow become '_'; a name that had to be changed or
    shortened gets a short hash of the real username, so that two users never
    share a session name by accident.
    """
    safe = _SESSION_UNSAFE.sub("_", username)
    name = f"scratch-{safe}"
    if safe != username or len(name) > SESSION_NAME_MAX:
        digest = hashlib.sha256(username.encode("utf-8")).hexdigest()[:8]
        name = f"{name[: SESSION_NAME_MAX - 9]}-{digest}"
    return name


def sts_duration(lifetime: int) -> int:
    """The STS DurationSeconds for a requested lifetime: within [900, 3600].

    A lifetime below 900 s still gets a 900 s session from STS; the broker then
    reports the shorter lifetime as the credentials' Expiration, so clients
    refresh that early (see :mod:`pangeo_cloud.broker.s3`).
    """
    return max(MIN_DURATION, min(MAX_DURATION, int(lifetime)))
