"""The production hub of one deployment stage, run from its rendered manifests on loopback.

(A uniquely named module, not conftest: test directories have no __init__.py.)

:func:`production_hub` renders the full chart (real z2jh and dask-gateway
subcharts) through the project's own path (``values_layers`` + ``helm.render``,
what ``pangeo-cloud render`` runs), with one test-only values layer in place of
the sops secrets nobody can decrypt here: the GitHub stand-in's OAuth client,
``github_url`` and a callback on the load balancer stand-in, and the
health-check service token (the same keys ``secrets/<stage>.enc.yaml`` holds),
plus a test-only admin service for the tests' own assertions (the health-check
service reaches only its own throw-away users).
It applies the manifests to the loopback control plane and runs, with the
kubelet stand-in, every pod whose image has a local equivalent: the hub
(z2jh's own jupyterhub_config.py and z2jh.py from ConfigMap ``hub``,
values.yaml from Secret ``hub``, our hub-code ConfigMap), the proxy (the real
configurable-http-proxy with the Deployment's command line), the user
scheduler (the real kube-scheduler with z2jh's config) and user servers
(``jupyterhub-singleuser``). Everything else stays simulated by kwok.

Images and what runs for them on this machine:

* ``quay.io/jupyterhub/k8s-hub`` -> the test virtualenv's ``jupyterhub``
  (same JupyterHub, KubeSpawner and OAuthenticator versions as the image),
  with the virtualenv's editable install of pangeo_cloud hidden, because the
  image does not contain our package (the hub must load it from the ConfigMap);
* ``quay.io/jupyterhub/configurable-http-proxy`` -> the npm package;
* ``registry.k8s.io/kube-scheduler`` -> the plane's kube-scheduler binary;
* ``ghcr.io/dask/dask-gateway-server`` (the gateway's api and controller) ->
  the virtualenv's ``dask-gateway-server``, our package hidden as for the hub;
* ``docker.io/traefik`` -> :mod:`pangeo_cloud.testing.traefik`, the stand-in
  for traefik's Kubernetes CRD provider, with the Deployment's flags;
* the notebook image -> the virtualenv's ``jupyterhub-singleuser`` (user
  servers) and ``dask`` (the Dask schedulers and workers the controller starts).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from repo_support import REPO_ROOT

from pangeo_cloud.config import Paths, load_deployment
from pangeo_cloud.config.layering import Layer, merge, merge_all, values_layers
from pangeo_cloud.deploy.helm import missing_subcharts, render, split_manifests
from pangeo_cloud.ports import free_ports
from pangeo_cloud.testing import traefik as traefik_standin
from pangeo_cloud.testing.cloud import AwsIrsaStandIn, GkeWorkloadIdentityStandIn
from pangeo_cloud.testing.github import GitHubStandIn
from pangeo_cloud.testing.k8s import ControlPlane, NodeSpec
from pangeo_cloud.testing.kubelet import ImageStandIn, KubeletStandIn, forward
from pangeo_cloud.toolcache import node_dir, tools_dir

REPO = REPO_ROOT
CHART = REPO / "helm-chart" / "pangeo-cloud"
HEALTH_SERVICE = "health-check"
ADMIN_SERVICE = "pangeo-test-admin"  # the tests' own eyes (no deployment has it)
VENV_BIN = str(Path(sys.executable).parent)
# The interpreter behind the virtualenv (may live under a home closed to others).
PYTHON_HOME = str(Path(os.path.realpath(sys.executable)).parent.parent)
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHP_DIR = node_dir()
TRAEFIK_STANDIN = Path(traefik_standin.__file__)
TRAEFIK_IN_POD = "/usr/local/bin/traefik-standin.py"


def subcharts_missing() -> str | None:
    """A skip reason when the pinned subcharts are not unpacked in the chart."""
    missing = missing_subcharts(CHART)
    if missing:
        return (
            f"subcharts {', '.join(missing)} are not in helm-chart/pangeo-cloud/charts/ "
            "(unpack the pinned upstream releases there to run the production-hub tier)"
        )
    return None


def chp_missing() -> str | None:
    if not (CHP_DIR / "bin" / "configurable-http-proxy").exists():
        return f"configurable-http-proxy is not installed in {CHP_DIR} (scripts/install-*.sh)"
    return None


def minio_missing() -> str | None:
    """A skip reason without MinIO (the AWS stand-in's STS and S3)."""
    from pangeo_cloud.local.objectstore import find_minio

    if find_minio() is None:
        return "MinIO is not installed (scripts/install-objectstore.sh); the AWS stand-in needs it"
    return None


def _editable_pth() -> list[Path]:
    purelib = Path(sysconfig.get_paths()["purelib"])
    return sorted(purelib.glob("__editable__.pangeo_cloud*.pth"))


def images(manifests: list[dict[str, Any]], notebook_image: str) -> dict[str, ImageStandIn]:
    """The images of the rendered pods that have a local equivalent (module docstring)."""
    hidden = {str(p): "/dev/null" for p in _editable_pth()}
    out = {
        notebook_image: ImageStandIn(
            env={"PATH": f"{VENV_BIN}:{IMAGE_PATH}", "HOME": "/home/jovyan", "LANG": "C.UTF-8"},
            workdir="/home/jovyan",
            user=1000,
            reachable=(PYTHON_HOME,),
        )
    }
    for doc in manifests:
        if doc.get("kind") != "Deployment":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            image = c["image"]
            if image.startswith("quay.io/jupyterhub/k8s-hub:"):
                out[image] = ImageStandIn(
                    env={"PATH": f"{VENV_BIN}:{IMAGE_PATH}", "HOME": "/home/jovyan"},
                    workdir="/srv/jupyterhub",
                    user=1000,
                    binds=hidden,
                    reachable=(PYTHON_HOME,),
                )
            elif image.startswith("quay.io/jupyterhub/configurable-http-proxy:"):
                out[image] = ImageStandIn(
                    env={"PATH": f"/srv/configurable-http-proxy/bin:{IMAGE_PATH}"},
                    workdir="/srv/configurable-http-proxy",
                    binds={"/srv/configurable-http-proxy": str(CHP_DIR)},
                )
            elif image.startswith("registry.k8s.io/kube-scheduler:"):
                out[image] = ImageStandIn(
                    env={"PATH": IMAGE_PATH},
                    binds={"/usr/local/bin/kube-scheduler": str(tools_dir() / "kube-scheduler")},
                )
            elif image.startswith("ghcr.io/dask/dask-gateway-server:"):
                # Like the hub image, it does not contain our package: the
                # gateway loads our code from its extraConfig.
                out[image] = ImageStandIn(
                    env={"PATH": f"{VENV_BIN}:{IMAGE_PATH}", "HOME": "/home/dask"},
                    workdir="/home/dask",
                    user=1000,
                    binds=hidden,
                    reachable=(PYTHON_HOME,),
                )
            elif image.startswith("docker.io/traefik:"):
                # traefik's entrypoint passes flags to traefik: here its stand-in.
                out[image] = ImageStandIn(
                    env={"PATH": IMAGE_PATH},
                    entrypoint=(f"{VENV_BIN}/python", "-I", TRAEFIK_IN_POD),
                    binds={TRAEFIK_IN_POD: str(TRAEFIK_STANDIN)},
                    reachable=(PYTHON_HOME,),
                )
    return out


def test_values(
    gh: GitHubStandIn,
    public_url: str,
    token: str,
    admin_token: str,
    cloud: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The test-only layer: what secrets/<stage>.enc.yaml holds, for the stand-ins,
    the tests' own admin service, and ``cloud``: the cloud stand-ins' chart values
    (their endpoints)."""
    return merge(
        cloud or {},
        {
            "jupyterhub": {
                "hub": {
                    "config": {
                        "GitHubOAuthenticator": {
                            "client_id": gh.client_id,
                            "client_secret": gh.client_secret,
                            "oauth_callback_url": f"{public_url}hub/oauth_callback",
                            "github_url": gh.url,
                        }
                    },
                    "services": {
                        HEALTH_SERVICE: {"apiToken": token},
                        ADMIN_SERVICE: {"apiToken": admin_token},
                    },
                    "loadRoles": {
                        ADMIN_SERVICE: {
                            "services": [ADMIN_SERVICE],
                            "scopes": ["admin:users", "admin:servers", "tokens"],
                        }
                    },
                }
            }
        },
    )


def render_stage(deployment: str, stage: str, test_layer: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage's manifests, rendered by the project's code path plus the test layer."""
    paths = Paths.discover(REPO)
    dep = load_deployment(deployment, paths)
    layers = values_layers(dep, stage, paths=paths)
    # After the (masked) secrets layers, before the generated protections and gateway
    # hooks, where the stage's real secrets files are.
    layers.insert(len(layers) - 2, Layer(name="test: stand-in secrets", data=test_layer))
    stream, view = render(paths.chart, dep.stage(stage), dep.kubernetes_version, merge_all(layers))
    assert view.full, f"rendered without subcharts {view.missing}"
    return split_manifests(stream)


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


@dataclass
class ProductionHub:
    deployment: str
    cloud: str
    stage: str
    namespace: str
    url: str  # the public address (load balancer stand-in), ends with "/"
    token: str  # the health-check service token
    admin_token: str  # the test-only admin service's token
    manifests: list[dict[str, Any]]
    values: dict[str, Any]
    kubelet: KubeletStandIn
    github: GitHubStandIn
    plane: ControlPlane
    identity: Any  # the cloud's stand-in (pangeo_cloud.testing.cloud)

    def logs(self, pod_prefix: str) -> str:
        return self.kubelet.logs(pod_prefix)


def wait_for(what: str, check: Any, timeout: float, kubelet: KubeletStandIn | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if kubelet is not None:
            kubelet.check()
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _kubectl_apply(plane: ControlPlane, namespace: str, docs: list[dict[str, Any]]) -> None:
    """Apply like `helm install --namespace`: the CRDs first (established), then the rest."""
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    for batch in (crds, rest):
        if not batch:
            continue
        stream = "\n---\n".join(json.dumps(d) for d in batch)
        plane.kubectl("apply", "--namespace", namespace, "--server-side", "--force-conflicts",
                      "-f", "-", input=stream, timeout=180)  # fmt: skip
        if batch is crds:
            names = [f"crd/{d['metadata']['name']}" for d in crds]
            plane.kubectl("wait", "--for=condition=established", "--timeout=60s", *names,
                          timeout=90)  # fmt: skip


def _delete_namespace(plane: ControlPlane, namespace: str) -> None:
    plane.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--timeout=120s",
                  check=False, timeout=180)  # fmt: skip


def _user_nodes(deployment: str) -> list[NodeSpec]:
    data = yaml.safe_load((REPO / "deployments" / deployment / "deployment.yaml").read_text())
    return [
        NodeSpec(
            f"kwok-{deployment}-{pool['name']}",
            zone="zone-a",
            cpu=str(pool["cpu"]),
            memory=str(pool["memory"]),
            labels=dict(pool.get("labels") or {}),
        )
        for pool in data.get("nodePools") or []
    ]


@contextlib.contextmanager
def production_hub(
    plane: ControlPlane, deployment: str, stage: str, state_dir: Path, log: Any = print
) -> Iterator[ProductionHub]:
    """Render, apply and run the stage's hub; everything is removed on every exit path."""
    dep = load_deployment(deployment, Paths.discover(REPO))
    namespace = dep.stage(stage).namespace
    token = secrets.token_hex(32)
    admin_token = secrets.token_hex(32)
    (lb_port,) = free_ports(1)
    public_url = f"http://127.0.0.1:{lb_port}/"
    with contextlib.ExitStack() as stack:
        gh = stack.enter_context(GitHubStandIn())
        # The cloud stand-ins first: their endpoints are chart values of the test layer.
        identity = stack.enter_context(
            _cloud_identity(dep.cloud, _merged_test_values(deployment, stage, {}))
        )
        layer = test_values(gh, public_url, token, admin_token, identity.chart_values())
        manifests = render_stage(deployment, stage, layer)
        values = _merged_test_values(deployment, stage, layer)
        singleuser = values["jupyterhub"]["singleuser"]["image"]
        notebook = f"{singleuser['name']}:{singleuser['tag']}"

        _delete_namespace(plane, namespace)  # leftovers of an interrupted run
        plane.kubectl("create", "namespace", namespace)
        stack.callback(_delete_namespace, plane, namespace)
        for node in _user_nodes(deployment):
            plane.kubectl("apply", "-f", "-", input=json.dumps(node.manifest()))
            stack.callback(plane.kubectl, "delete", "node", node.name, "--wait=false", check=False)
        storage_class = values["jupyterhub"]["singleuser"]["storage"]["dynamic"]["storageClass"]
        _ensure_storage_class(plane, storage_class)

        kubelet = KubeletStandIn(
            plane,
            namespace,
            images(manifests, notebook),
            state_dir,
            identities=[identity],
            log=log,
        )
        kubelet.start()
        stack.callback(kubelet.stop)
        # After the namespace is gone (callbacks run last-in first-out).
        cluster_scoped = [
            d
            for d in manifests
            if d["kind"] in ("PriorityClass", "ClusterRole", "ClusterRoleBinding")
        ]
        stack.callback(_delete_objects, plane, cluster_scoped)
        stack.callback(_delete_objects, plane, _scheduler_standin_rbac(namespace))
        _kubectl_apply(plane, namespace, [d for d in manifests if not is_hook(d)])
        _kubectl_apply(plane, namespace, _scheduler_standin_rbac(namespace))

        proxy = "proxy-public"
        if values["jupyterhub"]["proxy"]["https"].get("type") == "letsencrypt":
            # proxy-public selects autohttps (traefik), which does not run here.
            proxy = "proxy-http"
        service = json.loads(plane.kubectl("-n", namespace, "get", "svc", proxy, "-o",
                                           "json").stdout)  # fmt: skip
        http_port = next(
            p["port"] for p in service["spec"]["ports"] if p.get("name", "http") == "http"
        )
        lb = forward("127.0.0.1", lb_port, (service["spec"]["clusterIP"], http_port))
        stack.callback(lb.close)
        hub = ProductionHub(
            deployment,
            dep.cloud,
            stage,
            namespace,
            public_url,
            token,
            admin_token,
            manifests,
            values,
            kubelet,
            gh,
            plane,
            identity,
        )

        def hub_up() -> bool:
            dead = {k: v for k, v in kubelet.exited.items() if k.startswith(("hub-", "proxy-"))}
            if dead:
                raise AssertionError(
                    f"exited: {dead}\n{kubelet.logs('hub')}{kubelet.logs('proxy')}"
                )
            return _hub_up(public_url)

        wait_for("the hub to answer through the proxy", hub_up, 240, kubelet)
        # kwok reports pods Ready at once; wait until every pod the stand-in runs
        # listens on its declared ports (the broker's readiness, in a cluster).
        wait_for("the pods' ports to listen", lambda: _pods_listening(kubelet), 120, kubelet)
        yield hub


@contextlib.contextmanager
def _cloud_identity(cloud: str, values: dict[str, Any]) -> Iterator[Any]:
    """The cloud's workload identity and scratch store (pangeo_cloud.testing.cloud),
    for the one identity with bucket access: the scratch-credentials broker's."""
    scratch = values["jupyterhub"]["custom"]["pangeo"]["scratch"]
    bucket = urlparse(scratch["url"]).netloc
    broker = values["scratchBroker"]
    if cloud == "gcp":
        email = broker["gcp"]["serviceAccount"]
        stand_in: Any = GkeWorkloadIdentityStandIn(email, scratch["project"], bucket)
    else:
        stand_in = AwsIrsaStandIn(bucket, scratch["region"])
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


def _scheduler_standin_rbac(namespace: str) -> list[dict[str, Any]]:
    """Read access that the stand-in's newer kube-scheduler needs beyond z2jh's role.

    z2jh 4.4.0's user-scheduler image is kube-scheduler v1.30; the binary that
    stands in for it is the plane's (newer) one, which also lists DRA objects
    and VolumeAttachments and never schedules until those caches sync. The
    role z2jh grants (written for v1.30) does not cover them; production runs
    the v1.30 image and needs nothing more.
    """
    name = f"pangeo-test-{namespace}-user-scheduler-standin"
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": ["resource.k8s.io"],
                    "resources": ["*"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["storage.k8s.io"],
                    "resources": ["volumeattachments"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "user-scheduler", "namespace": namespace}
            ],
        },
    ]


def _merged_test_values(deployment: str, stage: str, layer: dict[str, Any]) -> dict[str, Any]:
    paths = Paths.discover(REPO)
    layers = values_layers(load_deployment(deployment, paths), stage, paths=paths)
    layers.append(Layer(name="test", data=layer))
    return merge_all(layers)


def _ensure_storage_class(plane: ControlPlane, name: str) -> None:
    """The class the values name, as the cloud has it (no provisioner: the stand-in binds)."""
    if plane.kubectl("get", "storageclass", name, check=False).returncode == 0:
        return
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
    }
    result = plane.kubectl("create", "-f", "-", input=json.dumps(sc), check=False)
    assert result.returncode == 0 or "AlreadyExists" in result.stderr, result.stderr


def _delete_objects(plane: ControlPlane, docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        plane.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found",
                      "--wait=false", check=False)  # fmt: skip


def _pods_listening(kubelet: KubeletStandIn) -> bool:
    import socket

    pods = kubelet.api.items(f"/api/v1/namespaces/{kubelet.namespace}/pods")
    for pod in pods:
        running = kubelet.pods.get(pod["metadata"]["name"])
        if running is None:
            continue
        for container in pod["spec"]["containers"]:
            if container["image"].startswith("registry.k8s.io/kube-scheduler"):
                continue  # two replicas share one wildcard port here (Go ignores the shim)
            for port in container.get("ports") or []:
                try:
                    socket.create_connection((running.ip, port["containerPort"]), 2).close()
                except OSError:
                    return False
    return True


def _hub_up(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url + "hub/health", timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def run_health(hub: ProductionHub, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`pangeo-cloud health DEPLOYMENT STAGE` against the hub, as an operator runs it."""
    env = {"PATH": f"{VENV_BIN}:{IMAGE_PATH}", "PANGEO_HEALTH_TOKEN": hub.token}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [sys.executable, "-m", "pangeo_cloud.cli", "--root", str(REPO), "health",
         hub.deployment, hub.stage, "--hub-url", hub.url, "--allow-other-host", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


def need_tools() -> str | None:
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    return None
