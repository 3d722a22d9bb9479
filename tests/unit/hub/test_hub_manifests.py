"""Offline pod and PVC manifests from the real KubeSpawner, per deployment and profile.

The config is what the hub would have: z2jh's mapping of the merged values
(pangeo_cloud.hub.z2jh_values) followed by our configure(). The manifests are
built by KubeSpawner itself (get_pod_manifest / get_pvc_manifest); no API
server is contacted.
"""

from __future__ import annotations

import pytest
from hub_unit_support import build_config, hub_values, prepare_spawn

from pangeo_cloud.scratch import escape_username

DEPLOYMENTS = ["gcp-us-central1-b", "aws-us-west-2"]
UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def to_bytes(spec: str | int) -> int:
    if isinstance(spec, int):
        return spec
    return int(float(spec[:-1]) * UNITS[spec[-1]])


def deployment_values(name: str, stage: str) -> dict:
    config = pytest.importorskip("pangeo_cloud.config")
    try:
        return config.merged_values(name, stage)["jupyterhub"]
    except config.ConfigError as e:  # pragma: no cover - deployments still being written
        pytest.skip(f"deployment {name} ({stage}) does not load yet: {e}")


def plain(spawner, obj) -> dict:
    """A manifest object as the JSON the API server would receive."""
    return spawner.api.api_client.sanitize_for_serialization(obj)


def pod_env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def all_cases():
    for name in DEPLOYMENTS:
        for stage in ("staging", "prod"):
            yield name, stage


@pytest.mark.parametrize(("deployment", "stage"), list(all_cases()))
async def test_every_profile_manifest(deployment, stage, make_kubespawner):
    values = deployment_values(deployment, stage)
    c = build_config(values)
    singleuser = values["singleuser"]
    profiles = singleuser["profileList"]
    assert profiles, "a deployment without profiles"
    scratch = values["custom"]["pangeo"]["scratch"]
    extra_env = singleuser["extraEnv"]
    image = f"{singleuser['image']['name']}:{singleuser['image']['tag']}"
    for profile in profiles:
        groups = tuple(profile["allowed_groups"][:1]) if profile.get("allowed_groups") else ()
        spawner = make_kubespawner(c, name="Jane.Doe", groups=groups)
        await prepare_spawn(spawner, {"profile": profile["slug"]})
        pod = plain(spawner, await spawner.get_pod_manifest())
        pvc = plain(spawner, spawner.get_pvc_manifest())
        container = pod["spec"]["containers"][0]
        override = profile["kubespawner_override"]
        where = f"{deployment}/{stage} profile {profile['slug']}"

        # Resources: exactly what the profile says.
        resources = container["resources"]
        assert float(resources["requests"]["cpu"]) == override["cpu_guarantee"], where
        assert float(resources["limits"]["cpu"]) == override["cpu_limit"], where
        assert resources["requests"]["memory"] == to_bytes(override["mem_guarantee"]), where
        assert resources["limits"]["memory"] == to_bytes(override["mem_limit"]), where
        assert container["image"] == override.get("image", image), where
        node_selector = pod["spec"].get("nodeSelector")
        assert node_selector == {
            **singleuser.get("nodeSelector", {}),
            **override.get("node_selector", {}),
        }, where
        assert node_selector, f"{where}: user pods must be pinned to the user pool"

        # Environment: the user's scratch prefix and the gateway wiring.
        env = pod_env(pod)
        expected_scratch = f"{scratch['url'].rstrip('/')}/{escape_username('Jane.Doe')}/"
        assert env["PANGEO_SCRATCH"] == expected_scratch, where
        assert env["PANGEO_SCRATCH"].split("://")[0] == ("gs" if "gcp" in deployment else "s3")
        for key, value in extra_env.items():
            # KubeSpawner formats values: "{{X}}" reaches the pod as "{X}".
            assert env[key] == value.replace("{{", "{").replace("}}", "}"), (where, key)
        assert env["DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE"] == "{JUPYTER_IMAGE_SPEC}"
        assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
        if scratch["url"].startswith("s3://"):
            assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == scratch["region"]
        else:
            assert env["GOOGLE_CLOUD_PROJECT"] == scratch["project"]

        # Home: a 10Gi claim of the cloud's storage class, mounted at /home/jovyan.
        assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi", where
        storage_class = pvc["spec"]["storageClassName"]
        assert storage_class == singleuser["storage"]["dynamic"]["storageClass"], where
        assert storage_class == ("standard-rwo" if "gcp" in deployment else "gp3"), where
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["spec"]["volumes"]
            if "persistentVolumeClaim" in v
        }
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert claims[mounts["/home/jovyan"]] == pvc["metadata"]["name"], where


