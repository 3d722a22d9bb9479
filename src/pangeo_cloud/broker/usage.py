"""Scratch bytes per user, for Prometheus: ``pangeo_scratch_bytes{user}``.

The broker is the one service that can list the whole scratch bucket (its own
identity: IRSA / Workload Identity in the clusters, the bucket-only MinIO user
locally). ``GET <prefix>/metrics`` lists the bucket, sums object sizes under
each user's prefix (the escaped username, :mod:`pangeo_cloud.scratch`) and
answers in Prometheus' text format.

Listing a large bucket is slow and billed per request, so the sizes are cached
(``CACHE_SECONDS``: a scrape in between gets the last figures) and a listing
stops after ``MAX_OBJECTS`` objects (the figures are then lower bounds, and
``pangeo_scratch_listing_truncated`` says so). Objects outside any user's
prefix (after the bucket URL's own path) are not counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlparse

from pangeo_cloud.scratch import unescape_username

log = logging.getLogger("pangeo_cloud.broker")

CACHE_SECONDS = 300.0
MAX_OBJECTS = 2_000_000

# A lister yields (key, size) for every object under a key prefix.
Lister = Callable[[str, int], Iterable[tuple[str, int]]]


def sizes_by_user(objects: Iterable[tuple[str, int]], base: str) -> dict[str, int]:
    """Bytes per user for object keys under ``base`` (``<base>/<escaped user>/...``)."""
    head = base.strip("/") + "/" if base.strip("/") else ""
    totals: dict[str, int] = defaultdict(int)
    for key, size in objects:
        if not key.startswith(head):
            continue
        escaped, slash, _ = key[len(head) :].partition("/")
        if not slash or not escaped:
            continue
        try:
            user = unescape_username(escaped)
        except (ValueError, UnicodeDecodeError):
            continue  # not a prefix pangeo-cloud made (e.g. the health probe's)
        totals[user] += size
    return dict(totals)


def s3_lister(settings: dict[str, Any]) -> Lister:
    """List with botocore (the broker's own credentials from botocore's chain)."""

    def list_objects(prefix: str, limit: int) -> Iterable[tuple[str, int]]:
        import botocore.session

        kwargs: dict[str, Any] = {"region_name": settings.get("region") or "us-east-1"}
        if settings.get("endpoint"):
            kwargs["endpoint_url"] = settings["endpoint"]
        client = botocore.session.get_session().create_client("s3", **kwargs)
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=settings["bucket"], Prefix=prefix
        )
        count = 0
        for page in pages:
            for item in page.get("Contents") or []:
                yield item["Key"], int(item["Size"])
                count += 1
                if count >= limit:
                    return

    return list_objects


def gcs_lister(settings: dict[str, Any]) -> Lister:
    """List with the JSON API (the broker's own Google identity)."""

    def list_objects(prefix: str, limit: int) -> Iterable[tuple[str, int]]:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        scopes = ["https://www.googleapis.com/auth/devstorage.read_only"]
        credentials, _ = google.auth.default(scopes=scopes)
        session = AuthorizedSession(credentials)
        root = settings.get("storageEndpoint") or "https://storage.googleapis.com"
        url = f"{root.rstrip('/')}/storage/v1/b/{settings['bucket']}/o"
        params = {"prefix": prefix, "fields": "items(name,size),nextPageToken"}
        count = 0
        while True:
            reply = session.get(url, params=params, timeout=60)
            reply.raise_for_status()
            body = reply.json()
            for item in body.get("items") or []:
                yield item["name"], int(item["size"])
                count += 1
                if count >= limit:
                    return
            if not body.get("nextPageToken"):
                return
            params["pageToken"] = body["nextPageToken"]

    return list_objects


class ScratchUsage:
    """Cached per-user sizes of one scratch bucket (module docstring)."""

    def __init__(
        self,
        url: str,
        lister: Lister,
        max_objects: int = MAX_OBJECTS,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.base = urlparse(url).path.strip("/")
        self.cache_seconds = cache_seconds
        self.lister = lister
        self.max_objects = max_objects
        self._cached: tuple[float, dict[str, int], bool] | None = None
        self._lock = asyncio.Lock()

    def _list(self) -> tuple[dict[str, int], bool]:
        seen = 0

        def counted() -> Iterable[tuple[str, int]]:
            nonlocal seen
            for item in self.lister(self.base + "/" if self.base else "", self.max_objects):
                seen += 1
                yield item

        sizes = sizes_by_user(counted(), self.base)
        return sizes, seen >= self.max_objects

    async def sizes(self) -> tuple[dict[str, int], bool]:
        """(bytes per user, whether the listing was cut short); one listing at a time."""
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.cache_seconds:
                return self._cached[1], self._cached[2]
            sizes, truncated = await asyncio.to_thread(self._list)
            self._cached = (now, sizes, truncated)
            return sizes, truncated


def exposition(sizes: dict[str, int], truncated: bool) -> str:
    """Prometheus text format of the sizes."""
    lines = [
        "# HELP pangeo_scratch_bytes bytes under the user's scratch prefix",
        "# TYPE pangeo_scratch_bytes gauge",
    ]
    for user in sorted(sizes):
        label = user.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(f'pangeo_scratch_bytes{{user="{label}"}} {sizes[user]}')
    lines += [
        "# HELP pangeo_scratch_listing_truncated 1 if the last listing stopped at its bound",
        "# TYPE pangeo_scratch_listing_truncated gauge",
        f"pangeo_scratch_listing_truncated {int(truncated)}",
    ]
    return "\n".join(lines) + "\n"


def usage_for(
    scheme: str, settings: dict[str, Any], cache_seconds: float = CACHE_SECONDS
) -> ScratchUsage:
    lister = s3_lister(settings) if scheme == "s3" else gcs_lister(settings)
    return ScratchUsage(settings["url"], lister, cache_seconds=float(cache_seconds))
