"""The cluster options and their handler, through dask-gateway-server's own code path."""

from __future__ import annotations

import warnings

import pytest
from dask_gateway_server.backends.base import Backend, PublicException
from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
from dask_gateway_server.backends.local import LocalClusterConfig
from dask_gateway_server.models import User
from traitlets.config import Config

from pangeo_cloud.gateway.config import configure
from pangeo_cloud.gateway.options import make_options, user_environment
from pangeo_cloud.gateway.policy import GIB, Policy

SETTINGS = {
    "scratch": {"url": "s3://pangeo-scratch", "region": "us-west-2"},
    "gateway": {
        "idleTimeout": 1800,
        "clusterMaxCores": 20,
        "clusterMaxMemoryGiB": 80,
        "clusterMaxWorkers": 10,
        "workerCores": {"min": 1, "max": 8, "default": 2},
        "workerMemoryGiB": {"min": 1, "max": 32, "default": 8},
        "groupLimits": {"org:power": {"clusterMaxCores": 200, "clusterMaxWorkers": 100}},
    },
}
ALLOWLIST = ["pangeo/pangeo-notebook:*", "pangeo/pangeo-notebook@sha256:*"]
CLASSES = {"kubernetes": KubeClusterConfig, "local": LocalClusterConfig}


def backend_for(kind: str, settings=SETTINGS, config: Config | None = None) -> Backend:
    c = config or Config()
    configure(c, settings, backend=kind)
    return Backend(config=c, cluster_config_class=CLASSES[kind])


