"""The local runtime's pieces without processes: spawner profiles, env formatting, values."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pangeo_cloud.local.errors import LocalRuntimeError
from pangeo_cloud.local.spawner import PangeoLocalSpawner, _format_value, render_profiles_form
from pangeo_cloud.local.values import GitHubLogin, local_values, login_mode

PROFILES = [
    {
        "display_name": "Small",
        "slug": "small",
        "description": "1 CPU <b>",
        "default": True,
        "kubespawner_override": {
            "cpu_limit": 1,
            "mem_limit": "2G",
            "environment": {"EXTRA": "{username}-x", "DROPPED": None},
            "node_selector": {"pool": "user"},
        },
    },
    {"display_name": "Medium", "slug": "medium", "kubespawner_override": {"cpu_limit": 2}},
]


def spawner(**traits) -> PangeoLocalSpawner:
    user = SimpleNamespace(name="Jane.Doe", id=7, url="/user/Jane.Doe/", groups=[])
    hub = SimpleNamespace(
        public_host="", api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/", url="/hub/"
    )
    return PangeoLocalSpawner(user=user, hub=hub, **traits)


def test_env_values_are_formatted_like_kubespawner():
    values = {"username": "jane", "servername": ""}
    assert _format_value("{{JUPYTER_IMAGE_SPEC}}", values) == "{JUPYTER_IMAGE_SPEC}"
    assert _format_value("/home/{username}", values) == "/home/jane"
    # Unknown fields survive for a later expansion instead of crashing the spawn.
    assert _format_value("{NOT_A_FIELD}", values) == "{NOT_A_FIELD}"
    assert _format_value("unbalanced {", values) == "unbalanced {"


def test_profiles_form_escapes_and_marks_the_default():
    form = render_profiles_form(PROFILES)
    assert 'value="small" checked' in form
    assert 'value="medium">' in form
    assert "1 CPU &lt;b&gt;" in form


async def test_profile_overrides_apply_and_do_not_accumulate(tmp_path):
    s = spawner(
        profile_list=PROFILES,
        homes_directory=str(tmp_path),
        environment={"DROPPED": "1", "KEPT": "yes"},
        image="pangeo/pangeo-notebook:1",
    )
    s.user_options = {"profile": "small"}
    profile = await s.apply_profile()
    assert profile["slug"] == "small"
    assert s.cpu_limit == 1 and s.mem_limit == 2 * 2**30
    assert s.environment == {"KEPT": "yes", "EXTRA": "{username}-x"}
    env = s.get_env()
    assert env["EXTRA"] == "-4aane-2e-44oe-x"  # escaped like the home and scratch prefix
    assert env["JUPYTER_IMAGE_SPEC"] == "pangeo/pangeo-notebook:1"
    assert env["HOME"] == str(tmp_path / "-4aane-2e-44oe")
    assert "DROPPED" not in env

    s.user_options = {"profile": "medium"}
    await s.apply_profile()
    assert s.cpu_limit == 2 and s.mem_limit is None  # nothing left from Small
    assert s.environment == {"DROPPED": "1", "KEPT": "yes"}

    s.user_options = {"profile": "huge"}
    with pytest.raises(ValueError, match="not offered"):
        await s.apply_profile()


async def test_callable_profile_list_is_asked_per_spawner():
    seen = []

    def offered(sp):
        seen.append(sp.user.name)
        return PROFILES[1:]

    s = spawner(profile_list=offered)
    assert (await s.chosen_profile())["slug"] == "medium"  # the first when none is default
    assert seen == ["Jane.Doe"]


def test_local_values_point_at_this_machine():
    values = {
        "jupyterhub": {
            "custom": {"pangeo": {"scratch": {"url": "gs://bucket", "endpoint": ""}}},
            "singleuser": {"extraEnv": {"DASK_GATEWAY__ADDRESS": "http://proxy-public/x"}},
            "hub": {"services": {"dask-gateway": {"display": False}}},
        }
    }
    ports = {"public": 8000, "gateway": 9001, "broker": 9002}
    out = local_values(values, ports, "http://127.0.0.1:9100", Path("/run/aws-config"))
    scratch = out["jupyterhub"]["custom"]["pangeo"]["scratch"]
    assert scratch == {
        "url": "s3://bucket",
        "endpoint": "http://127.0.0.1:9100",
        "region": "us-east-1",
        "broker": {
            "url": "http://127.0.0.1:9002/services/scratch-credentials/",
            "awsConfigFile": "/run/aws-config",
        },
    }
    broker = out["jupyterhub"]["hub"]["services"]["scratch-credentials"]
    assert broker == {"url": "http://127.0.0.1:9002", "display": False}
    env = out["jupyterhub"]["singleuser"]["extraEnv"]
    # Servers get no store key: credentials come from the broker.
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert env["DASK_GATEWAY__ADDRESS"] == "http://127.0.0.1:8000/services/dask-gateway"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://127.0.0.1:9001"
    assert out["jupyterhub"]["hub"]["services"]["dask-gateway"]["url"] == "http://127.0.0.1:9001"
    assert values["jupyterhub"]["custom"]["pangeo"]["scratch"]["url"] == "gs://bucket"  # a copy


def test_login_mode():
    shared = {
        "jupyterhub": {
            "hub": {"config": {"JupyterHub": {"authenticator_class": "shared-password"}}}
        }
    }
    github = {"jupyterhub": {"hub": {"config": {"JupyterHub": {"authenticator_class": "github"}}}}}
    assert login_mode(shared, None, "local") == "shared-password"
    assert login_mode(shared, GitHubLogin("id", "secret"), "local") == "github"
    with pytest.raises(LocalRuntimeError, match="--github-client-id"):
        login_mode(github, None, "gcp")
