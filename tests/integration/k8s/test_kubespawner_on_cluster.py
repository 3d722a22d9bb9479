"""The real KubeSpawner, configured from a cloud deployment's values, on the loopback cluster.

The hub's configuration is built exactly as the unit tests of tests/unit/hub
build it: z2jh's mapping of the merged values of gcp-us-central1-b/prod
(pangeo_cloud.hub.z2jh_values), then our own ``configure()``. KubeSpawner 7
then talks to the real kube-apiserver with its real kubernetes_asyncio client
and reflectors: ``start()`` creates the user's PVC and pod and returns once the
pod is Running with ready containers (which kwok reports, with a pod IP from
its CIDR); ``stop()`` deletes the pod and waits until the reflector sees it go.

``start()`` does not contact the server over HTTP (JupyterHub does that after
``start()`` returns, and no notebook process runs behind a kwok pod), so the
test ends at "pod Running with the right spec, URL from its IP".

The spawner runs in its own process (kubespawner_run.py): KubeSpawner and
kubernetes_asyncio keep process-wide state (kubeconfig path read at import,
cached client configuration, class-level reflectors) that must not leak
between this test and the offline KubeSpawner tests of tests/unit/hub.

What the cluster provides, as the cloud would:

* a node labelled like the deployment's user node pool (from its
  ``nodePools``, with that pool's allocatable size). The node is tainted for
  this test only, so that other tests' pods never land on it (it is deleted at
  the end); the spawner gets the matching toleration, the one addition to the
  deployment's pod spec;
* the StorageClass the values name (``standard-rwo``; no provisioner on
  loopback, so Immediate binding) and a 10Gi PersistentVolume pre-bound to the
  claim KubeSpawner will create, bound by kube-controller-manager's
  persistent-volume controller like a provisioned disk;
* the ``pangeo`` ServiceAccount that the umbrella chart creates
  (``userServiceAccount.create``) and user pods run as.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from k8s_support import get_json, wait_for
from repo_support import REPO_ROOT

from pangeo_cloud.config import merged_values
from pangeo_cloud.scratch import escape_username
from pangeo_cloud.testing.k8s import ControlPlane, NodeSpec
from pangeo_cloud.toolcache import tools_dir

DEPLOYMENT, STAGE = "gcp-us-central1-b", "prod"
USER = "Jane.Doe"  # not a valid object name as is: KubeSpawner must escape it
PROFILE = "small"
START_TIMEOUT = 180  # KubeSpawner's own start_timeout (kubespawner_run.py)
UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.timeout(600)]


def to_bytes(spec: str | int) -> int:
    """KubeSpawner's byte units (G = 1024**3), as in tests/unit/hub."""
    if isinstance(spec, int):
        return spec
    return int(float(spec[:-1]) * UNITS[spec[-1]])


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def user_pool() -> dict[str, Any]:
    """The deployment's node pool for user servers (deployment.yaml nodePools)."""
    data = yaml.safe_load((REPO_ROOT / "deployments" / DEPLOYMENT / "deployment.yaml").read_text())
    pools = [p for p in data.get("nodePools", []) if p["name"] == "user"]
    assert pools, f"{DEPLOYMENT} has no `user` node pool"
    return pools[0]


@pytest.fixture
def hub_values() -> dict[str, Any]:
    return merged_values(DEPLOYMENT, STAGE)["jupyterhub"]


@pytest.fixture
def user_node(k8s_cluster: ControlPlane, namespace: str, hub_values: dict[str, Any]):
    """A kwok node of the user pool, tainted for this test; yields the toleration."""
    pool = user_pool()
    labels = dict(pool.get("labels") or {})
    assert labels.items() >= hub_values["singleuser"]["nodeSelector"].items()
    spec = NodeSpec(
        f"kwok-user-{namespace}",
        zone="zone-a",
        cpu=str(pool["cpu"]),
        memory=str(pool["memory"]),
        labels=labels,
    )
    node = spec.manifest()
    taint = {"key": "pangeo-cloud.test/dedicated", "value": namespace, "effect": "NoSchedule"}
    node["spec"] = {"taints": [taint]}
    k8s_cluster.kubectl("create", "-f", "-", input=json.dumps(node))
    try:
        wait_for(
            f"node {spec.name} Ready",
            lambda: any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in get_json(k8s_cluster, "node", spec.name)["status"].get("conditions", [])
            ),
            timeout=60,
        )
        yield SimpleNamespace(name=spec.name, toleration={**taint, "operator": "Equal"})
    finally:
        k8s_cluster.kubectl("delete", "node", spec.name, "--wait=false", check=False)


