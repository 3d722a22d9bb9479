"""(a) The dashboards kept as code are valid Grafana dashboards of ours.

Each file in helm-chart/support/files/dashboards/ is Grafana dashboard JSON
with a unique uid, a schemaVersion, the templated Prometheus datasource on
every panel and query variable, and queries on every panel; the metrics the
issue asks for are each shown somewhere; the README describes every dashboard.
Whether Prometheus accepts the queries is tested against a real Prometheus in
tests/integration/monitoring/test_dashboard_queries.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from repo_support import REPO_ROOT as REPO

from pangeo_cloud.config import dashboards

DIRECTORY = REPO / "helm-chart" / "support" / "files" / "dashboards"
FILES = dashboards.dashboard_files(DIRECTORY)


def test_there_are_dashboards():
    assert {f.stem for f in FILES} >= {"hub-activity", "spawns", "servers", "dask", "node-pools"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_is_valid(path: Path):
    dashboard = dashboards.load(path)
    assert dashboards.problems(dashboard) == []
    assert dashboards.queries(dashboard), "a dashboard without queries"
    # Provisioned dashboards are edited here, not in the UI.
    assert dashboard["editable"] is False
    assert dashboard.get("id") is None, "an id would clash with Grafana's own numbering"


def test_uids_and_titles_are_unique():
    loaded = [dashboards.load(p) for p in FILES]
    uids = [d["uid"] for d in loaded]
    titles = [d["title"] for d in loaded]
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles


def test_the_issue_metrics_are_each_on_a_dashboard():
    exprs = " ".join(q.expr for p in FILES for q in dashboards.queries(dashboards.load(p)))
    for metric in (
        "jupyterhub_active_users",
        "jupyterhub_running_servers",
        "jupyterhub_server_spawn_duration_seconds_bucket",
        "jupyterhub_server_spawn_duration_seconds_count",
        "pangeo_server_running",
        "pangeo_server_cpu_request",
        "pangeo_server_memory_request_bytes",
        "pangeo_user_group",
        "pangeo_dask_cluster_running",
        "pangeo_dask_workers",
        "pangeo_dask_worker_cores",
        "pangeo_dask_worker_memory_bytes",
        "pangeo_dask_cluster_idle",
        "kube_node_labels",
        "kube_node_status_allocatable",
        "kube_pod_container_resource_requests",
        "node_cpu_seconds_total",
    ):
        assert metric in exprs, metric
    # Node pools by the cloud's own labels (GKE, EKS), as kube-state-metrics exports them.
    assert "label_cloud_google_com_gke_nodepool" in exprs
    assert "label_eks_amazonaws_com_nodegroup" in exprs


def test_problems_are_found():
    """The checks above can fail: a broken copy of a real dashboard is refused."""
    dashboard = dashboards.load(DIRECTORY / "servers.json")
    broken = json.loads(json.dumps(dashboard))
    broken["schemaVersion"] = None
    panel = broken["panels"][0]
    panel["datasource"] = {"type": "prometheus", "uid": "some-fixed-uid"}
    broken["panels"][1]["targets"] = []
    broken["panels"][2]["targets"][0]["expr"] = 'sum(up{job=~"$nosuchvariable"})'
    found = "\n".join(dashboards.problems(broken))
    assert "schemaVersion None" in found
    assert "some-fixed-uid" in found
    assert "no targets" in found
    assert "$nosuchvariable" in found


def test_substitution_leaves_promql_captures_alone():
    expr = 'label_replace(x{stage=~"$stage"}[$__rate_interval], "p", "$1", "l", "(.+)")'
    out = dashboards.substitute(expr, {"stage": "prod"})
    assert out == 'label_replace(x{stage=~"prod"}[2m], "p", "$1", "l", "(.+)")'
    with pytest.raises(KeyError, match=r"\$user"):
        dashboards.substitute('x{user=~"$user"}', {})


def test_configmap_template_ships_every_dashboard_file():
    template = REPO / "helm-chart" / "support" / "templates" / "dashboards-configmap.yaml"
    assert '.Files.Glob "files/dashboards/*.json"' in template.read_text()


def test_readme_describes_every_dashboard():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Monitoring", 1)[1].split("\n## ", 1)[0]
    for path in FILES:
        title = dashboards.load(path)["title"]
        assert f"**{title}**" in section, f"README's Monitoring section lacks {title!r}"
