"""What the kubelet stand-in derives from the API objects, as Kubernetes documents it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from pangeo_cloud.testing.kubelet import KUBERNETES_SERVICE_IP, KubeletStandIn, expand


class FakePlane:
    """Answers GET requests from a dict of API paths (no server)."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects

    def _load_state(self) -> dict[str, Any]:
        return {"ports": {"apiserver": 6443}}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert method == "GET", (method, path)
        return (200, self.objects[path]) if path in self.objects else (404, None)


def service(name: str, ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": ports}}


OBJECTS = {
    "/api/v1/namespaces/prod/services": {
        "items": [
            service("hub", "10.96.0.10", [{"name": "hub", "port": 8081, "targetPort": "http"}]),
            service("proxy-api", "10.96.0.11", [{"port": 8001, "targetPort": "api"}]),
            service("headless", "None", [{"port": 1}]),
        ]
    },
    "/api/v1/namespaces/default/services/kubernetes": service(
        "kubernetes", KUBERNETES_SERVICE_IP, [{"name": "https", "port": 443}]
    ),
    "/api/v1/namespaces/prod/secrets/hub": {
        "data": {"token": base64.b64encode(b"s3cret").decode()}
    },
}

POD = {
    "metadata": {"name": "hub-1", "namespace": "prod", "uid": "u1"},
    "spec": {"nodeName": "n1"},
    "status": {"podIP": "10.244.0.7"},
}


def kubelet(tmp_path: Path) -> KubeletStandIn:
    return KubeletStandIn(FakePlane(OBJECTS), "prod", {}, tmp_path)  # type: ignore[arg-type]


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "x", "PORT": "8081"}
    assert expand("$(A):$(PORT)", env) == "x:8081"
    assert expand("$(MISSING)", env) == "$(MISSING)"  # unknown references stay
    assert expand("$$(A)", env) == "$(A)"  # $$ escapes


def test_service_links_and_kubernetes_variables(tmp_path: Path) -> None:
    container = {
        "name": "hub",
        "image": "i",
        "env": [{"name": "URL", "value": "h:$(HUB_SERVICE_PORT)"}],
    }
    from pangeo_cloud.testing.kubelet import ImageStandIn

    env = kubelet(tmp_path)._env(POD, container, ImageStandIn(env={"PATH": "/bin"}), {})
    assert env["HUB_SERVICE_HOST"] == "10.96.0.10" and env["HUB_SERVICE_PORT"] == "8081"
    assert env["HUB_SERVICE_PORT_HUB"] == "8081"
    assert env["PROXY_API_SERVICE_PORT"] == "8001"
    assert env["PROXY_API_PORT"] == "tcp://10.96.0.11:8001"
    assert env["KUBERNETES_SERVICE_HOST"] == KUBERNETES_SERVICE_IP
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert not [k for k in env if k.startswith("HEADLESS_")]  # no ClusterIP, no variables
    assert env["URL"] == "h:8081"  # $(VAR) sees the service variables
    assert env["HOSTNAME"] == "hub-1" and env["PATH"] == "/bin"


def test_value_from_secret_and_field(tmp_path: Path) -> None:
    k = kubelet(tmp_path)
    secret = {"name": "T", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}
    field = {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    ip = {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    assert k._env_value(POD, secret, {}) == "s3cret"
    assert k._env_value(POD, field, {}) == "prod"
    assert k._env_value(POD, ip, {}) == "10.244.0.7"


def test_hosts_name_the_namespace_services(tmp_path: Path) -> None:
    hosts = kubelet(tmp_path)._hosts(POD)
    assert "10.96.0.10 hub hub.prod hub.prod.svc hub.prod.svc.cluster.local" in hosts
    assert "10.244.0.7 hub-1" in hosts
    assert "headless" not in hosts  # no ready endpoint: no name, as cluster DNS


SLICES = "/apis/discovery.k8s.io/v1/namespaces/prod/endpointslices"


def endpoint_slice(service: str, address: str, ready: bool) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"kubernetes.io/service-name": service}},
        "endpoints": [{"addresses": [address], "conditions": {"ready": ready}}],
    }


def test_headless_service_resolves_to_its_ready_endpoint(tmp_path: Path) -> None:
    k = kubelet(tmp_path)
    k.plane.objects[SLICES] = {
        "items": [
            endpoint_slice("hub", "10.244.0.1", True),  # has a ClusterIP: stays the ClusterIP
            endpoint_slice("headless", "10.244.0.9", False),
            endpoint_slice("headless", "10.244.0.8", True),
        ]
    }
    hosts = k._hosts(POD)
    assert "10.244.0.8 headless headless.prod headless.prod.svc" in hosts
    assert "10.244.0.9" not in hosts and "10.244.0.1" not in hosts


def test_running_pods_hosts_follow_new_services_in_place(tmp_path: Path) -> None:
    from pangeo_cloud.testing.kubelet import RunningPod

    k = kubelet(tmp_path)
    hosts = tmp_path / "pods" / "hub-1" / "hub" / "hosts"
    hosts.parent.mkdir(parents=True)
    hosts.write_text(k._hosts(POD))
    inode = hosts.stat().st_ino
    k.pods["hub-1"] = RunningPod("hub-1", "u1", "10.244.0.7", {}, 1.0)
    k.plane.objects[SLICES] = {"items": [endpoint_slice("headless", "10.244.0.8", True)]}
    k._refresh_hosts({"hub-1": POD})
    assert "10.244.0.8 headless" in hosts.read_text()
    assert hosts.stat().st_ino == inode  # the file bind-mounted on the pod's /etc/hosts
