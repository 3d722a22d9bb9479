"""Helpers for the hub unit tests: chart values, config building, offline KubeSpawners.

(A uniquely named module, not conftest: test directories have no __init__.py.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import yaml
from repo_support import REPO_ROOT
from traitlets.config import Config

from pangeo_cloud.config.layering import merge
from pangeo_cloud.hub.config import configure
from pangeo_cloud.hub.z2jh_values import apply_z2jh_values, values_get_config
from pangeo_cloud.testing.offline import OFFLINE_KUBECONFIG

REPO = REPO_ROOT
CHART_VALUES = REPO / "helm-chart" / "pangeo-cloud" / "values.yaml"

# A kubeconfig naming a closed loopback port: KubeSpawner loads a client
# configuration when it is created, but building manifests never calls the API.
DUMMY_KUBECONFIG = OFFLINE_KUBECONFIG


def chart_values() -> dict[str, Any]:
    """The umbrella chart's values.yaml (federation defaults)."""
    return yaml.safe_load(CHART_VALUES.read_text())


def hub_values(**overrides: Any) -> dict[str, Any]:
    """The `jupyterhub:` subchart values: chart defaults, a scratch bucket, overrides."""
    jh = chart_values()["jupyterhub"]
    jh = merge(jh, {"custom": {"pangeo": {"scratch": {"url": "gs://pangeo-scratch"}}}})
    return merge(jh, overrides)


def build_config(jh_values: dict[str, Any], base: Config | None = None) -> Config:
    """What the hub's config would be: z2jh's mapping, then our configure()."""
    c = base or Config()
    get_config = values_get_config(jh_values)
    apply_z2jh_values(c, get_config)
    configure(c, get_config)
    return c


def fake_user(name: str, groups: tuple[str, ...] = ()) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        id=7,
        url=f"/user/{name}/",
        escaped_name=name,
        groups=[SimpleNamespace(name=g) for g in groups],
    )


FAKE_HUB = SimpleNamespace(
    public_host="",
    url="http://hub:8081/hub/",
    base_url="/hub/",
    api_url="http://hub:8081/hub/api",
)


async def prepare_spawn(spawner: Any, user_options: dict[str, Any] | None = None) -> None:
    """The steps JupyterHub and KubeSpawner take before creating the pod, in order."""
    spawner.user_options = user_options or {}
    await spawner._run_apply_user_options(spawner.user_options)
    await spawner.run_pre_spawn_hook()
    await spawner.load_user_options()  # KubeSpawner._start: applies the profile
