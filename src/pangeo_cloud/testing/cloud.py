"""Stand-ins for the cloud side of a pod's storage access: identity and object stores.

User pods of the cloud deployments reach their scratch bucket with the
identity of their Kubernetes ServiceAccount, which the cloud provides:

* **GKE Workload Identity**: the node's GKE metadata server answers the pod's
  requests to the metadata endpoint with an access token of the Google service
  account named by the ServiceAccount's ``iam.gke.io/gcp-service-account``
  annotation. :class:`GkeWorkloadIdentityStandIn` serves that metadata
  protocol (``/computeMetadata/v1/...``, ``Metadata-Flavor: Google``) and a
  GCS JSON API subset (:class:`GcsStandIn`: media and multipart uploads,
  metadata, download, delete, list) that accepts only the tokens it issued for
  that account, on 127.0.0.1.
* **EKS IRSA**: the pod identity webhook adds ``AWS_ROLE_ARN`` and
  ``AWS_WEB_IDENTITY_TOKEN_FILE`` (a ServiceAccount token with audience
  ``sts.amazonaws.com``) to pods whose ServiceAccount has the
  ``eks.amazonaws.com/role-arn`` annotation; botocore exchanges the token with
  STS (``AssumeRoleWithWebIdentity``) for credentials. :class:`AwsIrsaStandIn`
  uses moto's server for STS and S3.

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

import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from tornado import httpserver, netutil, web
from tornado.ioloop import IOLoop

GKE_ANNOTATION = "iam.gke.io/gcp-service-account"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
IRSA_TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"

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


class GcsStandIn:
    """Buckets of objects in memory behind the GCS JSON API paths gcsfs uses."""

    def __init__(self, buckets: list[str], token_ok: Callable[[str], bool]) -> None:
        self.objects: dict[str, dict[str, bytes]] = {b: {} for b in buckets}
        self.token_ok = token_ok
        self.requests: list[tuple[str, str]] = []


class _GcsHandler(web.RequestHandler):
    def initialize(self, gcs: GcsStandIn) -> None:
        self.gcs = gcs

    def check_xsrf_cookie(self) -> None:  # an API
        pass

    def prepare(self) -> None:
        self.gcs.requests.append((self.request.method or "", self.request.uri or ""))
        auth = self.request.headers.get("Authorization", "")
        if not self.gcs.token_ok(auth.removeprefix("Bearer ").strip()):
            self.error(401, "Anonymous caller does not have storage access.")

    def error(self, code: int, message: str) -> None:
        self.set_status(code)
        self.finish({"error": {"code": code, "message": message}})

    def bucket(self, name: str) -> dict[str, bytes] | None:
        if name not in self.gcs.objects:
            self.error(404, f"The specified bucket does not exist: {name}")
            return None
        return self.gcs.objects[name]

    def meta(self, bucket: str, key: str, data: bytes) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "bucket": bucket,
            "name": key,
            "size": str(len(data)),
            "generation": "1",
            "contentType": "application/octet-stream",
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "timeCreated": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }


class _GcsObject(_GcsHandler):
    def get(self, bucket: str, key: str) -> None:
        objects, key = self.bucket(bucket), urllib.parse.unquote(key)
        if objects is None:
            return
        if key not in objects:
            return self.error(404, f"No such object: {bucket}/{key}")
        if self.get_argument("alt", "") == "media":
            self.set_header("Content-Type", "application/octet-stream")
            return self.finish(objects[key])
        self.finish(self.meta(bucket, key, objects[key]))

    def delete(self, bucket: str, key: str) -> None:
        objects, key = self.bucket(bucket), urllib.parse.unquote(key)
        if objects is None:
            return
        if objects.pop(key, None) is None:
            return self.error(404, f"No such object: {bucket}/{key}")
        self.set_status(204)
        self.finish()


class _GcsList(_GcsHandler):
    def get(self, bucket: str) -> None:
        objects = self.bucket(bucket)
        if objects is None:
            return
        prefix, delimiter = self.get_argument("prefix", ""), self.get_argument("delimiter", "")
        items, prefixes = [], set()
        for key in sorted(objects):
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            else:
                items.append(self.meta(bucket, key, objects[key]))
        self.finish({"kind": "storage#objects", "items": items, "prefixes": sorted(prefixes)})


class _GcsBucket(_GcsHandler):
    def get(self, bucket: str) -> None:
        if self.bucket(bucket) is not None:
            self.finish({"kind": "storage#bucket", "name": bucket, "id": bucket})


class _GcsUpload(_GcsHandler):
    def post(self, bucket: str) -> None:
        objects = self.bucket(bucket)
        if objects is None:
            return
        kind = self.get_argument("uploadType", "media")
        body = self.request.body
        name = self.get_argument("name", "")
        if kind == "multipart":
            meta, body = self._multipart(body)
            name = meta.get("name") or name
        elif kind != "media":
            return self.error(400, f"uploadType {kind} is not supported by the stand-in")
        if not name:
            return self.error(400, "object name missing")
        objects[name] = body
        self.finish(self.meta(bucket, name, body))

    def _multipart(self, body: bytes) -> tuple[dict[str, Any], bytes]:
        """multipart/related: JSON metadata, then the data (CRLF or LF line ends)."""
        content_type = self.request.headers.get("Content-Type", "")
        boundary = b"--" + content_type.split("boundary=", 1)[1].strip('"').encode()
        parts = body.split(boundary)[1:3]

        def split(part: bytes) -> bytes:
            for sep in (b"\r\n\r\n", b"\n\n"):
                if sep in part:
                    content = part.split(sep, 1)[1]
                    for end in (b"\r\n", b"\n"):
                        if content.endswith(end):
                            return content[: -len(end)]
                    return content
            raise ValueError("malformed multipart body")

        return json.loads(split(parts[0])), split(parts[1])


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
    """GKE's metadata server and GCS, for pods whose ServiceAccount names ``email``."""

    def __init__(self, email: str, project: str, buckets: list[str]) -> None:
        self.email, self.project = email, project
        self._tokens: set[str] = set()
        self.gcs = GcsStandIn(buckets, lambda t: t in self._tokens)
        h = {"gcs": self.gcs}
        self._storage = _TornadoServer(
            web.Application(
                [
                    (r"/upload/storage/v1/b/([^/]+)/o", _GcsUpload, h),
                    (r"/download/storage/v1/b/([^/]+)/o/(.+)", _GcsObject, h),
                    (r"/storage/v1/b/([^/]+)/o/(.+)", _GcsObject, h),
                    (r"/storage/v1/b/([^/]+)/o", _GcsList, h),
                    (r"/storage/v1/b/([^/]+)", _GcsBucket, h),
                ]
            )
        )
        self._metadata = _TornadoServer(
            web.Application([(r"/(.*)", _Metadata, {"identity": self})])
        )

    def issue(self) -> str:
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        self._tokens.add(token)
        return token

    def start(self) -> GkeWorkloadIdentityStandIn:
        self._storage.start()
        self._metadata.start()
        return self

    def stop(self) -> None:
        self._storage.stop()
        self._metadata.stop()

    def pod_identity(self, account: dict[str, Any], token_for: TokenFor) -> PodIdentity:
        annotations = account.get("metadata", {}).get("annotations") or {}
        env = {
            # Google's endpoints, for every pod (the cloud's API is the stand-in).
            "STORAGE_EMULATOR_HOST": f"http://{self._storage.address}",
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
    """STS and S3 (moto's server) for pods whose ServiceAccount names an IAM role."""

    def __init__(self, buckets: list[str], region: str) -> None:
        self.buckets, self.region = buckets, region
        self._server: Any = None
        self.url = ""

    def start(self) -> AwsIrsaStandIn:
        import boto3
        from moto.server import ThreadedMotoServer

        from pangeo_cloud.ports import free_ports

        (port,) = free_ports(1)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.url = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id="standin",
            aws_secret_access_key="standin",
        )
        for bucket in self.buckets:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def pod_identity(self, account: dict[str, Any], token_for: TokenFor) -> PodIdentity:
        role = (account.get("metadata", {}).get("annotations") or {}).get(IRSA_ANNOTATION)
        if not role:
            # No IAM role: only AWS's endpoints (the stand-in), no credentials.
            return {"AWS_ENDPOINT_URL": self.url}, {}
        token_file = f"{IRSA_TOKEN_DIR}/token"
        env = {
            "AWS_ROLE_ARN": role,
            "AWS_WEB_IDENTITY_TOKEN_FILE": token_file,
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.url,
        }
        return env, {token_file: token_for("sts.amazonaws.com").encode()}
