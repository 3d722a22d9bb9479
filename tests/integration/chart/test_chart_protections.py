"""Least privilege in the rendered chart, for every deployment and stage.

Rendered with the real `helm` through `pangeo-cloud render` (the full chart:
these tests skip, naming what is missing, without the unpacked subcharts):

- the `health-check` service's role is exactly the narrow set, whatever the
  secrets files say (a test that fails if the role widens);
- user pods and their ServiceAccount carry no Kubernetes token;
- the Dask pods the real dask-gateway would create from the rendered
  ConfigMaps (:mod:`pangeo_cloud.testing.dask_pods`: the gateway's options
  handler, then ``KubeController.make_pod``) are non-root, without privilege
  escalation, capabilities or token, and an image outside the allowlist is
  refused with the allowed patterns;
- our Dask NetworkPolicy selects exactly those pods (not the gateway's own),
  admits the gateway's traefik, API server and controller by their rendered
  labels, and keeps the cloud metadata server and private ranges out;
- the dask-gateway ServiceAccounts get no upstream ClusterRole, and no
  cluster-wide rule of theirs reaches Secrets.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pangeo_cloud.config import Paths, load_deployment
from pangeo_cloud.deploy import helm
from pangeo_cloud.testing.dask_pods import dask_pods

REPO = Path(__file__).resolve().parents[3]
STAGES = [
    ("gcp-us-central1-b", "staging"),
    ("gcp-us-central1-b", "prod"),
    ("aws-us-west-2", "staging"),
    ("aws-us-west-2", "prod"),
]
# Written out, not imported: widening the role in code must fail here.
HEALTH_CHECK_SCOPES = [
    "custom:pangeo-cloud:create:service-users",
    "list:users!group=health-check-users",
    "read:users!group=health-check-users",
    "servers!group=health-check-users",
    "delete:users!group=health-check-users",
]
NOTEBOOK_IMAGE = "pangeo/pangeo-notebook:2026.11.18"
METADATA = "169.254.169.254/32"
PRIVATE = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}


def _full_chart_or_skip() -> None:
    missing = helm.missing_subcharts(REPO / "helm-chart" / "pangeo-cloud")
    if missing:
        pytest.skip(
            f"subcharts {', '.join(missing)} not unpacked in helm-chart/pangeo-cloud/charts/: "
            "run `helm dependency build helm-chart/pangeo-cloud` on a machine with network"
        )


_RENDERED: dict[tuple[str, str], list[dict[str, Any]]] = {}


def render(deployment: str, stage: str) -> list[dict[str, Any]]:
    """The stage's manifests (rendered once per test session)."""
    _full_chart_or_skip()
    key = (deployment, stage)
    if key not in _RENDERED:
        cmd = [sys.executable, "-m", "pangeo_cloud.cli", "--root", str(REPO), "render"]
        result = subprocess.run(
            [*cmd, deployment, stage], capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, result.stderr
        _RENDERED[key] = helm.split_manifests(result.stdout)
    return _RENDERED[key]


def namespace_of(deployment: str, stage: str) -> str:
    return load_deployment(deployment, Paths.discover(REPO)).stage(stage).namespace


def named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def hub_values(docs: list[dict]) -> dict:
    secret = named(docs, "Secret", "hub")
    return yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))


def selects(selector: dict, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and In/NotIn/Exists)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
    return True


def pod_template_labels(docs: list[dict], component: str) -> dict:
    """The labels of the dask-gateway subchart's pods of ``component``."""
    for doc in docs:
        labels = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        if (
            doc["kind"] == "Deployment"
            and labels.get("app.kubernetes.io/component") == component
            and labels.get("app.kubernetes.io/name") == "dask-gateway"
        ):
            return labels
    raise AssertionError(f"no dask-gateway Deployment of component {component}")


@pytest.mark.parametrize("deployment,stage", STAGES)
def test_health_check_role_is_exactly_the_narrow_set(deployment, stage):
    roles = hub_values(render(deployment, stage))["hub"]["loadRoles"]
    assert roles["health-check"] == {"services": ["health-check"], "scopes": HEALTH_CHECK_SCOPES}
    # ... and no other role is given to the service.
    others = [n for n, r in roles.items() if "health-check" in (r.get("services") or [])]
    assert others == ["health-check"]