async def test_unknown_profile_is_not_loaded(make_kubespawner):
    from tornado import web

    c = build_config(hub_values())
    spawner = make_kubespawner(c)
    with pytest.raises(web.HTTPError) as err:
        await prepare_spawn(spawner, {"profile": "enormous"})
    assert err.value.status_code == 400
    assert "'enormous' is not offered to you" in err.value.jupyterhub_message
    assert "Small (small)" in err.value.jupyterhub_message


@pytest.mark.parametrize(
    "environment",
    [
        {"PANGEO_SCRATCH": None, "GOOGLE_CLOUD_PROJECT": None},  # drop
        {"PANGEO_SCRATCH": "gs://someone-else/", "GOOGLE_CLOUD_PROJECT": "other"},  # replace
    ],
)
async def test_profile_cannot_drop_or_replace_scratch(environment, make_kubespawner):
    profile = {
        "display_name": "Sneaky",
        "slug": "sneaky",
        "kubespawner_override": {"environment": environment, "cpu_limit": 1},
    }
    values = hub_values(
        custom={"pangeo": {"scratch": {"url": "gs://bucket/prefix", "project": "proj"}}},
        singleuser={"profileList": [profile]},
    )
    spawner = make_kubespawner(build_config(values), name="bob")
    await prepare_spawn(spawner, {"profile": "sneaky"})
    # The override was applied to the spawner (so the test would notice a no-op)...
    assert spawner.cpu_limit == 1
    assert spawner.environment.get("PANGEO_SCRATCH") != "gs://bucket/prefix/bob/"
    # ...but the pod still gets the user's own prefix.
    env = pod_env(plain(spawner, await spawner.get_pod_manifest()))
    assert env["PANGEO_SCRATCH"] == "gs://bucket/prefix/bob/"
    assert env["GOOGLE_CLOUD_PROJECT"] == "proj"


async def test_group_restricted_profile_in_manifest(make_kubespawner):
    gpu = {
        "display_name": "GPU",
        "slug": "gpu",
        "allowed_groups": ["pangeo-data:gpu-users"],
        "kubespawner_override": {"node_selector": {"pool": "gpu"}},
    }
    values = hub_values(singleuser={"profileList": [{"display_name": "Small"}, gpu]})
    c = build_config(values)
    member = make_kubespawner(c, name="m", groups=("pangeo-data:gpu-users",))
    await prepare_spawn(member, {"profile": "gpu"})
    assert (await member.get_pod_manifest()).spec.node_selector == {"pool": "gpu"}
    assert member.profile_list(member)[1]["slug"] == "gpu"

    outsider = make_kubespawner(c, name="o", groups=("pangeo-data:users",))
    with pytest.raises(Exception, match="not offered to you"):
        await prepare_spawn(outsider, {"profile": "gpu"})
    # KubeSpawner's own check (load_user_options) sees the same filtered list,
    # so skipping JupyterHub's apply_user_options would not help either.
    outsider.user_options = {"profile": "gpu"}
    with pytest.raises(ValueError, match="No such profile: gpu"):
        await outsider.load_user_options()
