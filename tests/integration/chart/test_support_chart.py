"""(c) The support release renders with the real `helm` and validates offline.

`pangeo-cloud validate DEPLOYMENT/support` and `pangeo-cloud render DEPLOYMENT
support` run the same machinery as for the stages. Without network the
prometheus and grafana charts are absent: the chart's own templates (the
dashboards ConfigMap, the token Secrets) are rendered and checked, and the
full-chart tests skip saying so. With `helm dependency build helm-chart/support`
(or the charts unpacked into helm-chart/support/charts/) they render the whole
release and check what the subcharts make of our values.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from repo_support import REPO_ROOT as REPO

from pangeo_cloud.deploy import helm

CHART = REPO / "helm-chart" / "support"
DEPLOYMENTS = ["gcp-us-central1-b", "aws-us-west-2"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pangeo_cloud.cli", "--root", str(REPO), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def rendered(request, helm_bin, support_upstream_dir) -> tuple[str, list[dict]]:
    result = run_cli("render", request.param, "support")
    assert result.returncode == 0, result.stderr
    return request.param, helm.split_manifests(result.stdout)


def _object(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {[d['metadata']['name'] for d in docs]}"
    return found[0]


def test_dashboards_configmap_ships_every_dashboard_file(rendered):
    _, docs = rendered
    data = _object(docs, "ConfigMap", "support-dashboards")["data"]
    files = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert sorted(data) == [f.name for f in files]
    for file in files:
        assert json.loads(data[file.name]) == json.loads(file.read_text())


def test_token_secrets_hold_one_token_per_stage(rendered):
    _, docs = rendered
    tokens = _object(docs, "Secret", "support-hub-tokens")
    assert sorted(tokens["data"]) == ["prod", "staging"]
    assert sorted(_object(docs, "Secret", "support-grafana-oauth")["data"]) == ["client-secret"]


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_validate_passes_every_support_check(name, helm_bin, support_upstream_dir):
    result = run_cli("validate", f"{name}/support", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {r["check"]: r for r in json.loads(result.stdout)["results"]}
    assert set(checks) == {"values", "schemas", "hub-login", "helm-lint", "manifests"}
    assert all(r["ok"] for r in checks.values())
    assert "prometheus 29.27.0 (schema)" in checks["schemas"]["note"]
    assert "grafana 12.11.1 (default keys)" in checks["schemas"]["note"]


def test_validate_names_a_missing_support_release(helm_bin):
    result = run_cli("validate", "local/support")
    assert result.returncode == 1
    assert "has no support release" in result.stdout + result.stderr


def test_render_layers_lists_the_generated_wiring():
    result = run_cli("render", "gcp-us-central1-b", "support", "--layers")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1. support chart defaults: helm-chart/support/values.yaml"
    assert lines[1].startswith("2. generated: support wiring")
    assert lines[-1].endswith("deployments/gcp-us-central1-b/secrets/support.enc.yaml")


def test_render_values_masks_the_tokens():
    result = run_cli("render", "gcp-us-central1-b", "support", "--values")
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load(result.stdout)
    assert values["pangeo"]["hubs"]["prod"]["prometheusToken"] == "<sops-encrypted>"
    assert values["pangeo"]["grafana"]["clientSecret"] == "<sops-encrypted>"


# --- with the real subcharts --------------------------------------------------------

FULL = not helm.missing_subcharts(CHART)
needs_subcharts = pytest.mark.skipif(
    not FULL,
    reason="prometheus 29.27.0 and grafana 12.11.1 are not in helm-chart/support/charts/ "
    "(run `helm dependency build helm-chart/support` with network)",
)


@needs_subcharts
def test_full_release_wires_prometheus_and_grafana(rendered):
    _, docs = rendered
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "support-grafana") in kinds
    assert not [k for k in kinds if "alertmanager" in k[1] or "pushgateway" in k[1]]
    assert any(k == "DaemonSet" and "node-exporter" in n for k, n in kinds)
    assert any(k == "Deployment" and "kube-state-metrics" in n for k, n in kinds)
    config = next(
        d for d in docs if d["kind"] == "ConfigMap" and "prometheus.yml" in (d.get("data") or {})
    )
    prometheus_yml = yaml.safe_load(config["data"]["prometheus.yml"])
    jobs = {j["job_name"]: j for j in prometheus_yml["scrape_configs"]}
    assert jobs["jupyterhub-prod"]["authorization"]["credentials_file"] == (
        "/etc/prometheus/hub-tokens/prod"
    )
    grafana = _object(docs, "Deployment", "support-grafana")
    env = {
        e["name"]: e
        for c in grafana["spec"]["template"]["spec"]["containers"]
        for e in c.get("env") or []
    }
    secret = env["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "support-grafana-oauth", "key": "client-secret"}


def test_support_chart_lock_matches_chart_yaml(helm_bin, tmp_path):
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    recorded = yaml.safe_load((CHART / "Chart.lock").read_text())
    assert [(d["name"], d["version"]) for d in recorded["dependencies"]] == [
        ("prometheus", "29.27.0"),
        ("grafana", "12.11.1"),
    ]
    assert [(d["name"], str(d["version"])) for d in meta["dependencies"]] == [
        (d["name"], d["version"]) for d in recorded["dependencies"]
    ]
    # helm accepts the lock (digest included): it gets past the sync check to the
    # download, which fails here only for want of network.
    copy = tmp_path / "support"
    subprocess.run(["cp", "-rL", str(CHART), str(copy)], check=True)
    result = subprocess.run(
        [helm_bin, "dependency", "build", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "out of sync" not in result.stderr
    if result.returncode == 0:
        assert sorted(p.name for p in (copy / "charts").iterdir()) == [
            "grafana-12.11.1.tgz",
            "prometheus-29.27.0.tgz",
        ]