async def start(backend: Backend, user: User, **request):
    """What the gateway does on POST /api/v1/clusters/ (raises PublicException)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. unknown traits passed to the config class
        return await backend.process_cluster_options(user, request)


def test_specification_shown_to_users():
    spec = {
        f["field"]: f
        for f in make_options(Policy.from_settings(SETTINGS), "kubernetes").get_specification()
    }
    assert list(spec) == [
        "worker_cores",
        "worker_memory",
        "image",
        "environment",
        "idle_timeout",
        "keep_after_server_stops",
    ]
    # Clusters stop with the server unless the user asks otherwise.
    assert spec["keep_after_server_stops"]["default"] is False
    assert spec["keep_after_server_stops"]["spec"] == {"type": "bool"}
    assert spec["worker_cores"]["spec"] == {"type": "int", "min": 1, "max": 8}
    assert spec["worker_cores"]["default"] == 2
    assert spec["worker_memory"]["spec"] == {"type": "float", "min": 1.0, "max": 32.0}
    assert spec["idle_timeout"]["default"] == 1800
    assert spec["idle_timeout"]["spec"]["max"] == 1800
    assert spec["image"]["default"] == ""


@pytest.mark.parametrize("kind", ["kubernetes", "local"])
async def test_defaults(kind):
    options, config = await start(backend_for(kind), User("alice"))
    assert options == {
        "worker_cores": 2,
        "worker_memory": 8.0,
        "image": "",
        "environment": {},
        "idle_timeout": 1800.0,
        "keep_after_server_stops": False,
    }
    assert isinstance(config, CLASSES[kind])
    assert config.worker_cores == 2
    assert config.worker_memory == 8 * GIB
    assert config.idle_timeout == 1800
    assert config.cluster_max_cores == 20
    assert config.cluster_max_memory == 80 * GIB
    assert config.cluster_max_workers == 9  # (20 cores - 1 for the scheduler) // 2
    assert config.scheduler_cmd[1:] == ["scheduler"]
    assert config.worker_cmd[1:2] == ["worker"]
    assert config.environment == {
        "PANGEO_SCRATCH": "s3://pangeo-scratch/alice/",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
    }


async def test_kubernetes_requests_equal_limits_and_image():
    c = Config()
    # What the chart's values set before our extraConfig runs.
    c.KubeClusterConfig.image = "pangeo/pangeo-notebook:2026.11.18"
    c.KubeClusterConfig.worker_cores_limit = 2
    c.KubeClusterConfig.worker_memory_limit = "8G"
    settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], "imageAllowlist": ALLOWLIST}}
    backend = backend_for("kubernetes", settings, config=c)

    _, config = await start(backend, User("alice"), worker_cores=6, worker_memory=24)
    assert (config.worker_cores, config.worker_cores_limit) == (6, 6)
    assert config.worker_memory == config.worker_memory_limit == 24 * GIB
    assert config.image == "pangeo/pangeo-notebook:2026.11.18"  # kept from the chart

    # What a notebook sends through DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE.
    _, config = await start(backend, User("alice"), image="pangeo/pangeo-notebook:2026.12.01")
    assert config.image == "pangeo/pangeo-notebook:2026.12.01"


@pytest.mark.parametrize("kind", ["kubernetes", "local"])
@pytest.mark.parametrize(
    "image",
    [
        "pangeo/pangeo-notebook:2026.11.18",
        "pangeo/pangeo-notebook@sha256:" + "ab" * 32,
    ],
)
async def test_allowed_images(kind, image):
    settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], "imageAllowlist": ALLOWLIST}}
    options, _ = await start(backend_for(kind, settings), User("alice"), image=image)
    assert options["image"] == image


@pytest.mark.parametrize("kind", ["kubernetes", "local"])
@pytest.mark.parametrize(
    "image",
    [
        "ubuntu:24.04",
        "evil.example/pangeo/pangeo-notebook:1",  # another registry
        "pangeo/pangeo-notebook-evil:1",  # another repository with the same start
        "pangeo/pangeo-notebook:1/../x",  # '*' never crosses '/'
        "pangeo/pangeo-notebook:1@sha256:x",
    ],
)
async def test_images_outside_the_allowlist_are_refused_with_the_patterns(kind, image):
    settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], "imageAllowlist": ALLOWLIST}}
    with pytest.raises(PublicException) as info:
        await start(backend_for(kind, settings), User("alice"), image=image)
    assert str(info.value) == (
        f"image {image!r} is not allowed on this deployment; allowed images: "
        "'pangeo/pangeo-notebook:*', 'pangeo/pangeo-notebook@sha256:*'"
    )


async def test_without_an_allowlist_only_the_default_image_runs():
    backend = backend_for("kubernetes")
    _, config = await start(backend, User("alice"))  # no image option: the chart's
    with pytest.raises(PublicException, match="allowed images: none"):
        await start(backend, User("alice"), image="pangeo/pangeo-notebook:2026.11.18")


async def test_image_default_from_settings():
    settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], "image": "pangeo/base:1"}}
    options, config = await start(backend_for("kubernetes", settings), User("alice"))
    assert options["image"] == "pangeo/base:1"
    assert config.image == "pangeo/base:1"


async def test_environment_merged_and_scratch_wins():
    c = Config()
    c.KubeClusterConfig.environment = {"OPERATOR": "x", "MY_VARIABLE": "operator"}
    backend = backend_for("kubernetes", config=c)
    _, config = await start(
        backend,
        User("Alice"),
        environment={
            "MY_VARIABLE": "1",
            "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": False,
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": 5,
            "PANGEO_SCRATCH": "s3://pangeo-scratch/bob/",
            "AWS_REGION": "eu-west-1",
        },
    )
    assert config.environment == {
        "OPERATOR": "x",
        "MY_VARIABLE": "1",
        "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": "False",
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "5",
        "PANGEO_SCRATCH": "s3://pangeo-scratch/-41lice/",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
    }


async def test_local_operator_environment_is_kept():
    # As `pangeo-cloud up` does: store credentials for every cluster.
    c = Config()
    c.LocalClusterConfig.environment = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    _, config = await start(backend_for("local", config=c), User("bob"), environment={"X": "1"})
    assert config.environment == {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "X": "1",
        "PANGEO_SCRATCH": "s3://pangeo-scratch/bob/",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_REGION": "us-west-2",
    }


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"worker_cores": 20}, "worker_cores must be <= 8, got 20"),
        ({"worker_cores": 0}, "worker_cores must be >= 1, got 0"),
        ({"worker_cores": 1.5}, "worker_cores must be an integer, got 1.5"),
        ({"worker_memory": 64}, "worker_memory must be <= 32, got 64"),
        ({"worker_memory": 0.5}, "worker_memory must be >= 1, got 0.5"),
        ({"worker_memory": "8G"}, "worker_memory must be a number, got '8G'"),
        (
            {"idle_timeout": 7200},
            "idle_timeout must be <= 1800 seconds (the deployment's idle timeout: "
            "it may be lowered, not raised), got 7200",
        ),
        ({"idle_timeout": 0}, "idle_timeout must be >= 1, got 0"),
        ({"worker_gpus": 1}, "Unknown fields ['worker_gpus']"),
        ({"environment": ["A=1"]}, "environment must be a mapping, got ['A=1']"),
        ({"environment": {"A B": "1"}}, "environment: 'A B' is not a valid environment"),
        ({"environment": {"1A": "1"}}, "environment: '1A' is not a valid environment"),
        ({"environment": {"A": None}}, "environment['A'] must be a string or a number"),
        ({"environment": {"A": {"b": 1}}}, "environment['A'] must be a string or a number"),
        ({"image": 3}, "image must be a string, got 3"),
    ],
)
async def test_bad_options_are_one_clear_error(request_, message):
    with pytest.raises(PublicException) as info:
        await start(backend_for("kubernetes"), User("alice"), **request_)
    assert str(info.value).startswith(message), str(info.value)


async def test_user_may_lower_idle_timeout():
    _, config = await start(backend_for("local"), User("alice"), idle_timeout=60)
    assert config.idle_timeout == 60


async def test_no_deployment_idle_timeout_lets_users_choose():
    settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], "idleTimeout": 0}}
    backend = backend_for("local", settings)
    _, config = await start(backend, User("alice"))
    assert config.idle_timeout == 0
    _, config = await start(backend, User("alice"), idle_timeout=86400)
    assert config.idle_timeout == 86400


async def test_group_limits():
    backend = backend_for("kubernetes")
    small = {"worker_cores": 1, "worker_memory": 1}
    _, plain = await start(backend, User("alice", groups=["org:other"]), **small)
    _, power = await start(backend, User("bob", groups=["org:power"]), **small)
    assert (plain.cluster_max_cores, plain.cluster_max_workers) == (20, 10)
    assert (power.cluster_max_cores, power.cluster_max_memory) == (200, 80 * GIB)
    # 100 allowed by the group, but (80 GiB - 2 GiB for the scheduler) // 1 GiB.
    assert power.cluster_max_workers == 78


async def test_worker_larger_than_cluster_is_refused():
    settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], "clusterMaxCores": 4}}
    with pytest.raises(PublicException, match="worker_cores=6 does not fit in your cluster limit"):
        await start(backend_for("kubernetes", settings), User("alice"), worker_cores=6)
    settings = {**SETTINGS, "gateway": {**SETTINGS["gateway"], "clusterMaxMemoryGiB": 16}}
    with pytest.raises(PublicException, match="worker_memory=24 GiB does not fit"):
        await start(backend_for("kubernetes", settings), User("alice"), worker_memory=24)


def test_user_environment_strings():
    assert user_environment({"A": "x", "B": 1, "C": 2.5, "D": True, "a.b-c_": ""}) == {
        "A": "x",
        "B": "1",
        "C": "2.5",
        "D": "True",
        "a.b-c_": "",
    }
