"""deploy / diff against a real cluster: runs only where KUBECONFIG reaches one.

Skips with the reason when no cluster answers (as on machines without
Kubernetes). In CI the end-to-end job provides a kind cluster.
"""

from __future__ import annotations

import os

import pytest

from pangeo_cloud.config import load_deployment, resolve_target
from pangeo_cloud.deploy import cluster
from pangeo_cloud.deploy.diff import diff_stage
from pangeo_cloud.deploy.tools import ToolError

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def reachable_cluster() -> None:
    try:
        cluster.check_with_helm("default")
    except ToolError as exc:
        pytest.skip(f"no reachable Kubernetes cluster: {exc}")


def test_diff_of_a_release_that_does_not_exist(
    reachable_cluster, repo_copy, monkeypatch, edit_yaml
) -> None:
    file = repo_copy.deployments / "local" / "deployment.yaml"
    edit_yaml(file, "    release: pangeo\n", "    release: pangeo-diff-test-absent\n")
    deployment = load_deployment("local", repo_copy)
    result = diff_stage(resolve_target(deployment, "dev", repo_copy))
    assert not result.live_found and "everything would be created" in result.note
    assert result.changed and all(name for name in result.changed)


@pytest.mark.skipif(
    not os.environ.get("PANGEO_TEST_DEPLOY"),
    reason="set PANGEO_TEST_DEPLOY=1 to install the chart into the cluster "
    "(needs the subcharts' images; CI's end-to-end job does this)",
)
def test_deploy_local_stage(reachable_cluster, repo_paths) -> None:
    from pangeo_cloud.deploy.release import deploy

    deploy(resolve_target("local", "dev", repo_paths), timeout="15m")
