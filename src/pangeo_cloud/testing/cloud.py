"""Stand-ins for the cloud side of a pod's storage access: identity and object stores.

User pods of the cloud deployments reach their scratch bucket with the
identity of their Kubernetes ServiceAccount, which the cloud provides:

* **GKE Workload Identity**: the node's GKE metadata server answers the pod's
  requests to the metadata endpoint with an access token of the Google service
  account named by the ServiceAccount's ``iam.gke.io/gcp-service-account``
  annotation. :class:`GkeWorkloadIdentityStandIn` serves that metadata
  protocol (``/computeMetadata/v1/...``, ``Metadata-Flavor: Google``) on
  127.0.0.1, with Google's STS (:mod:`.google_sts`, where the scratch broker
  downscopes the account's tokens) and GCS (:mod:`.google_storage`, which
  enforces the downscoped tokens' Credential Access Boundaries).
* **EKS IRSA**: the pod identity webhook adds ``AWS_ROLE_ARN`` and
  ``AWS_WEB_IDENTITY_TOKEN_FILE`` (a ServiceAccount token with audience
  ``sts.amazonaws.com``) to pods whose ServiceAccount has the
  ``eks.amazonaws.com/role-arn`` annotation; botocore exchanges the token with
  STS (``AssumeRoleWithWebIdentity``) for credentials. :class:`AwsIrsaStandIn`
  runs a real MinIO server as STS and S3 (it enforces session policies); see
  the class for how the role's identity reaches the pod there.

Both are used by the kubelet stand-in as a node-level hook
(:meth:`pod_identity`): from the pod's ServiceAccount they return environment
variables and files for the pod; every pod gets the stand-ins' endpoints,
only a pod of the bound ServiceAccount gets credentials. What differs from the clouds, on purpose:
the cloud endpoints are not reachable, so the pod also gets the variables that
point its clients at the stand-ins (``GCE_METADATA_HOST``/``GCE_METADATA_IP``
and ``STORAGE_EMULATOR_HOST`` for Google's clients, ``AWS_ENDPOINT_URL`` for
botocore; gcsfs' gRPC bucket-layout lookup is switched off, see
:meth:`GkeWorkloadIdentityStandIn.pod_identity`); on EKS the webhook's
additions are visible in the pod spec, here they are added at start by the node.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tornado import httpserver, netutil, web
from tornado.ioloop import IOLoop

from pangeo_cloud.testing.google_storage import GoogleStorageStandIn
from pangeo_cloud.testing.google_sts import GoogleSTSStandIn

GKE_ANNOTATION = "iam.gke.io/gcp-service-account"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"

# (env, files: absolute path in the pod -> content)
PodIdentity = tuple[dict[str, str], dict[str, bytes]]
TokenFor = Callable[[str], str]  # audience -> a ServiceAccount token of the pod


class _TornadoServer:
    """A tornado application on 127.0.0.1:<free port>, in its own thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._loop: IOLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            import asyncio

            asyncio.set_event_loop(asyncio.new_event_loop())
            self._loop = IOLoop.current()
            server = httpserver.HTTPServer(self.app)
            server.add_sockets(sockets)
            ready.set()
            self._loop.start()
            server.stop()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.add_callback(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


# -- Google --------------------------------------------------------------------------


class _Metadata(web.RequestHandler):
    """The GKE metadata server's answers for one Google service account."""

    def initialize(self, identity: GkeWorkloadIdentityStandIn) -> None:
        self.identity = identity

    def get(self, path: str) -> None:
        self.set_header("Metadata-Flavor", "Google")
        if path and self.request.headers.get("Metadata-Flavor") != "Google":
            self.set_status(403)
            return self.finish("Missing Metadata-Flavor: Google header")
        ident = self.identity
        path = path.rstrip("/")
        sa = "instance/service-accounts"
        if path in ("", "computeMetadata/v1"):
            return self.finish("computeMetadata/\n")
        if path == "computeMetadata/v1/project/project-id":
            return self.finish(ident.project)
        if path in (f"computeMetadata/v1/{sa}/default", f"computeMetadata/v1/{sa}/{ident.email}"):
            return self.finish(
                {
                    "aliases": ["default"],
                    "email": ident.email,
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                }
            )
        if path.endswith("/email"):
            return self.finish(ident.email)
        if path.endswith("/token"):
            return self.finish(
                {"access_token": ident.issue(), "expires_in": 3599, "token_type": "Bearer"}
            )
        self.set_status(404)
        self.finish("not found")


class GkeWorkloadIdentityStandIn:
    """GKE's metadata server, Google's STS and GCS, for pods whose ServiceAccount names ``email``.

    The metadata server issues the bound service account's access tokens; they
    are source tokens of the STS stand-in (:mod:`.google_sts`, where the
    broker downscopes them) and reach the whole bucket in the storage stand-in
    (:mod:`.google_storage`, the service account is objectAdmin there), which
    lets a downscoped token through only as far as its Credential Access
    Boundary allows.
    """

    def __init__(self, email: str, project: str, bucket: str) -> None:
        self.email, self.project = email, project
        self.sts = GoogleSTSStandIn()
        self.gcs = GoogleStorageStandIn(bucket, self.sts, set())
        self._metadata = _TornadoServer(
            web.Application([(r"/(.*)", _Metadata, {"identity": self})])
        )

    def issue(self) -> str:
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        self.sts.add_source_token(token)
        self.gcs.source_tokens.add(token)
        return token

    def start(self) -> GkeWorkloadIdentityStandIn:
        self.sts.start()
        self.gcs.start()
        self._metadata.start()
        return self

    def stop(self) -> None:
        self._metadata.stop()
        self.gcs.stop()
        self.sts.stop()

    def chart_values(self) -> dict[str, Any]:
        """The chart values that point the broker's token exchange at the STS stand-in."""
        return {"scratchBroker": {"gcp": {"stsEndpoint": self.sts.token_url}}}

    def pod_identity(self, account: dict[str, Any], token_for: TokenFor) -> PodIdentity:
        annotations = account.get("metadata", {}).get("annotations") or {}
        env = {
            # Google's endpoints, for every pod (the cloud's API is the stand-in).
            "STORAGE_EMULATOR_HOST": self.gcs.url,
            # gcsfs >= 2026.10 first asks the gRPC Storage Control API for the
            # bucket's layout (60 s of retries before falling back to JSON),
            # which the stand-in does not serve.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
        if annotations.get(GKE_ANNOTATION) == self.email:
            # Bound to the Google service account: the metadata server answers.
            env["GCE_METADATA_HOST"] = env["GCE_METADATA_IP"] = self._metadata.address
        return env, {}


# -- AWS -----------------------------------------------------------------------------


class AwsIrsaStandIn:
    """S3 and STS (a real MinIO server) for pods whose ServiceAccount names an IAM role.

    MinIO enforces what matters here: the session policy the broker passes to
    ``AssumeRole`` narrows the session's credentials to the user's prefix, as
    AWS STS does. What differs from EKS, on purpose: MinIO cannot chain
    ``AssumeRoleWithWebIdentity`` (the ServiceAccount token) and ``AssumeRole``
    (temporary credentials may not assume a role there), so the pod of the
    role's ServiceAccount gets the static keys of a dedicated MinIO user with
    the role's permissions (the bucket, nothing else) instead of the IRSA
    token; MinIO ignores the role ARN and intersects that user's policy with
    the session policy.
    """

    def __init__(self, bucket: str, region: str) -> None:
        self.bucket, self.region = bucket, region
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._data: str | None = None
        self._user = ("scratch-broker", secrets.token_hex(16))

    def start(self) -> AwsIrsaStandIn:
        from pangeo_cloud.local import objectstore
        from pangeo_cloud.ports import free_ports

        root = ("standin-root", secrets.token_hex(16))
        self._data = tempfile.mkdtemp(prefix="pangeo-irsa-standin-")
        (port,) = free_ports(1)
        spec = objectstore.store_spec(Path(self._data), port, *root, prefer="minio")
        env = {**os.environ, **spec.env, "MINIO_SITE_REGION": self.region}
        self._proc = subprocess.Popen(
            spec.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = spec.endpoint
        try:
            proc = self._proc
            objectstore.wait_healthy(spec.health_url, lambda: proc.poll() is None, 60)
            client = objectstore.s3_client(self.url, *root, region=self.region)
            objectstore.ensure_bucket(client, self.bucket, None, self.region)
            objectstore.ensure_broker_user(self.url, *root, self.bucket, *self._user)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None
        if self._data is not None:
            shutil.rmtree(self._data, ignore_errors=True)
            self._data = None

    def chart_values(self) -> dict[str, Any]:
        """No chart value needed: pods find STS and S3 through ``AWS_ENDPOINT_URL``."""
        return {}

    def pod_identity(self, account: dict[str, Any], token_for: TokenFor) -> PodIdentity:
        # AWS's endpoints (the stand-in) for every pod; MinIO serves STS and S3 on one port.
        env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }
        if (account.get("metadata", {}).get("annotations") or {}).get(IRSA_ANNOTATION):
            # The role's identity (see the class docstring for why not a web identity).
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = self._user
        return env, {}
