"""gcsfs with brokered credentials: own prefix works, everything else is refused.

Unmodified gcsfs (default credentials: the static file of a user's server)
talks to the Cloud Storage stand-in, which accepts only tokens the STS stand-in
issued and enforces their access boundary (:mod:`pangeo_cloud.testing.google_storage`:
its model of Google's evaluation). The user code is what the seed promises:
``fsspec`` on ``$PANGEO_SCRATCH``; only the endpoint is redirected to loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from gcs_broker_support import (
    BUCKET,
    SCRATCH,
    SOURCE_TOKEN,
    Broker,
    gcs_broker_fixture,  # noqa: F401 (the gcs_broker fixture)
    static_credentials_file,
)
from gcsfs.core import GCSFileSystem

from pangeo_cloud.scratch import scratch_url
from pangeo_cloud.testing.google_storage import GoogleStorageStandIn, allowed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def storage(gcs_broker: Broker) -> Iterator[GoogleStorageStandIn]:
    with GoogleStorageStandIn(BUCKET, gcs_broker.sts, {SOURCE_TOKEN}) as standin:
        standin.put("users/bob/secret.txt", b"bob's data")
        # A user whose escaped name extends alice's: the prefix must end at the '/'.
        standin.put("users/alice2/secret.txt", b"alice2's data")
        standin.put("top-level.txt", b"not in any scratch prefix")
        yield standin


def _alice_fs(gcs_broker: Broker, storage, tmp_path, monkeypatch):
    static_credentials_file(
        tmp_path, monkeypatch, gcs_broker.token_url, {"JUPYTERHUB_API_TOKEN": "alice-hub-token"}
    )
    # gcsfs's JSON-API filesystem: what fsspec's "gs" protocol is, minus the experimental
    # gRPC bucket-layout lookup newer gcsfs adds (the stand-in serves only the JSON API).
    fs = GCSFileSystem(endpoint_url=storage.url, skip_instance_cache=True)
    return fs, scratch_url(SCRATCH, "alice")


async def test_own_prefix_round_trip_with_refresh_on_every_use(
    gcs_broker: Broker, storage: GoogleStorageStandIn, tmp_path, monkeypatch
) -> None:
    # Shorter than gcsfs's refresh margin: every request refreshes through the broker.
    gcs_broker.sts.expires_in = 1
    fs, scratch = _alice_fs(gcs_broker, storage, tmp_path, monkeypatch)

    def work() -> None:
        mapper = fs.get_mapper(scratch + "x.zarr")
        mapper["zarr.json"] = b'{"zarr_format": 3}'
        mapper["c/0"] = b"\x00" * 1000
        assert mapper["c/0"] == b"\x00" * 1000
        assert sorted(mapper) == ["c/0", "zarr.json"]
        assert fs.cat(scratch + "x.zarr/zarr.json") == b'{"zarr_format": 3}'
        fs.rm(scratch + "x.zarr/c/0")
        fs.invalidate_cache()
        assert fs.ls(scratch + "x.zarr/", detail=False) == [
            f"{BUCKET}/users/alice/x.zarr/zarr.json"
        ]

    await asyncio.to_thread(work)
    assert "users/alice/x.zarr/zarr.json" in storage.objects
    assert "users/alice/x.zarr/c/0" not in storage.objects
    # Several tokens were used, all from the broker, all with alice's boundary only.
    assert len(gcs_broker.sts.exchanges) >= 3
    assert all(
        allowed(
            e.boundary,
            BUCKET,
            "storage.objects.get",
            f"projects/_/buckets/{BUCKET}/objects/users/alice/a",
        )
        and not allowed(
            e.boundary,
            BUCKET,
            "storage.objects.get",
            f"projects/_/buckets/{BUCKET}/objects/users/bob/a",
        )
        for e in gcs_broker.sts.exchanges
    )


async def test_everything_outside_the_prefix_is_refused(
    gcs_broker: Broker, storage: GoogleStorageStandIn, tmp_path, monkeypatch
) -> None:
    fs, _ = _alice_fs(gcs_broker, storage, tmp_path, monkeypatch)
    bob = f"{BUCKET}/users/bob/"
    attempts = {
        "list the bucket root": lambda: fs.ls(f"{BUCKET}/", refresh=True),
        "list the users/ level": lambda: fs.ls(f"{BUCKET}/users/", refresh=True),
        "list bob's prefix": lambda: fs.ls(bob, refresh=True),
        "list a prefix extending alice's": lambda: fs.ls(f"{BUCKET}/users/alice2/", refresh=True),
        "read bob's object": lambda: fs.cat(bob + "secret.txt"),
        "read a prefix extending alice's": lambda: fs.cat(f"{BUCKET}/users/alice2/secret.txt"),
        "read outside any prefix": lambda: fs.cat(f"{BUCKET}/top-level.txt"),
        "overwrite bob's object": lambda: fs.pipe(bob + "secret.txt", b"alice was here"),
        "write into bob's prefix": lambda: fs.pipe(bob + "new.txt", b"alice was here"),
        "delete bob's object": lambda: fs.rm(bob + "secret.txt"),
        "copy bob's object out": lambda: fs.copy(bob + "secret.txt", f"{BUCKET}/users/alice/c"),
    }
    for what, attempt in attempts.items():
        # gcsfs raises a 403 as OSError("Forbidden: ...") (not FileNotFoundError).
        with pytest.raises(OSError, match="^Forbidden") as info:
            await asyncio.to_thread(attempt)
        assert not isinstance(info.value, FileNotFoundError), what
        assert storage.requests[-1][2] == 403, what
    assert storage.objects["users/bob/secret.txt"].data == b"bob's data"
    assert "users/bob/new.txt" not in storage.objects
    assert "users/alice/c" not in storage.objects


async def test_the_prefix_root_itself_is_not_an_object_alice_may_stat(
    gcs_broker: Broker, storage: GoogleStorageStandIn, tmp_path, monkeypatch
) -> None:
    """A known edge, pinned so a change is seen: ``info``/``exists`` of $PANGEO_SCRATCH itself.

    gcsfs first GETs the object named like the prefix (``users/alice``, no slash),
    then lists with that prefix; the boundary allows neither (it must stop at the
    '/', or ``users/alice2/`` would be reachable), so both answer 403. Listing,
    finding and everything under the prefix work.
    """
    fs, scratch = _alice_fs(gcs_broker, storage, tmp_path, monkeypatch)
    storage.put("users/alice/a.txt", b"x")
    for op in (fs.info, fs.exists):
        fs.invalidate_cache()
        with pytest.raises(OSError, match="^Forbidden"):
            await asyncio.to_thread(op, scratch)
    for op in (fs.ls, fs.find):
        fs.invalidate_cache()
        assert await asyncio.to_thread(op, scratch) == [f"{BUCKET}/users/alice/a.txt"]
    assert await asyncio.to_thread(fs.info, scratch + "a.txt")
    assert await asyncio.to_thread(fs.exists, scratch + "nothing-here") is False


async def test_google_cloud_storage_client_with_brokered_credentials(
    gcs_broker: Broker, storage: GoogleStorageStandIn, tmp_path, monkeypatch
) -> None:
    from google.api_core import exceptions
    from google.cloud import storage as gcs

    gcs_broker.sts.expires_in = 1  # every request refreshes through the broker
    static_credentials_file(
        tmp_path, monkeypatch, gcs_broker.token_url, {"JUPYTERHUB_API_TOKEN": "alice-hub-token"}
    )

    def work() -> None:
        client = gcs.Client(project="p", client_options={"api_endpoint": storage.url})
        bucket = client.bucket(BUCKET)
        bucket.blob("users/alice/gcs.txt").upload_from_string(b"from google-cloud-storage")
        assert bucket.blob("users/alice/gcs.txt").download_as_bytes() == (
            b"from google-cloud-storage"
        )
        names = [b.name for b in client.list_blobs(BUCKET, prefix="users/alice/")]
        assert names == ["users/alice/gcs.txt"]
        with pytest.raises(exceptions.Forbidden):
            bucket.blob("users/bob/secret.txt").download_as_bytes()
        with pytest.raises(exceptions.Forbidden):
            list(client.list_blobs(BUCKET, prefix="users/"))

    await asyncio.to_thread(work)
    assert storage.objects["users/alice/gcs.txt"].data == b"from google-cloud-storage"
