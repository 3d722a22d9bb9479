"""A stand-in for the Cloud Storage JSON API that enforces Credential Access Boundaries.

Tests cannot reach ``https://storage.googleapis.com``; this serves the part of
its JSON API gcsfs uses for small objects, on loopback (point gcsfs at it with
``GCSFileSystem(endpoint_url=standin.url)`` or ``STORAGE_EMULATOR_HOST``):

- ``GET /storage/v1/b/{bucket}/o`` (objects.list: ``prefix``, ``delimiter``,
  ``maxResults``; one page), ``GET /storage/v1/b/{bucket}/o/{object}``
  (metadata, or data with ``alt=media``), ``GET /download/storage/v1/b/{bucket}/o/{object}``
  (data; ``Range: bytes=a-b``), ``POST /upload/storage/v1/b/{bucket}/o?uploadType=multipart``,
  ``POST /storage/v1/b/{bucket}/o/{object}/rewriteTo/b/{bucket}/o/{object}`` (copy),
  ``DELETE /storage/v1/b/{bucket}/o/{object}``, ``GET /storage/v1/b/{bucket}``;
  resumable uploads and batch requests are not served (501).
- errors as Google sends them: ``{"error": {"code", "message", "errors": [...]}}``.

Authorization is the point: a request needs ``Authorization: Bearer <token>``
with a token the STS stand-in (:class:`~pangeo_cloud.testing.google_sts.GoogleSTSStandIn`)
issued and that has not expired (else 401 "Invalid Credentials", which gcsfs
answers by refreshing), and the token's Credential Access Boundary must allow
the request's permission on its resource (else 403). The broker's own source
tokens reach everything (its service account is objectAdmin on the bucket).

The boundary is evaluated as Google documents it: a request is allowed when one
rule names the bucket, one of the rule's ``inRole:`` roles holds the permission
(the roles' storage permissions below, from Google's IAM role reference), and
its condition is true. The stand-in's model of the condition language covers
exactly the forms Google documents for Cloud Storage prefixes, joined by ``||``:
``resource.name.startsWith('...')`` and
``api.getAttribute('storage.googleapis.com/objectListPrefix', '').startsWith('...')``;
any other expression is false here (fail closed), so a boundary using more
than that cannot pass a test by accident.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from pangeo_cloud.testing.google_sts import (
    GoogleSTSStandIn,
    JSONHandler,
    serve_on_loopback,
    stop_server,
)

__all__ = ["GoogleStorageStandIn", "ROLE_PERMISSIONS", "allowed"]

_OBJECT_PERMS = {
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.update",
    "storage.multipartUploads.create",
    "storage.multipartUploads.abort",
    "storage.multipartUploads.listParts",
    "storage.multipartUploads.list",
}
# Storage permissions of the predefined roles
# (cloud.google.com/storage/docs/access-control/iam-roles).
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/storage.objectAdmin": frozenset(
        _OBJECT_PERMS | {"storage.objects.getIamPolicy", "storage.objects.setIamPolicy"}
    ),
    "roles/storage.objectUser": frozenset(_OBJECT_PERMS),
    "roles/storage.objectCreator": frozenset(
        {"storage.objects.create", "storage.multipartUploads.create"}
    ),
    "roles/storage.objectViewer": frozenset({"storage.objects.get", "storage.objects.list"}),
    "roles/storage.legacyBucketReader": frozenset({"storage.buckets.get", "storage.objects.list"}),
}

_STR = r"'((?:[^'\\]|\\.)*)'"
_RESOURCE_TERM = re.compile(rf"resource\.name\.startsWith\({_STR}\)")
_LIST_TERM = re.compile(
    r"api\.getAttribute\('storage\.googleapis\.com/objectListPrefix',\s*''\)"
    rf"\.startsWith\({_STR}\)"
)


def _condition_true(expression: str, resource: str, list_prefix: str) -> bool:
    for term in expression.split("||"):
        term = term.strip()
        if match := _RESOURCE_TERM.fullmatch(term):
            if resource.startswith(match.group(1)):
                return True
        elif match := _LIST_TERM.fullmatch(term):
            if list_prefix.startswith(match.group(1)):
                return True
        else:
            return False  # outside the stand-in's model: fail closed
    return False


def allowed(
    boundary: dict[str, Any], bucket: str, permission: str, resource: str, list_prefix: str = ""
) -> bool:
    """Whether ``boundary`` lets ``permission`` on ``resource`` through (see the module doc)."""
    rules = boundary.get("accessBoundary", {}).get("accessBoundaryRules", [])
    for rule in rules:
        if rule.get("availableResource") != f"//storage.googleapis.com/projects/_/buckets/{bucket}":
            continue
        roles = [p.removeprefix("inRole:") for p in rule.get("availablePermissions", [])]
        if not any(permission in ROLE_PERMISSIONS.get(role, ()) for role in roles):
            continue
        condition = rule.get("availabilityCondition")
        if condition is None or _condition_true(condition["expression"], resource, list_prefix):
            return True
    return False


@dataclass
class _Object:
    data: bytes
    generation: int
    updated: str

    def resource(self, bucket: str, name: str) -> dict[str, Any]:
        return {
            "kind": "storage#object",
            "bucket": bucket,
            "name": name,
            "size": str(len(self.data)),
            "generation": str(self.generation),
            "metageneration": "1",
            "contentType": "application/octet-stream",
            "updated": self.updated,
            "timeCreated": self.updated,
            "md5Hash": base64.b64encode(hashlib.md5(self.data).digest()).decode(),
        }


class _Denied(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class GoogleStorageStandIn:
    """One bucket's objects and the HTTP server enforcing the STS stand-in's boundaries."""

    def __init__(self, bucket: str, sts: GoogleSTSStandIn, source_tokens: set[str]) -> None:
        self.bucket = bucket
        self.sts = sts
        self.source_tokens = set(source_tokens)
        self.objects: dict[str, _Object] = {}
        # (method, path, status) of every request, for tests.
        self.requests: list[tuple[str, str, int]] = []
        self._generation = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def put(self, name: str, data: bytes) -> None:
        """Store an object directly (test setup, as the bucket's owner)."""
        with self._lock:
            self._generation += 1
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.objects[name] = _Object(data, self._generation, now)

    # --- authorization -----------------------------------------------------------------

    def authorize(self, header: str, permission: str, resource: str, list_prefix: str = "") -> None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Denied(401, "Anonymous caller does not have " + permission)
        if token in self.source_tokens:
            return
        issued = self.sts.token_info(token)
        if issued is None:
            raise _Denied(401, "Invalid Credentials")
        if not allowed(issued.boundary, self.bucket, permission, resource, list_prefix):
            raise _Denied(
                403,
                f"Caller does not have {permission} access to the Google Cloud Storage "
                f"{'object' if '/objects/' in resource else 'bucket'}. Permission "
                "denied by the Credential Access Boundary.",
            )

    def _resource(self, name: str | None = None) -> str:
        base = f"projects/_/buckets/{self.bucket}"
        return base if name is None else f"{base}/objects/{name}"

    # --- operations --------------------------------------------------------------------

    def list(self, auth: str, query: dict[str, str]) -> dict[str, Any]:
        prefix = query.get("prefix", "")
        self.authorize(auth, "storage.objects.list", self._resource(), prefix)
        delimiter = query.get("delimiter", "")
        items, prefixes = [], set()
        with self._lock:
            names = sorted(n for n in self.objects if n.startswith(prefix))
            for name in names:
                rest = name[len(prefix) :]
                if delimiter and delimiter in rest:
                    prefixes.add(prefix + rest.split(delimiter)[0] + delimiter)
                else:
                    items.append(self.objects[name].resource(self.bucket, name))
        limit = int(query.get("maxResults") or 0)
        reply: dict[str, Any] = {"kind": "storage#objects"}
        if items:
            reply["items"] = items[:limit] if limit else items
        if prefixes:
            reply["prefixes"] = sorted(prefixes)
        return reply

    def get(self, auth: str, name: str) -> _Object:
        self.authorize(auth, "storage.objects.get", self._resource(name))
        with self._lock:
            obj = self.objects.get(name)
        if obj is None:
            raise _Denied(404, f"No such object: {self.bucket}/{name}")
        return obj

    def upload(self, auth: str, name: str, data: bytes) -> dict[str, Any]:
        self.authorize(auth, "storage.objects.create", self._resource(name))
        with self._lock:
            exists = name in self.objects
        if exists:
            # Google requires delete permission to overwrite.
            self.authorize(auth, "storage.objects.delete", self._resource(name))
        self.put(name, data)
        return self.objects[name].resource(self.bucket, name)

    def rewrite(self, auth: str, source: str, target: str) -> dict[str, Any]:
        """objects.rewrite within the bucket (what gcsfs's copy uses)."""
        data = self.get(auth, source).data
        resource = self.upload(auth, target, data)
        size = str(len(data))
        return {
            "kind": "storage#rewriteResponse",
            "totalBytesRewritten": size,
            "objectSize": size,
            "done": True,
            "resource": resource,
        }

    def delete(self, auth: str, name: str) -> None:
        self.authorize(auth, "storage.objects.delete", self._resource(name))
        with self._lock:
            if self.objects.pop(name, None) is None:
                raise _Denied(404, f"No such object: {self.bucket}/{name}")

    # --- server ------------------------------------------------------------------------

    def start(self) -> GoogleStorageStandIn:
        self._server, self._thread = serve_on_loopback(_handler(self), "google-storage-standin")
        return self

    def stop(self) -> None:
        stop_server(self._server, self._thread)
        self._server = None

    def __enter__(self) -> GoogleStorageStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _part_body(part: bytes) -> bytes:
    """A multipart part's content: after its headers, without the newline before the delimiter."""
    for separator, newline in ((b"\r\n\r\n", b"\r\n"), (b"\n\n", b"\n")):
        _, found, body = part.partition(separator)
        if found:
            return body.removesuffix(newline)
    raise _Denied(400, "multipart part without headers")


def _multipart_upload(content_type: str, body: bytes) -> tuple[str, bytes]:
    """(object name, data) from a multipart/related upload body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _Denied(400, "multipart upload without a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts = [p for p in body.split(delimiter) if p.strip() not in (b"", b"--")]
    if len(parts) != 2:
        raise _Denied(400, "multipart upload needs a metadata part and a media part")
    return json.loads(_part_body(parts[0]))["name"], _part_body(parts[1])


_REWRITE = re.compile(r"/storage/v1/b/([^/]+)/o/([^/]+)/rewriteTo/b/([^/]+)/o/([^/]+)")


def _handler(store: GoogleStorageStandIn) -> type[JSONHandler]:
    bucket_path = f"/storage/v1/b/{store.bucket}"

    class Handler(JSONHandler):
        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            auth = self.headers.get("Authorization", "")
            status = 200
            try:
                status = self._dispatch(method, url.path, query, auth)
            except _Denied as exc:
                status = exc.code
                self.send_json(
                    exc.code,
                    {
                        "error": {
                            "code": exc.code,
                            "message": exc.message,
                            "errors": [{"message": exc.message, "domain": "global"}],
                        }
                    },
                )
            with store._lock:
                store.requests.append((method, url.path, status))

        def _dispatch(self, method: str, path: str, query: dict[str, str], auth: str) -> int:
            objects = bucket_path + "/o"
            if method == "GET" and path == bucket_path:
                store.authorize(auth, "storage.buckets.get", store._resource())
                self.send_json(200, {"kind": "storage#bucket", "name": store.bucket})
            elif method == "GET" and path == objects:
                self.send_json(200, store.list(auth, query))
            elif method == "GET" and path.startswith(objects + "/"):
                name = unquote(path[len(objects) + 1 :])
                obj = store.get(auth, name)
                if query.get("alt") == "media":
                    return self._media(obj)
                self.send_json(200, obj.resource(store.bucket, name))
            elif method == "GET" and path.startswith("/download" + objects + "/"):
                return self._media(store.get(auth, unquote(path[len("/download" + objects) + 1 :])))
            elif method == "POST" and path == "/upload" + objects:
                if query.get("uploadType") != "multipart":
                    raise _Denied(501, f"uploadType={query.get('uploadType')} not served")
                name, data = _multipart_upload(
                    self.headers.get("Content-Type", ""), self.read_body()
                )
                self.send_json(200, store.upload(auth, name, data))
            elif method == "POST" and (rewrite := _REWRITE.fullmatch(path)):
                if (
                    unquote(rewrite.group(1)) != store.bucket
                    or unquote(rewrite.group(3)) != store.bucket
                ):
                    raise _Denied(404, "only rewrites within the stand-in's bucket are served")
                source, target = unquote(rewrite.group(2)), unquote(rewrite.group(4))
                self.read_body()
                self.send_json(200, store.rewrite(auth, source, target))
            elif method == "DELETE" and path.startswith(objects + "/"):
                store.delete(auth, unquote(path[len(objects) + 1 :]))
                self.send_bytes(204, b"", "application/json")
                return 204
            else:
                raise _Denied(501 if path.startswith("/batch") else 404, f"not served: {path}")
            return 200

        def _media(self, obj: _Object) -> int:
            data, status = obj.data, 200
            if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
                start, end = int(match.group(1)), match.group(2)
                data = data[start : int(end) + 1 if end else None]
                status = 206
            self.send_bytes(status, data, "application/octet-stream")
            return status

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler
