"""Dask pod isolation on a real Kubernetes API (the loopback control plane).

From the full chart rendered for gcp-us-central1-b/prod (`pangeo-cloud render`;
skipped without the unpacked subcharts), moved into a fresh namespace:

- the API server accepts our Dask NetworkPolicy, the Dask pods the real
  dask-gateway would create (:mod:`pangeo_cloud.testing.dask_pods`: non-root,
  no token, no capabilities), and the gateway's own pods from the rendered
  Deployments;
- the API server's own label selection, with the policy's selectors, picks
  exactly the scheduler and worker pods, and its ingress peers pick traefik,
  the gateway API and the controller;
- our RBAC, asked through ``kubectl auth can-i`` as each ServiceAccount: the
  gateway reads Secrets of its namespace only, traefik lists none elsewhere,
  the controller creates pods and Secrets only at home, while the cluster-wide
  reads the upstream code needs (pods, DaskClusters) still work.

No CNI runs here, so the policy is not enforced on traffic: what is tested is
that Kubernetes takes the objects and that they apply to the right pods.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pangeo_cloud.deploy import helm
from pangeo_cloud.testing.dask_pods import dask_pods

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[3]
DEPLOYMENT, STAGE, RENDERED_NS = "gcp-us-central1-b", "prod", "prod"
ACCOUNTS = ("dask-gateway-api", "dask-gateway-controller", "dask-gateway-traefik")
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    missing = helm.missing_subcharts(REPO / "helm-chart" / "pangeo-cloud")
    if missing:
        pytest.skip(
            f"subcharts {', '.join(missing)} not unpacked in helm-chart/pangeo-cloud/charts/"
        )
    cmd = [sys.executable, "-m", "pangeo_cloud.cli", "--root", str(REPO), "render"]
    result = subprocess.run(
        [*cmd, DEPLOYMENT, STAGE], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return helm.split_manifests(result.stdout)


def _relocate(doc: dict[str, Any], namespace: str, suffix: str) -> dict[str, Any]:
    """The rendered object, for the test namespace (cluster-scoped names made unique)."""
    doc = json.loads(json.dumps(doc))
    doc["metadata"].pop("namespace", None)
    if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
        doc["metadata"]["name"] += suffix
    if doc["kind"] == "ClusterRoleBinding":
        doc["roleRef"]["name"] += suffix
    for subject in doc.get("subjects") or []:
        if subject.get("namespace") == RENDERED_NS:
            subject["namespace"] = namespace
    return doc


def _selector(selector: dict[str, Any]) -> str:
    """A LabelSelector as kubectl's -l string."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] == "In", expr
        parts.append(f"{expr['key']} in ({','.join(expr['values'])})")
    return ",".join(parts)


def _apply(plane, namespace: str, docs: list[dict[str, Any]]) -> None:
    stream = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=stream)


def _pod_names(plane, namespace: str, selector: dict[str, Any]) -> set[str]:
    out = plane.kubectl("get", "pods", "-n", namespace, "-l", _selector(selector), "-o", "json")
    return {p["metadata"]["name"] for p in json.loads(out.stdout)["items"]}


def _pod_from(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }


@pytest.fixture
def isolated(k8s_cluster, namespace, rendered):
    suffix = "-" + uuid.uuid4().hex[:6]
    pods = dask_pods(rendered, namespace=namespace, options={"image": "pangeo/pangeo-notebook:1"})
    assert set(pods) == {"scheduler", "worker"}, pods
    # Our gateway RBAC, and the ServiceAccount the Dask pods run as.
    wanted = {*ACCOUNTS, *(p["spec"]["serviceAccountName"] for p in pods.values())}
    rbac = [
        _relocate(d, namespace, suffix)
        for d in rendered
        if d["kind"] in RBAC_KINDS
        and (d["metadata"]["name"] in wanted or "dask-gateway" in d["metadata"]["name"])
    ]
    policy = next(
        d
        for d in rendered
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "pangeo-cloud-dask-clusters"
    )
    _apply(k8s_cluster, namespace, [*rbac, _relocate(policy, namespace, suffix)])
    created = {}
    for role, pod in pods.items():
        out = k8s_cluster.kubectl(
            "create", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(pod)
        )
        created[role] = json.loads(out.stdout)["metadata"]["name"]
    gateway_pods = {}
    for d in rendered:
        component = d.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        component = component.get("app.kubernetes.io/component")
        if d["kind"] == "Deployment" and component in ("gateway", "controller", "traefik"):
            gateway_pods[component] = f"{component}-standalone"
            pod = _pod_from(d, gateway_pods[component])
            k8s_cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(pod))
    yield {"policy": policy["spec"], "dask": created, "gateway": gateway_pods, "suffix": suffix}
    for d in rbac:
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            k8s_cluster.kubectl("delete", d["kind"], d["metadata"]["name"], check=False)


