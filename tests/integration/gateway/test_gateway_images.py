"""The Dask image allowlist, enforced by the real gateway for a real user.

The harness's gateway runs with the deployment's settings as the chart ships
them: `imageAllowlist` unset, so pangeo-cloud's generated layer allows the
notebook image's repository (`pangeo/pangeo-notebook:*` and `@sha256:*`). A
user asking for anything else gets one clear error naming the allowed
patterns, and no cluster is created.
"""

from __future__ import annotations

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    # dask_gateway 2026.3.0: Gateway.__del__ re-closes an already closed client
    # and trips over its stopped loop (harmless; upstream).
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function Gateway.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

ALLOWED = "'pangeo/pangeo-notebook:*', 'pangeo/pangeo-notebook@sha256:*'"


def test_the_effective_allowlist_is_the_notebook_repository(federation):
    assert federation.settings["gateway"]["imageAllowlist"] == [
        "pangeo/pangeo-notebook:*",
        "pangeo/pangeo-notebook@sha256:*",
    ]


@pytest.mark.parametrize(
    "image",
    ["ubuntu:24.04", "evil.example/pangeo/pangeo-notebook:1", "pangeo/pangeo-notebook-x:1"],
)
def test_an_image_outside_the_allowlist_is_refused(federation, image):
    gateway = federation.gateway(federation.token(federation.user("ivan")))
    with pytest.raises(ValueError) as info:
        gateway.new_cluster(image=image)
    assert str(info.value) == (
        f"image {image!r} is not allowed on this deployment; allowed images: {ALLOWED}"
    )
    assert gateway.list_clusters() == []


def test_an_allowed_image_starts(federation):
    gateway = federation.gateway(federation.token(federation.user("ivan")))
    cluster = gateway.new_cluster(image="pangeo/pangeo-notebook:2026.11.18")
    try:
        assert cluster.name in {c.name for c in gateway.list_clusters()}
    finally:
        cluster.shutdown()
