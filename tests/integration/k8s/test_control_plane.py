"""The loopback control plane is a real Kubernetes: controllers, scheduler, kwok nodes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from repo_support import REPO_ROOT

from pangeo_cloud.testing.k8s import ControlPlane


def upstream_dir() -> Path:
    """The shared upstream sources: $PANGEO_UPSTREAM_DIR or ../shared/upstream."""
    env = os.environ.get("PANGEO_UPSTREAM_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "upstream"


pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.timeout(300)]


def get_json(plane: ControlPlane, *args: str) -> dict:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def pinned_kubernetes_version() -> str:
    gomod = (REPO_ROOT / "scripts" / "k8s-tools" / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", gomod, re.MULTILINE)
    assert match, "k8s.io/kubernetes not pinned in scripts/k8s-tools/go.mod"
    return match.group(1)


def test_server_is_the_pinned_kubernetes(k8s_cluster: ControlPlane) -> None:
    version = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == pinned_kubernetes_version()
    assert k8s_cluster.server.startswith("https://127.0.0.1:")


def test_kwok_nodes_are_ready_in_two_zones(k8s_cluster: ControlPlane) -> None:
    nodes = get_json(k8s_cluster, "nodes")["items"]
    zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
    assert zones >= {"zone-a", "zone-b"}
    for node in nodes:
        assert node["status"]["allocatable"]["cpu"] == "16"
        assert node["status"]["allocatable"]["memory"] == "64Gi"
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]


def test_deployment_becomes_available(k8s_cluster: ControlPlane, namespace: str) -> None:
    k8s_cluster.kubectl(
        "-n", namespace, "create", "deployment", "web",
        "--image=registry.invalid/web:1", "--replicas=2",
    )  # fmt: skip
    k8s_cluster.kubectl(
        "-n", namespace, "wait", "deployment/web",
        "--for=condition=Available", "--timeout=120s", timeout=150,
    )  # fmt: skip
    deployment = get_json(k8s_cluster, "-n", namespace, "deployment/web")
    assert deployment["status"]["readyReplicas"] == 2
    pods = get_json(k8s_cluster, "-n", namespace, "pods", "-l", "app=web")["items"]
    assert len(pods) == 2
    node_names = {n.name for n in k8s_cluster.nodes}
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] in node_names  # placed by kube-scheduler


def test_pvc_binds_to_a_matching_pv(k8s_cluster: ControlPlane, namespace: str) -> None:
    pv_name = f"pv-{namespace}"
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv_name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "manual",
                    "hostPath": {"path": f"/tmp/{pv_name}"},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "home", "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "manual",
                    "volumeName": pv_name,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ],
    }
    k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    try:
        # Bound by the persistent-volume controller of kube-controller-manager.
        k8s_cluster.kubectl(
            "-n", namespace, "wait", "pvc/home",
            "--for=jsonpath={.status.phase}=Bound", "--timeout=120s", timeout=150,
        )  # fmt: skip
        pv = get_json(k8s_cluster, "pv", pv_name)
        assert pv["spec"]["claimRef"]["namespace"] == namespace
    finally:
        k8s_cluster.kubectl("delete", "pv", pv_name, "--wait=false", check=False)


def test_dask_gateway_crd_applies_and_serves(k8s_cluster: ControlPlane, namespace: str) -> None:
    crd: Path = upstream_dir() / "dask-gateway-2026.3.0" / "crds" / "daskclusters.yaml"
    if not crd.exists():
        pytest.skip(f"{crd} not found (set PANGEO_UPSTREAM_DIR to the shared upstream dir)")
    k8s_cluster.kubectl("apply", "--server-side", "-f", str(crd))
    k8s_cluster.kubectl(
        "wait", "crd/daskclusters.gateway.dask.org",
        "--for=condition=Established", "--timeout=60s", timeout=90,
    )  # fmt: skip
    cluster = {
        "apiVersion": "gateway.dask.org/v1alpha1",
        "kind": "DaskCluster",
        "metadata": {"name": "demo", "namespace": namespace},
        "spec": {"scheduler": {}, "worker": {"replicas": 0}},
    }
    k8s_cluster.kubectl("apply", "-f", "-", input=json.dumps(cluster))
    got = get_json(k8s_cluster, "-n", namespace, "daskclusters.gateway.dask.org/demo")
    assert got["spec"]["worker"]["replicas"] == 0