@pytest.fixture
def storage_class(k8s_cluster: ControlPlane, hub_values: dict[str, Any]):
    """The StorageClass the values name (created unless the cluster has it)."""
    name = hub_values["singleuser"]["storage"]["dynamic"]["storageClass"]
    created = False
    if k8s_cluster.kubectl("get", "storageclass", name, check=False).returncode != 0:
        sc = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "Immediate",
        }
        result = k8s_cluster.kubectl("create", "-f", "-", input=json.dumps(sc), check=False)
        created = result.returncode == 0
        assert created or "AlreadyExists" in result.stderr, result.stderr
    try:
        yield name
    finally:
        if created:
            k8s_cluster.kubectl("delete", "storageclass", name, "--wait=false", check=False)


def run_spawner(
    plane: ControlPlane, namespace: str, toleration: dict[str, str], volume: str
) -> dict[str, Any]:
    """kubespawner_run.py in a subprocess; its JSON report (see its docstring)."""
    result = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("kubespawner_run.py")),
            "--kubeconfig",
            str(plane.kubeconfig),
            "--kubectl",
            str(tools_dir() / "kubectl"),
            "--namespace",
            namespace,
            "--deployment",
            DEPLOYMENT,
            "--stage",
            STAGE,
            "--user",
            USER,
            "--profile",
            PROFILE,
            "--toleration",
            json.dumps(toleration),
            "--volume-name",
            volume,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=2 * START_TIMEOUT + 120,
        check=False,
    )
    assert result.returncode == 0, f"spawner run failed:\n{result.stderr[-6000:]}"
    return json.loads(result.stdout)


def test_start_creates_home_and_pod_from_the_profile_stop_keeps_home(
    k8s_cluster: ControlPlane,
    namespace: str,
    hub_values: dict[str, Any],
    user_node: SimpleNamespace,
    storage_class: str,
) -> None:
    singleuser = hub_values["singleuser"]
    profile = next(p for p in singleuser["profileList"] if p["slug"] == PROFILE)
    override = profile["kubespawner_override"]
    account = singleuser["serviceAccountName"]
    k8s_cluster.kubectl("-n", namespace, "create", "serviceaccount", account)
    volume = f"home-{namespace}"
    try:
        report = run_spawner(k8s_cluster, namespace, user_node.toleration, volume)
    finally:
        k8s_cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)
    print(f"\nKubeSpawner on loopback: {report['timings']}")
    pod, pvc, pvc_name = report["pod"], report["pvc"], report["pvc_name"]
    assert pvc_name.startswith("claim-") and "." not in pvc_name, pvc_name

    # The pod runs (kwok) on the user pool's node, and the URL is its IP.
    assert pod["status"]["phase"] == "Running"
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    assert report["url"] == f"http://{pod['status']['podIP']}:{report['port']}"
    assert pod["spec"]["nodeName"] == user_node.name
    assert pod["spec"]["nodeSelector"] == singleuser["nodeSelector"]
    assert pod["spec"]["serviceAccountName"] == account

    # The profile's resources, as the API server stored them.
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"{singleuser['image']['name']}:{singleuser['image']['tag']}"
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert cpu(requests["cpu"]) == override["cpu_guarantee"]
    assert cpu(limits["cpu"]) == override["cpu_limit"]
    assert int(requests["memory"]) == to_bytes(override["mem_guarantee"])
    assert int(limits["memory"]) == to_bytes(override["mem_limit"])

    # Scratch and the Dask Gateway wiring.
    env = {e["name"]: e.get("value") for e in container["env"]}
    scratch = hub_values["custom"]["pangeo"]["scratch"]
    assert env["PANGEO_SCRATCH"] == f"gs://pangeo-scratch/{escape_username(USER)}/"
    assert env["PANGEO_SCRATCH"].startswith(scratch["url"].rstrip("/") + "/")
    assert env["GOOGLE_CLOUD_PROJECT"] == scratch["project"]
    extra_env = singleuser["extraEnv"]
    gateway = {k: v for k, v in extra_env.items() if k.startswith("DASK_GATEWAY__")}
    assert {"DASK_GATEWAY__ADDRESS", "DASK_GATEWAY__PROXY_ADDRESS"} <= gateway.keys()
    for key, value in gateway.items():
        # KubeSpawner formats values: "{{X}}" reaches the pod as "{X}".
        assert env[key] == value.replace("{{", "{").replace("}}", "}"), key
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://traefik-prod-dask-gateway.prod:80"
    assert env["JUPYTERHUB_USER"] == USER

    # Home: the user's 10Gi claim of the values' class, bound, mounted.
    assert pvc["spec"]["storageClassName"] == storage_class == "standard-rwo"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"] == volume
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert claims[mounts[singleuser["storage"]["homeMountPath"]]] == pvc_name

    # Stop: the pod is gone, the home stays (same claim, still bound).
    assert report["pod_after_stop"] is None
    kept = report["pvc_after_stop"]
    assert kept is not None and kept["metadata"]["uid"] == pvc["metadata"]["uid"]
    assert kept["status"]["phase"] == "Bound"
    still = get_json(k8s_cluster, "-n", namespace, f"pvc/{pvc_name}")
    assert still["metadata"]["uid"] == pvc["metadata"]["uid"]
