"""Dask Gateway with real clusters, authenticated by a real JupyterHub.

What a scientist does with ``dask_gateway.Gateway`` against the gateway that
`pangeo_cloud.gateway.config.configure` sets up (see conftest.py).
"""

from __future__ import annotations

import time

import aiohttp
import pytest
from dask_gateway import GatewayServerError, GatewayWarning
from gateway_support import WAIT, cluster_of, wait_for_status

from pangeo_cloud.scratch import escape_username

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    # dask_gateway 2026.3.0: Gateway.__del__ re-closes an already closed client
    # and trips over its stopped loop (harmless; upstream).
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function Gateway.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


def test_cluster_with_options_scales_computes_and_sees_scratch(federation):
    def environment():  # local, so that cloudpickle ships it by value
        import os

        names = ("PANGEO_SCRATCH", "MY_VARIABLE", "AWS_ENDPOINT_URL", "AWS_REGION")
        return {name: os.environ.get(name) for name in names}

    user = federation.user("jane.doe")
    gateway = federation.gateway(federation.token(user))
    options = gateway.cluster_options()
    assert options.worker_cores == 1 and options.worker_memory == 1.0
    assert options.idle_timeout == 600
    options.worker_memory = 0.75
    # A user cannot point their scratch variable at someone else's prefix.
    options.environment = {"MY_VARIABLE": "1", "PANGEO_SCRATCH": "s3://pangeo-scratch/alice/"}

    with cluster_of(gateway, cluster_options=options) as cluster:
        cluster.scale(2)
        client = cluster.get_client()
        client.wait_for_workers(2, timeout=WAIT)
        assert client.submit(sum, range(10)).result(timeout=WAIT) == 45
        total = client.map(lambda x: x * x, range(100))
        assert client.submit(sum, total).result(timeout=WAIT) == sum(x * x for x in range(100))

        expected = {
            "PANGEO_SCRATCH": f"s3://pangeo-scratch/{escape_username(user)}/",
            "MY_VARIABLE": "1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_REGION": "us-west-2",
        }
        assert expected["PANGEO_SCRATCH"] == "s3://pangeo-scratch/jane-2edoe/"
        on_workers = client.run(environment)
        assert len(on_workers) == 2
        assert all(env == expected for env in on_workers.values()), on_workers
        assert client.run_on_scheduler(environment) == expected

        workers = client.scheduler_info()["workers"].values()
        assert {w["memory_limit"] for w in workers} == {int(0.75 * 2**30)}
        assert {w["nthreads"] for w in workers} == {1}

        [report] = gateway.list_clusters()
        assert report.options["worker_memory"] == 0.75


def test_out_of_range_options_are_one_clear_error(federation):
    user = federation.user("oscar", server=False)
    gateway = federation.gateway(federation.token(user))

    with pytest.raises(ValueError) as info:
        gateway.new_cluster(worker_cores=5)
    assert str(info.value) == "worker_cores must be <= 2, got 5"

    with pytest.raises(ValueError, match=r"^worker_memory must be >= 0.5, got 0.1$"):
        gateway.submit(worker_memory=0.1)
    with pytest.raises(ValueError, match=r"^Unknown fields \['worker_gpus'\]$"):
        gateway.submit(worker_gpus=1)
    with pytest.raises(ValueError, match="not a valid environment variable name"):
        gateway.submit(environment={"BAD NAME": "x"})
    assert gateway.list_clusters() == []


def test_user_cannot_raise_idle_timeout(federation):
    gateway = federation.gateway(federation.token(federation.user("ida", server=False)))
    with pytest.raises(ValueError) as info:
        gateway.submit(idle_timeout=7200)
    assert str(info.value) == (
        "idle_timeout must be <= 600 seconds (the deployment's idle timeout: "
        "it may be lowered, not raised), got 7200"
    )
    with pytest.raises(ValueError, match=r"^idle_timeout must be >= 1, got 0$"):
        gateway.submit(idle_timeout=0)
    assert gateway.list_clusters() == []


def test_token_without_access_scope_is_refused(federation):
    user = federation.user("trudy", server=False)
    allowed = federation.gateway(federation.token(user))
    assert allowed.list_clusters() == []

    # A valid hub token of the same user, without access:services!service=dask-gateway.
    no_scope = federation.gateway(federation.token(user, scopes=["read:users:name!user"]))
    with pytest.raises(aiohttp.ClientResponseError) as info:
        no_scope.list_clusters()
    assert info.value.status == 401
    with pytest.raises(aiohttp.ClientResponseError) as info:
        no_scope.submit()
    assert info.value.status == 401

    # JupyterHub 5 answers 403 for an unknown token, which dask-gateway-server
    # reports as a server-side permission failure: refused all the same.
    forged = federation.gateway("not-a-hub-token")
    with pytest.raises(GatewayServerError, match="verifying user's JupyterHub API token"):
        forged.list_clusters()


def test_idle_cluster_is_stopped_and_busy_cluster_is_not(federation):
    timeout = 4  # seconds, lowered by the user from the deployment's 600
    gateway = federation.gateway(federation.token(federation.user("ivan")))
    with cluster_of(gateway, idle_timeout=timeout) as busy:
        # Submitted before any worker exists: an unrunnable task already counts
        # as activity, so a slow worker start cannot make this cluster "idle".
        client = busy.get_client()
        submitted = time.monotonic()
        task = client.submit(time.sleep, 3 * timeout, pure=False)
        busy.scale(1)
        with cluster_of(gateway, idle_timeout=timeout) as idle:
            wait_for_status(gateway, idle.name, "STOPPED", timeout=WAIT)
        # Let the busy cluster run well past its idle timeout.
        time.sleep(max(0.0, submitted + 2.5 * timeout - time.monotonic()))
        assert gateway.get_cluster(busy.name).status.name == "RUNNING"
        assert not task.done()
        task.result(timeout=WAIT)
        assert gateway.get_cluster(busy.name).status.name == "RUNNING"
        client.close()


def test_group_limits_apply(federation):
    plain = federation.gateway(federation.token(federation.user("paula")))
    power_user = federation.user("pete", groups=("pangeo-data:power-users", "other"))
    power = federation.gateway(federation.token(power_user))

    # adapt() with no work starts no workers; the gateway answers with the cap.
    with (
        cluster_of(plain) as cluster,
        pytest.warns(GatewayWarning, match="resource limit of 2 workers"),
    ):
        cluster.adapt(minimum=0, maximum=10)
    with (
        cluster_of(power) as cluster,
        pytest.warns(GatewayWarning, match="resource limit of 5 workers"),
    ):
        cluster.adapt(minimum=0, maximum=10)
