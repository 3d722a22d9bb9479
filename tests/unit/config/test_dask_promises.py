"""`validate`'s Dask promises: pools for schedulers and workers, per-user totals.

Schedulers and workers run on declared node pools they tolerate and fit in;
every user's clusters are capped in total, never below one cluster's caps.
Each test breaks one thing in a copy of the repository and checks the message
names the file, line and key path to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pangeo_cloud.config import ConfigError, Paths, load_deployment
from pangeo_cloud.deploy.validate import validate_all

WORKER = "dask-gateway.gateway.backend.worker.extraPodConfig"


def _promise_failures(paths: Paths, target: str = "gcp-us-central1-b/prod") -> list[str]:
    results = validate_all([target], paths, only={"schemas", "promises"})
    return [e for r in results if not r.ok and r.check == "promises" for e in r.errors]


def _common(paths: Paths, name: str = "gcp-us-central1-b") -> Path:
    return paths.deployments / name / "values" / "common.yaml"


def _deployment(paths: Paths, name: str = "gcp-us-central1-b") -> Path:
    return paths.deployments / name / "deployment.yaml"


def test_repository_declares_spot_worker_pools_with_taints(repo_paths):
    for name, worker_pool in (
        ("gcp-us-central1-b", "dask-worker"),
        ("aws-us-west-2", "dask-worker-spot"),
    ):
        pools = {p.name: p for p in load_deployment(name, repo_paths).node_pools}
        assert pools[worker_pool].taints == ("k8s.dask.org/dedicated=worker:NoSchedule",)
        assert "core" in pools


def test_worker_selector_must_match_a_declared_pool(repo_copy, edit_yaml):
    edit_yaml(
        _common(repo_copy),
        "{cloud.google.com/gke-nodepool: dask-worker}",
        "{cloud.google.com/gke-nodepool: dask-gpu}",
    )
    [error] = [e for e in _promise_failures(repo_copy) if "matches no node pool" in e]
    assert "common.yaml:" in error and f"{WORKER}.nodeSelector" in error
    assert "gcp-us-central1-b/deployment.yaml" in error


def test_workers_must_tolerate_the_pools_taint(repo_copy, edit_yaml):
    edit_yaml(
        _common(repo_copy),
        "            - {key: k8s.dask.org/dedicated, operator: Equal, value: worker, "
        "effect: NoSchedule}\n",
        "            - {key: k8s.dask.org/dedicated, operator: Equal, value: other, "
        "effect: NoSchedule}\n",
    )
    errors = _promise_failures(repo_copy)
    assert any(
        f"{WORKER}.tolerations" in e
        and "node pool 'dask-worker' is tainted k8s.dask.org/dedicated=worker:NoSchedule" in e
        for e in errors
    ), errors


def test_largest_worker_option_must_fit_the_pool(repo_copy, edit_yaml):
    edit_yaml(
        _deployment(repo_copy),
        "  - name: dask-worker\n    cpu: 15.8\n",
        "  - name: dask-worker\n    cpu: 3.8\n",
    )
    errors = _promise_failures(repo_copy)
    assert any(
        "the largest worker a user may ask for (8 CPU) exceeds node pool 'dask-worker' (3.8 CPU)"
        in e
        for e in errors
    ), errors


def test_workers_must_be_pinned(repo_copy, edit_yaml):
    edit_yaml(
        _common(repo_copy),
        "          nodeSelector: {cloud.google.com/gke-nodepool: dask-worker}\n",
        "",
    )
    errors = _promise_failures(repo_copy)
    assert any("pin Dask workers to a node pool declared in" in e for e in errors), errors


@pytest.mark.parametrize("taint", ["dedicated", "a=b:Sometimes", 3])
def test_bad_taint_is_a_located_error(repo_copy, edit_yaml, taint):
    edit_yaml(
        _deployment(repo_copy),
        'taints: ["k8s.dask.org/dedicated=worker:NoSchedule"]',
        f"taints: [{taint!r}]" if isinstance(taint, str) else f"taints: [{taint}]",
    )
    with pytest.raises(ConfigError) as info:
        load_deployment("gcp-us-central1-b", repo_copy)
    message = str(info.value)
    lines = _deployment(repo_copy).read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "taints:" in text)
    assert f"deployment.yaml:{line}: nodePools[1].taints[0]" in message
    assert "must be key=value:Effect" in message


def _prod(paths: Paths) -> Path:
    return paths.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"


GATEWAY = "jupyterhub.custom.pangeo.gateway"


@pytest.mark.parametrize(
    ("snippet", "needle"),
    [
        (
            "userMaxCores: 50",
            f"{GATEWAY}.userMaxCores: userMaxCores 50 is below clusterMaxCores 80",
        ),
        (
            "groupLimits: {org:power: {clusterMaxWorkers: 100}}",
            f"{GATEWAY}.groupLimits.org:power.clusterMaxWorkers: userMaxWorkers 50 is below "
            "clusterMaxWorkers 100",
        ),
    ],
)
def test_user_totals_are_capped_and_fit_a_cluster(repo_copy, snippet, needle):
    path = _prod(repo_copy)
    path.write_text(
        path.read_text() + f"  custom:\n    pangeo:\n      gateway:\n        {snippet}\n"
    )
    errors = _promise_failures(repo_copy)
    matching = [e for e in errors if needle in e]
    assert matching, errors
    assert all("prod.yaml:" in e for e in matching), matching


def test_user_totals_must_be_set(repo_copy, edit_yaml):
    values = repo_copy.root / "helm-chart" / "pangeo-cloud" / "values.yaml"
    edit_yaml(values, "        userMaxClusters: 4\n", "")
    errors = _promise_failures(repo_copy)
    assert any(
        f"{GATEWAY}.userMaxClusters: every user's clusters must be capped in total: set a "
        "positive number, got None" in e
        for e in errors
    ), errors


def test_a_group_raising_both_passes(repo_copy):
    path = _prod(repo_copy)
    path.write_text(
        path.read_text() + "  custom:\n    pangeo:\n      gateway:\n        groupLimits:\n"
        "          org:power: {clusterMaxWorkers: 100, userMaxWorkers: 200}\n"
    )
    assert not [e for e in _promise_failures(repo_copy) if "userMaxWorkers" in e]