@pytest.mark.parametrize("deployment,stage", STAGES)
def test_user_pods_get_no_kubernetes_token(deployment, stage):
    docs = render(deployment, stage)
    values = hub_values(docs)
    assert values["hub"]["config"]["KubeSpawner"]["automount_service_account_token"] is False
    account = named(docs, "ServiceAccount", values["singleuser"]["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("deployment,stage", STAGES)
def test_dask_pods_are_locked_down(deployment, stage):
    docs = render(deployment, stage)
    pods = dask_pods(
        docs, namespace=namespace_of(deployment, stage), options={"image": NOTEBOOK_IMAGE}
    )
    assert set(pods) == {"scheduler", "worker"}, pods
    for role, pod in pods.items():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, role
        assert spec["securityContext"]["runAsNonRoot"] is True, role
        assert spec["securityContext"]["runAsUser"] == 1000, role
        (container,) = spec["containers"]
        assert container["image"] == NOTEBOOK_IMAGE
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, role
        assert security["capabilities"] == {"drop": ["ALL"]}, role
        assert not security.get("privileged"), role
    worker_args = pods["worker"]["spec"]["containers"][0]["args"]
    assert worker_args[:6] == ["dask", "worker", "--worker-port", "8789", "--nanny-port", "8790"]


@pytest.mark.parametrize("deployment,stage", STAGES)
def test_dask_image_outside_the_allowlist_is_refused(deployment, stage):
    docs = render(deployment, stage)
    refused = dask_pods(
        docs, namespace=namespace_of(deployment, stage), options={"image": "ubuntu:24.04"}
    )
    assert refused == {
        "error": "image 'ubuntu:24.04' is not allowed on this deployment; allowed images: "
        "'pangeo/pangeo-notebook:*', 'pangeo/pangeo-notebook@sha256:*'"
    }


@pytest.mark.parametrize("deployment,stage", STAGES)
def test_dask_network_policy_selects_dask_pods_and_admits_only_the_gateway(deployment, stage):
    docs = render(deployment, stage)
    policy = named(docs, "NetworkPolicy", "pangeo-cloud-dask-clusters")["spec"]
    pods = dask_pods(
        docs, namespace=namespace_of(deployment, stage), options={"image": NOTEBOOK_IMAGE}
    )
    for pod in pods.values():
        assert selects(policy["podSelector"], pod["metadata"]["labels"])
    components = {c: pod_template_labels(docs, c) for c in ("gateway", "controller", "traefik")}
    for labels in components.values():
        assert not selects(policy["podSelector"], labels)
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}

    def admitted(labels: dict) -> set[int]:
        return {
            port["port"]
            for rule in policy["ingress"]
            for peer in rule["from"]
            if selects(peer["podSelector"], labels)
            for port in rule["ports"]
        }

    assert admitted(components["traefik"]) == {8786, 8787}
    assert admitted(components["gateway"]) == {8788}
    assert admitted(components["controller"]) == {8788}
    # Other Dask pods: the TLS scheduler and the fixed worker/nanny ports, no dashboards.
    assert admitted(pods["worker"]["metadata"]["labels"]) == {8786, 8789, 8790}
    hub_pod = named(docs, "Deployment", "hub")["spec"]["template"]["metadata"]["labels"]
    assert admitted(hub_pod) == set()

    blocks = [
        peer["ipBlock"] for rule in policy["egress"] for peer in rule["to"] if "ipBlock" in peer
    ]
    (internet,) = [b for b in blocks if b["cidr"] == "0.0.0.0/0"]
    assert set(internet["except"]) == PRIVATE | {METADATA}
    # Private ranges only for DNS.
    for rule in policy["egress"]:
        if any(peer.get("ipBlock", {}).get("cidr") in PRIVATE for peer in rule["to"]):
            assert {p["port"] for p in rule["ports"]} == {53}


@pytest.mark.parametrize("deployment,stage", STAGES)
def test_gateway_accounts_read_no_secret_outside_their_namespace(deployment, stage):
    docs = render(deployment, stage)
    accounts = {"dask-gateway-api", "dask-gateway-controller", "dask-gateway-traefik"}
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-dask-gateway"):
            assert doc["spec"]["template"]["spec"]["serviceAccountName"] in accounts
    cluster_roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    bound = {
        d["roleRef"]["name"]
        for d in docs
        if d["kind"] == "ClusterRoleBinding"
        and any(s["name"] in accounts for s in d.get("subjects", []))
    }
    assert bound, "no cluster-wide binding at all: the upstream code lists across namespaces"
    for name in bound:
        for rule in cluster_roles[name]["rules"]:
            assert "secrets" not in rule["resources"], name
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, name
    traefik = next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("traefik-")
    )
    args = traefik["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--providers.kubernetescrd.namespaces={namespace_of(deployment, stage)}" in args