def test_the_policy_is_accepted_and_selects_exactly_the_dask_pods(k8s_cluster, namespace, isolated):
    live = json.loads(
        k8s_cluster.kubectl(
            "get", "networkpolicy", "pangeo-cloud-dask-clusters", "-n", namespace, "-o", "json"
        ).stdout
    )
    assert live["spec"]["podSelector"] == isolated["policy"]["podSelector"]
    selected = _pod_names(k8s_cluster, namespace, isolated["policy"]["podSelector"])
    assert selected == set(isolated["dask"].values())
    # Each ingress peer selects the gateway pod it is meant for, and no Dask pod
    # is admitted to the gateway's API port.
    by_port = {}
    for rule in isolated["policy"]["ingress"]:
        ports = tuple(sorted(p["port"] for p in rule["ports"]))
        for peer in rule["from"]:
            by_port.setdefault(ports, set()).update(
                _pod_names(k8s_cluster, namespace, peer["podSelector"])
            )
    gateway = isolated["gateway"]
    assert by_port[(8786, 8787)] == {gateway["traefik"]}
    assert by_port[(8788,)] == {gateway["gateway"], gateway["controller"]}
    assert by_port[(8786, 8789, 8790)] == set(isolated["dask"].values())


def test_the_dask_pods_were_accepted_locked_down(k8s_cluster, namespace, isolated):
    for name in isolated["dask"].values():
        pod = json.loads(
            k8s_cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
        )
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        container = spec["containers"][0]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        # No service-account token volume was injected.
        assert not any(v.get("projected") for v in spec.get("volumes", []))


def _can(plane, namespace: str, account: str, *args: str) -> bool:
    out = plane.kubectl(
        "auth", "can-i", *args, f"--as=system:serviceaccount:{namespace}:{account}", check=False
    )
    return out.stdout.strip() == "yes"


def test_gateway_accounts_stay_in_their_namespace(k8s_cluster, namespace, isolated, upstream_dir):
    # RBAC on DaskClusters is checked against the real resource: create the
    # pinned CRD if no earlier test did (never replace one in use).
    crd = upstream_dir / "dask-gateway-2026.3.0" / "crds" / "daskclusters.yaml"
    if k8s_cluster.kubectl("get", "crd", "daskclusters.gateway.dask.org", check=False).returncode:
        k8s_cluster.kubectl("create", "-f", str(crd))
    api, controller, traefik = ACCOUNTS
    elsewhere = "kube-system"
    assert _can(k8s_cluster, namespace, api, "get", "secrets", "-n", namespace)
    assert not _can(k8s_cluster, namespace, api, "get", "secrets", "-n", elsewhere)
    assert not _can(k8s_cluster, namespace, traefik, "list", "secrets", "-n", elsewhere)
    assert not _can(k8s_cluster, namespace, traefik, "get", "secrets", "-n", elsewhere)
    assert _can(k8s_cluster, namespace, traefik, "list", "secrets", "-n", namespace)
    assert _can(k8s_cluster, namespace, controller, "create", "pods", "-n", namespace)
    assert not _can(k8s_cluster, namespace, controller, "create", "pods", "-n", elsewhere)
    assert not _can(k8s_cluster, namespace, controller, "delete", "secrets", "-n", elsewhere)
    # What upstream lists across all namespaces still works (the remaining risk:
    # README, security model).
    assert _can(k8s_cluster, namespace, controller, "list", "pods", "--all-namespaces")
    assert _can(
        k8s_cluster, namespace, api, "list", "daskclusters.gateway.dask.org", "--all-namespaces"
    )
    assert not _can(k8s_cluster, namespace, api, "list", "secrets", "--all-namespaces")
