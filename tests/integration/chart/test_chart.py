"""The umbrella chart with the real `helm`: lint, render, manifests, hub code.

Without network the upstream subcharts are absent; these tests then exercise
our own templates (as `validate` and `render` do) and the full-chart tests skip
saying so. After `helm dependency build` they run against the real subcharts.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from repo_support import REPO_ROOT

from pangeo_cloud.config.manifests import load_crds, validate_manifests
from pangeo_cloud.deploy import helm

REPO = REPO_ROOT


def run_cli(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pangeo_cloud.cli"]
    if root is not None:
        cmd += ["--root", str(root)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def rendered(helm_bin, upstream_dir) -> str:
    result = run_cli("render", "gcp-us-central1-b", "prod", root=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_render_is_deterministic(rendered):
    again = run_cli("render", "gcp-us-central1-b", "prod", root=REPO)
    assert again.stdout == rendered


def test_hub_code_configmap_ships_exactly_the_source(rendered):
    docs = helm.split_manifests(rendered)
    cm = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pangeo-cloud-hub-code"
    )
    src = REPO / "src" / "pangeo_cloud"
    expected = {
        "pangeo_cloud.__init__.py": src / "__init__.py",
        "pangeo_cloud.bundle.py": src / "bundle.py",
        "pangeo_cloud.scratch.py": src / "scratch.py",
    }
    for file in sorted((src / "hub").glob("*.py")):
        expected[f"pangeo_cloud.hub.{file.name}"] = file
    for key, file in expected.items():
        assert cm["data"][key] == file.read_text().rstrip("\n"), key
    assert set(cm["data"]) - set(expected) == {"z2jh_entry.py"}


def test_shipped_modules_import_from_the_configmap_alone(rendered, tmp_path):
    # What the hub pod does: flat files in a directory, loaded by the bundle finder.
    cm = next(
        d
        for d in helm.split_manifests(rendered)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pangeo-cloud-hub-code"
    )
    for key, text in cm["data"].items():
        (tmp_path / key).write_text(text)
    bundle_file = str(tmp_path / "pangeo_cloud.bundle.py")
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('b', {bundle_file!r})\n"
        "b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)\n"
        f"b.install(b.read_directory({str(tmp_path)!r}))\n"
        "import pangeo_cloud.scratch as s\n"
        "print(s.__file__, s.scratch_url({'url': 'gs://b'}, 'Ann'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.split() == ["<pangeo-cloud-bundle>/pangeo_cloud/scratch.py", "gs://b/-41nn/"]


def _named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_user_pods_have_no_cloud_identity_the_broker_has(rendered):
    gcp = helm.split_manifests(rendered)
    assert "annotations" not in _named(gcp, "ServiceAccount", "pangeo")["metadata"]
    broker = _named(gcp, "ServiceAccount", "scratch-credentials")["metadata"]["annotations"]
    assert broker["iam.gke.io/gcp-service-account"].endswith("iam.gserviceaccount.com")
    aws = helm.split_manifests(run_cli("render", "aws-us-west-2", "staging", root=REPO).stdout)
    assert "annotations" not in _named(aws, "ServiceAccount", "pangeo")["metadata"]
    broker = _named(aws, "ServiceAccount", "scratch-credentials")["metadata"]["annotations"]
    assert broker["eks.amazonaws.com/role-arn"].endswith(":role/pangeo-scratch-broker")


def test_render_values_and_layers(helm_bin):
    values = yaml.safe_load(run_cli("render", "local", "dev", "--values", root=REPO).stdout)
    assert values["jupyterhub"]["custom"]["pangeo"]["scratch"]["url"] == "s3://pangeo-scratch"
    layers = run_cli("render", "aws-us-west-2", "prod", "--layers", root=REPO).stdout.splitlines()
    assert layers[0].startswith("1. chart defaults: helm-chart/pangeo-cloud/values.yaml")
    assert "deployments/aws-us-west-2/values/prod.yaml" in layers[3]


def test_render_unknown_stage_is_one_clear_line(helm_bin):
    result = run_cli("render", "gcp-us-central1-b", "qa", root=REPO)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown stage 'qa'" in lines[0] and "staging, prod" in lines[0]


def test_validate_cli_json_and_exit_codes(helm_bin, upstream_dir, repo_copy):
    ok = run_cli("validate", "--format", "json", "gcp-us-central1-b/prod", root=REPO)
    report = json.loads(ok.stdout)
    assert ok.returncode == 0, ok.stdout
    assert report["ok"] is True
    assert {r["check"] for r in report["results"]} == {
        "deployment",
        "values",
        "schemas",
        "promises",
        "protections",
        "traits",
        "helm-lint",
        "manifests",
    }
    # break one promise in a copy: exit 1, the failure names file and key
    prod = repo_copy.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"
    prod.write_text(prod.read_text() + "  cull:\n    timeout: 86400\n")
    bad = run_cli("validate", "gcp-us-central1-b/prod", root=repo_copy.root)
    assert bad.returncode == 1
    assert "FAIL gcp-us-central1-b/prod" in bad.stdout
    assert "prod.yaml:" in bad.stdout and "jupyterhub.cull.timeout" in bad.stdout
    assert "1 failed: gcp-us-central1-b/prod" in bad.stdout


def test_helm_lint_strict_catches_template_errors(helm_bin, repo_copy, upstream_dir):
    tpl = repo_copy.chart / "templates" / "user-serviceaccount.yaml"
    tpl.write_text(tpl.read_text().replace("{{- end }}\n", "", 1))
    result = run_cli("validate", "aws-us-west-2/prod", root=repo_copy.root)
    assert result.returncode == 1
    assert "FAIL aws-us-west-2/prod" in result.stdout and "helm-lint" in result.stdout


def test_manifest_validation_catches_api_errors():
    bad_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two"},
    }
    errors = validate_manifests([bad_deployment], "1.33", {})
    assert errors and "Deployment/x" in str(errors[0])
    removed = {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "y"}}
    assert "no schema" in str(validate_manifests([removed], "1.33", {})[0])


def test_custom_resources_are_checked_against_their_crds(upstream_dir):
    crds = load_crds(sorted(upstream_dir.glob("dask-gateway-*/crds/*.yaml")))
    assert ("gateway.dask.org", "v1alpha1", "DaskCluster") in crds
    route = next(key for key in crds if key[2] == "IngressRoute")
    good = {
        "apiVersion": f"{route[0]}/{route[1]}",
        "kind": "IngressRoute",
        "metadata": {"name": "r"},
        "spec": {"routes": [{"match": "PathPrefix(`/`)", "kind": "Rule"}]},
    }
    bad = {**good, "spec": {"routes": "not-a-list"}}
    assert validate_manifests([good], "1.33", dict(crds)) == []
    errors = validate_manifests([bad], "1.33", dict(crds))
    assert errors and "IngressRoute/r" in str(errors[0]) and "routes" in str(errors[0])


def test_chart_lock_matches_chart_yaml(helm_bin, tmp_path):
    spec = importlib.util.spec_from_file_location("lock", REPO / "scripts" / "update-chart-lock.py")
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    chart = REPO / "helm-chart" / "pangeo-cloud"
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    recorded = yaml.safe_load((chart / "Chart.lock").read_text())
    assert [(d["name"], d["version"]) for d in recorded["dependencies"]] == [
        (d["name"], str(d["version"])) for d in meta["dependencies"]
    ]
    # helm itself accepts the lock: it gets past the sync check to the download,
    # which fails here only for want of network.
    copy = tmp_path / "chart"
    subprocess.run(["cp", "-rL", str(chart), str(copy)], check=True)
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
            "dask-gateway-2026.3.0.tgz",
            "jupyterhub-4.4.0.tgz",
        ]


def _full_chart_or_skip() -> None:
    missing = helm.missing_subcharts(REPO / "helm-chart" / "pangeo-cloud")
    if missing:
        pytest.skip(
            f"subcharts {', '.join(missing)} not downloaded: run `helm dependency build "
            "helm-chart/pangeo-cloud` on a machine with network"
        )


def test_full_chart_wires_hub_code_and_gateway(rendered):
    _full_chart_or_skip()
    docs = helm.split_manifests(rendered)
    hub = _named(docs, "Deployment", "hub")
    volumes = {v["name"]: v for v in hub["spec"]["template"]["spec"]["volumes"]}
    assert volumes["pangeo-cloud-hub-code"]["configMap"]["name"] == "pangeo-cloud-hub-code"
    mounts = {
        m["mountPath"]: m for m in hub["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    entry = mounts["/usr/local/etc/jupyterhub/jupyterhub_config.d/50-pangeo-cloud.py"]
    assert entry["subPath"] == "z2jh_entry.py"
    config = _named(docs, "ConfigMap", "api-prod-dask-gateway")["data"]["dask_gateway_config.py"]
    assert "from pangeo_cloud.gateway.config import configure" in config
    user_policy = _named(docs, "NetworkPolicy", "singleuser")
    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        == "traefik"
        for rule in user_policy["spec"]["egress"]
        for peer in rule.get("to", [])
    )


def _hub_values(docs: list[dict]) -> dict:
    import base64

    secret = _named(docs, "Secret", "hub")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def _selects(service: dict, pod_labels: dict) -> bool:
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize(
    "deployment,stage",
    [
        ("gcp-us-central1-b", "staging"),
        ("gcp-us-central1-b", "prod"),
        ("aws-us-west-2", "staging"),
        ("aws-us-west-2", "prod"),
    ],
)
def test_gateway_address_of_user_servers_leads_to_the_hub_proxy(deployment, stage, helm_bin):
    """DASK_GATEWAY__ADDRESS names a Service that reaches CHP over plain HTTP.

    On GCP (autohttps) `proxy-public` selects traefik, which redirects HTTP to
    HTTPS with a certificate for the public host only; the address must then be
    `proxy-http`. Followed through the rendered objects: Service -> selected pod
    -> container port, and both NetworkPolicies on the way.
    """
    _full_chart_or_skip()
    from urllib.parse import urlsplit

    result = run_cli("render", deployment, stage, root=REPO)
    assert result.returncode == 0, result.stderr
    docs = helm.split_manifests(result.stdout)
    address = _hub_values(docs)["singleuser"]["extraEnv"]["DASK_GATEWAY__ADDRESS"]
    url = urlsplit(address)
    assert url.scheme == "http" and url.path == "/services/dask-gateway", address
    service = _named(docs, "Service", url.hostname)
    proxy_pod = _named(docs, "Deployment", "proxy")["spec"]["template"]
    assert _selects(service, proxy_pod["metadata"]["labels"]), (
        f"{url.hostname} does not select the configurable-http-proxy pod"
    )
    port = next(p for p in service["spec"]["ports"] if p["port"] == (url.port or 80))
    container_ports = {
        p["name"]: p["containerPort"] for p in proxy_pod["spec"]["containers"][0]["ports"]
    }
    target = port["targetPort"]
    assert container_ports.get(target, target) == 8000, "not CHP's HTTP port"
    # The user pods' egress policy allows the proxy pod's HTTP port ...
    user_policy = _named(docs, "NetworkPolicy", "singleuser")
    assert any(
        _selects(
            {"spec": {"selector": peer["podSelector"]["matchLabels"]}},
            proxy_pod["metadata"]["labels"],
        )
        and any(p.get("port") == 8000 for p in rule.get("ports", []))
        for rule in user_policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if "podSelector" in peer
    )
    # ... and the proxy's ingress policy accepts it from any pod on that port.
    proxy_policy = _named(docs, "NetworkPolicy", "proxy")
    assert any(
        "from" not in rule and {"port": "http"} in rule.get("ports", [])
        for rule in proxy_policy["spec"]["ingress"]
    )
    public = _named(docs, "Service", "proxy-public")
    if deployment.startswith("gcp"):
        # Why proxy-public is wrong there: it selects traefik, which redirects.
        autohttps = _named(docs, "Deployment", "autohttps")["spec"]["template"]
        assert _selects(public, autohttps["metadata"]["labels"])
        dynamic = _named(docs, "ConfigMap", "autohttps")["data"]["dynamic.yaml"]
        assert "redirect" in dynamic and "sniStrict: true" in dynamic
        assert url.hostname == "proxy-http"
    else:
        assert url.hostname == "proxy-public"
