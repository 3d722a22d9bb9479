"""Stand-ins for the node side of Kubernetes on the loopback control plane.

kwok (see :mod:`pangeo_cloud.testing.k8s`) simulates nodes: it marks pods Running
and gives them IPs, but nothing runs. The stand-ins here make chosen pods real,
on this machine, from what the API server holds, the way a node would:

* :class:`KubeletStandIn` watches the pods of one namespace. A pod scheduled on
  a node, Running, with an IP, whose container images are all known (an
  :class:`ImageStandIn` says where an image's programs are on this machine),
  is started: its IP is added to the loopback device (``/32``), its volumes
  are laid out (ConfigMap and Secret files, PersistentVolumes by their
  ``hostPath``, ``emptyDir``, the projected ServiceAccount token from the
  TokenRequest API), its environment is resolved (``value`` with ``$(VAR)``
  references, ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``, the
  ``<SERVICE>_SERVICE_HOST``/``_PORT`` variables of the namespace's Services
  and ``KUBERNETES_SERVICE_*``), and each container's command runs under
  :mod:`pangeo_cloud.testing.podlaunch` in a private mount namespace, as the
  container's user, with ``/etc/hosts`` naming the namespace's Services
  (a headless Service by its first ready endpoint), kept up to date as DNS
  would be. A
  deleted pod's processes are stopped (SIGTERM, then SIGKILL) and its IP removed.
  Pods with unknown images stay simulated (kwok's "Running", nothing behind it).
* :class:`ServiceProxyStandIn` (kube-proxy's job): each Service's ClusterIP is
  added to the loopback device and each port forwards TCP to a ready endpoint
  (EndpointSlices, filled by the real endpoint controller from pod IPs) whose
  pod the kubelet stand-in runs; the ``kubernetes`` Service forwards to the API
  server.
* :class:`VolumeProvisionerStandIn` (a cloud disk provisioner's job): a pending
  claim gets a PersistentVolume pre-bound to it, backed by a directory.

What differs from a node, on purpose: pods share the machine's network
namespace. So that a server listening on "all addresses" listens on its pod's
addresses only, as in a cluster, each container runs with a small LD_PRELOAD
library (``podbind.c``, compiled at start; ``LD_PRELOAD``, ``PANGEO_POD_IP`` and
``PANGEO_POD_IP6`` in its environment) that turns ``bind()`` to ``0.0.0.0`` /
``::`` into ``bind()`` to the pod's IPv4 / IPv6 address (statically linked
programs such as the Go binaries are not covered; a pod's ``localhost`` is the
machine's); images are
not pulled (the :class:`ImageStandIn` maps them to installed programs); init
containers whose image is unknown are skipped and logged.

Needs root (mount namespaces, loopback addresses): :func:`missing_privileges`
says why not, for a skip reason.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.testing.k8s import ControlPlane

PODLAUNCH = Path(__file__).with_name("podlaunch.py")
PODBIND_SOURCE = Path(__file__).with_name("podbind.c")
# Where the pod network shim appears inside each pod (bound by podlaunch).
PODBIND_IN_POD = "/usr/local/lib/pangeo-cloud-podbind.so"
KUBERNETES_SERVICE_IP = "10.96.0.1"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")

Log = Callable[[str], None]


def missing_privileges() -> str | None:
    """Why pods cannot be run here (None if they can): root, unshare, ip, mount."""
    if os.geteuid() != 0:
        return "the kubelet stand-in needs root (mount namespaces, loopback addresses)"
    for tool in ("unshare", "ip", "mount", "gcc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (needed by the kubelet stand-in)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"no permission for a private mount namespace: {probe.stderr.strip()}"
    address = "10.255.255.254/32"
    added = subprocess.run(
        ["ip", "addr", "add", address, "dev", "lo"], capture_output=True, text=True, check=False
    )
    if added.returncode != 0 and "File exists" not in added.stderr:
        return f"cannot add addresses to the loopback device: {added.stderr.strip()}"
    subprocess.run(["ip", "addr", "del", address, "dev", "lo"], capture_output=True, check=False)
    return None


def _loopback_address(ip: str, add: bool) -> None:
    action = "add" if add else "del"
    family, prefix = ("-6", 128) if ":" in ip else ("-4", 32)
    proc = subprocess.run(
        ["ip", family, "addr", action, f"{ip}/{prefix}", "dev", "lo"],
        capture_output=True,
        text=True,
        check=False,
    )
    if add and proc.returncode != 0 and "File exists" not in proc.stderr:
        raise RuntimeError(f"ip addr add {ip}/{prefix} dev lo: {proc.stderr.strip()}")


def pod_ip6(ip: str) -> str:
    """The pod's IPv6 address (a ULA derived from its IPv4 address)."""
    return "fd00::" + ":".join(f"{int(o):x}" for o in ip.split("."))


def build_podbind(directory: Path) -> Path:
    """Compile the pod network shim (podbind.c) into ``directory``."""
    out = directory / "podbind.so"
    proc = subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(PODBIND_SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the pod network shim: {proc.stderr.strip()}")
    out.chmod(0o755)
    return out


@dataclass(frozen=True)
class ImageStandIn:
    """Where a container image's programs are on this machine.

    ``binds`` are extra paths of the image's filesystem (target -> source on
    this machine), for programs a container's user could not reach where they
    are installed, and ``reachable`` paths that user must be able to traverse
    to (see :mod:`pangeo_cloud.testing.podlaunch`); ``env`` is the image's ENV
    (PATH, HOME...); ``entrypoint``, ``cmd``, ``workdir``, ``user`` as in the
    image's config.
    """

    env: dict[str, str]
    workdir: str = "/"
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: int | None = None
    binds: dict[str, str] = field(default_factory=dict)
    reachable: tuple[str, ...] = ()


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: unknown references stay, ``$$`` is ``$``."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(sub, text)


class Api:
    """The few API calls the stand-ins make, as cluster-admin."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    def get(self, path: str) -> dict[str, Any] | None:
        status, body = self.plane.request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body}")
        return body

    def items(self, path: str) -> list[dict[str, Any]]:
        body = self.get(path)
        return (body or {}).get("items") or []

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, reply = self.plane.request("POST", path, body)
        if status not in (200, 201):
            raise RuntimeError(f"POST {path}: HTTP {status}: {reply}")
        return reply


# -- kube-proxy -------------------------------------------------------------------


class _Forwarder:
    """One listening address forwarding TCP to whatever ``target()`` returns."""

    def __init__(self, host: str, port: int, target: Callable[[], tuple[str, int] | None]) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        address = self.target()
        if address is None:
            client.close()  # no ready endpoint: connection refused, as kube-proxy's REJECT
            return
        try:
            upstream = socket.create_connection(address, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.closed = True
        # shutdown() first: on Linux, close() alone leaves the socket listening
        # while another thread is blocked in accept() on it.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RD)


def forward(host: str, port: int, target: tuple[str, int]) -> _Forwarder:
    """Forward ``host:port`` to a fixed ``target`` (a cloud load balancer stand-in)."""
    return _Forwarder(host, port, lambda: target)


# -- the stand-ins --------------------------------------------------------------------


class ServiceProxyStandIn:
    """ClusterIP:port -> a ready endpoint, for the Services of one namespace."""

    def __init__(
        self,
        api: Api,
        namespace: str,
        apiserver_port: int,
        log: Log,
        running: Callable[[], set[str]] = set,
    ) -> None:
        self.api, self.namespace, self.log = api, namespace, log
        # IPs of pods whose processes run: only those can answer (a pod kwok
        # merely reports as Ready has nothing listening).
        self.running = running
        self.apiserver = ("127.0.0.1", apiserver_port)
        self.forwarders: dict[tuple[str, int], _Forwarder | None] = {}
        self.endpoints: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.addresses: set[str] = set()

    def sync(self) -> None:
        services = [("default", s) for s in self.api.items("/api/v1/namespaces/default/services")]
        services += [
            (self.namespace, s)
            for s in self.api.items(f"/api/v1/namespaces/{self.namespace}/services")
        ]
        slices = self.api.items(
            f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        )
        endpoints: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for sl in slices:
            svc = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            ready = [
                a
                for ep in sl.get("endpoints") or []
                if (ep.get("conditions") or {}).get("ready")
                for a in ep.get("addresses") or []
            ]
            for port in sl.get("ports") or []:
                key = (svc, port.get("name") or "")
                endpoints.setdefault(key, []).extend((a, port["port"]) for a in ready)
        self.endpoints = endpoints
        for ns, svc in services:
            if ns == "default" and svc["metadata"]["name"] != "kubernetes":
                continue
            ip = svc["spec"].get("clusterIP")
            if not ip or ip == "None":
                continue
            for port in svc["spec"].get("ports") or []:
                self._listen(ns, svc["metadata"]["name"], ip, port)

    def _listen(self, ns: str, name: str, ip: str, port: dict[str, Any]) -> None:
        key = (ip, port["port"])
        if key in self.forwarders:
            return
        if ip not in self.addresses:
            _loopback_address(ip, True)
            self.addresses.add(ip)
        if ns == "default":
            target: Callable[[], tuple[str, int] | None] = lambda: self.apiserver  # noqa: E731
        else:
            port_name = port.get("name") or ""

            def target() -> tuple[str, int] | None:
                ready = self.endpoints.get((name, port_name)) or []
                live = [a for a in ready if a[0] in self.running()]
                return live[0] if live else None

        try:
            self.forwarders[key] = _Forwarder(ip, port["port"], target)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            # A process outside the pod network binds this port on every address.
            self.forwarders[key] = None
            self.log(f"service {name} {ip}:{port['port']}: port taken by another process")

    def stop(self) -> None:
        for fwd in self.forwarders.values():
            if fwd is not None:
                fwd.close()
        self.forwarders.clear()
        for ip in self.addresses:
            _loopback_address(ip, False)
        self.addresses.clear()


class VolumeProvisionerStandIn:
    """A pending claim of the namespace gets a directory-backed PV pre-bound to it."""

    def __init__(self, api: Api, namespace: str, root: Path, log: Log) -> None:
        self.api, self.namespace, self.root, self.log = api, namespace, root, log
        self.created: list[str] = []

    def sync(self) -> None:
        for pvc in self.api.items(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims"):
            if pvc["spec"].get("volumeName") or pvc["metadata"].get("deletionTimestamp"):
                continue
            name = f"pv-{self.namespace}-{pvc['metadata']['name']}"[:63]
            if name in self.created:
                continue
            path = self.root / name
            path.mkdir(parents=True, exist_ok=True)
            pv = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name, "labels": {"pangeo-cloud.test/provisioner": "stand-in"}},
                "spec": {
                    "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                    "accessModes": pvc["spec"].get("accessModes") or ["ReadWriteOnce"],
                    "storageClassName": pvc["spec"].get("storageClassName") or "",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "claimRef": {"namespace": self.namespace, "name": pvc["metadata"]["name"]},
                    "hostPath": {"path": str(path)},
                },
            }
            self.api.post("/api/v1/persistentvolumes", pv)
            self.created.append(name)
            self.log(f"provisioned {name} for claim {pvc['metadata']['name']} at {path}")

    def stop(self) -> None:
        for name in self.created:
            self.api.plane.request("DELETE", f"/api/v1/persistentvolumes/{name}")
        self.created.clear()


@dataclass
class RunningPod:
    name: str
    uid: str
    ip: str
    procs: dict[str, subprocess.Popen[bytes]]
    grace: float


class KubeletStandIn:
    """Runs the namespace's pods whose images it knows (see the module docstring)."""

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        images: dict[str, ImageStandIn],
        state_dir: Path,
        *,
        interval: float = 0.3,
        identities: Sequence[Any] = (),
        log: Log | None = None,
    ) -> None:
        self.api = Api(plane)
        self.plane = plane
        self.namespace = namespace
        self.images = images
        self.state_dir = state_dir
        self.interval = interval
        # Node-level cloud identity (pangeo_cloud.testing.cloud): pod_identity(account, token_for).
        self.identities = tuple(identities)
        self.events: list[str] = []
        self._log_fn = log or (lambda _m: None)
        self.services = ServiceProxyStandIn(
            self.api,
            namespace,
            plane._load_state()["ports"]["apiserver"],
            self.log,
            running=lambda: {p.ip for p in list(self.pods.values())},
        )
        self.volumes = VolumeProvisionerStandIn(
            self.api, namespace, state_dir / "volumes", self.log
        )
        self.pods: dict[str, RunningPod] = {}
        self.exited: dict[str, int] = {}  # "<pod>/<container>" -> exit status
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def log(self, message: str) -> None:
        self.events.append(message)
        self._log_fn(message)
        with contextlib.suppress(OSError), (self.state_dir / "kubelet.log").open("a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> KubeletStandIn:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.podbind = build_podbind(self.state_dir)
        self._thread = threading.Thread(target=self._run, name="kubelet-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        for name in list(self.pods):
            self._kill(name)
        self.services.stop()
        self.volumes.stop()

    def check(self) -> None:
        """Raise what made the watch loop stop, if anything."""
        if self._error is not None:
            raise RuntimeError(f"kubelet stand-in stopped: {self._error!r}") from self._error

    def __enter__(self) -> KubeletStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self, pod_prefix: str) -> str:
        """The output of every container of the pods whose name starts with ``pod_prefix``."""
        out = []
        for path in sorted((self.state_dir / "pods").glob(f"{pod_prefix}*/*.log")):
            out.append(f"==== {path.parent.name}/{path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(out)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # reported by check()
                self._error = exc
                self.log(f"kubelet stand-in error: {exc!r}")
                return
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        self.volumes.sync()
        self.services.sync()
        pods = self.api.items(f"/api/v1/namespaces/{self.namespace}/pods")
        live = {
            p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")
        }
        for name, running in list(self.pods.items()):
            pod = live.get(name)
            if pod is None or pod["metadata"]["uid"] != running.uid:
                self._kill(name)
            else:
                for cname, proc in running.procs.items():
                    key = f"{name}/{cname}"
                    if proc.poll() is not None and key not in self.exited:
                        self.exited[key] = proc.returncode
                        self.log(f"container {key} exited with {proc.returncode}")
        for name, pod in live.items():
            if name in self.pods or not self._runnable(pod):
                continue
            self._start_pod(pod)
        self._refresh_hosts(live)

    def _runnable(self, pod: dict[str, Any]) -> bool:
        status, spec = pod.get("status") or {}, pod["spec"]
        if status.get("phase") != "Running" or not status.get("podIP") or not spec.get("nodeName"):
            return False
        return all(c["image"] in self.images for c in spec["containers"])

    # -- one pod -------------------------------------------------------------------
    def _start_pod(self, pod: dict[str, Any]) -> None:
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        pod_dir = self.state_dir / "pods" / name
        if pod_dir.exists():
            shutil.rmtree(pod_dir)
        pod_dir.mkdir(parents=True)
        pod_dir.chmod(0o755)
        _loopback_address(ip, True)
        _loopback_address(pod_ip6(ip), True)
        volumes = self._volumes(pod, pod_dir)
        identity = self._identity(pod, pod_dir)
        grace = min(float(pod["spec"].get("terminationGracePeriodSeconds") or 30), 15.0)
        running = RunningPod(name, pod["metadata"]["uid"], ip, {}, grace)
        self.pods[name] = running
        for init in pod["spec"].get("initContainers") or []:
            if init["image"] not in self.images:
                self.log(f"pod {name}: init container {init['name']} ({init['image']}) skipped")
                continue
            proc = self._launch(pod, init, volumes, pod_dir, identity)
            code = proc.wait(300)
            if code != 0:
                self.log(f"pod {name}: init container {init['name']} exited with {code}")
                return
        for container in pod["spec"]["containers"]:
            running.procs[container["name"]] = self._launch(
                pod, container, volumes, pod_dir, identity
            )
        self.log(f"started pod {name} at {ip}")

    def _token(self, pod: dict[str, Any], audience: str | None, seconds: int = 3607) -> str:
        """A ServiceAccount token bound to the pod (TokenRequest), as the kubelet gets it."""
        account = pod["spec"].get("serviceAccountName") or "default"
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        }
        reply = self.api.post(
            f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token", request
        )
        return reply["status"]["token"]

    def _identity(self, pod: dict[str, Any], pod_dir: Path) -> tuple[dict[str, str], list]:
        """Cloud identity for the pod's ServiceAccount: (env, read-only file mounts)."""
        if not self.identities:
            return {}, []
        name = pod["spec"].get("serviceAccountName") or "default"
        account = self.api.get(f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{name}")
        env: dict[str, str] = {}
        mounts: list[tuple[str, str, bool]] = []
        for identity in self.identities:
            more_env, files = identity.pod_identity(
                account or {}, lambda audience: self._token(pod, audience)
            )
            env.update(more_env)
            for n, (target, content) in enumerate(files.items()):
                source = pod_dir / "identity" / f"{len(mounts) + n}"
                source.parent.mkdir(exist_ok=True)
                source.write_bytes(content)
                source.chmod(0o644)
                mounts.append((str(source), target, True))
        return env, mounts

    def _kill(self, name: str) -> None:
        running = self.pods.pop(name)
        for proc in running.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + running.grace
        for proc in running.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if running.ip not in {p.ip for p in self.pods.values()}:
            _loopback_address(running.ip, False)
            _loopback_address(pod_ip6(running.ip), False)
        self.log(f"stopped pod {name}")

    def _volumes(self, pod: dict[str, Any], pod_dir: Path) -> dict[str, str]:
        """Volume name -> a directory holding its content, as the kubelet would."""
        ns = self.namespace
        fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        out: dict[str, str] = {}
        for vol in pod["spec"].get("volumes") or []:
            path = pod_dir / "volumes" / vol["name"]
            if "configMap" in vol:
                cm = self.api.get(f"/api/v1/namespaces/{ns}/configmaps/{vol['configMap']['name']}")
                self._write_files(path, (cm or {}).get("data") or {}, vol["configMap"])
            elif "secret" in vol:
                secret = self.api.get(
                    f"/api/v1/namespaces/{ns}/secrets/{vol['secret']['secretName']}"
                )
                data = {
                    k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()
                }
                self._write_files(path, data, vol["secret"])
            elif "projected" in vol:
                self._projected(pod, path, vol["projected"])
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                pvc = self.api.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
                pv = self.api.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
                out[vol["name"]] = pv["spec"]["hostPath"]["path"]
                self._own(Path(out[vol["name"]]), fs_group)
                continue
            elif "hostPath" in vol:
                out[vol["name"]] = vol["hostPath"]["path"]
                continue
            else:  # emptyDir and anything else: an empty directory
                path.mkdir(parents=True)
                self._own(path, fs_group)
            out[vol["name"]] = str(path)
        return out

    @staticmethod
    def _own(path: Path, fs_group: int | None) -> None:
        """What the kubelet does for fsGroup: group-owned, group-writable, setgid."""
        if fs_group is None:
            return
        for root, dirs, files in os.walk(path):
            for entry in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(entry, -1, fs_group)
            os.chmod(root, os.stat(root).st_mode | 0o2070)

    @staticmethod
    def _write_files(path: Path, data: dict[str, Any], source: dict[str, Any]) -> None:
        path.mkdir(parents=True)
        mode = source.get("defaultMode", 0o644)
        items = source.get("items")
        selected = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
        for key, rel in selected.items():
            value = data[key]
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(value if isinstance(value, bytes) else str(value).encode())
            target.chmod(mode)

    def _projected(self, pod: dict[str, Any], path: Path, projected: dict[str, Any]) -> None:
        path.mkdir(parents=True)
        ns, files = self.namespace, {}
        for src in projected.get("sources") or []:
            if "serviceAccountToken" in src:
                sat = src["serviceAccountToken"]
                token = self._token(pod, sat.get("audience"), sat.get("expirationSeconds", 3607))
                files[sat["path"]] = token.encode()
            elif "configMap" in src:
                cm = self.api.get(f"/api/v1/namespaces/{ns}/configmaps/{src['configMap']['name']}")
                data = (cm or {}).get("data") or {}
                for item in src["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                    files[item["path"]] = data[item["key"]].encode()
            elif "downwardAPI" in src:
                for item in src["downwardAPI"].get("items") or []:
                    files[item["path"]] = self._field(pod, item["fieldRef"]["fieldPath"]).encode()
        mode = projected.get("defaultMode", 0o644)
        for rel, content in files.items():
            (path / rel).write_bytes(content)
            (path / rel).chmod(mode)

    def _field(self, pod: dict[str, Any], field_path: str) -> str:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
        fields = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta.get("namespace", self.namespace),
            "metadata.uid": meta["uid"],
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "status.podIP": status.get("podIP", ""),
            "status.hostIP": status.get("hostIP", ""),
        }
        if field_path in fields:
            return fields[field_path]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field_path)
        if match:
            return (meta.get(match.group(1)) or {}).get(match.group(2), "")
        raise RuntimeError(f"fieldRef {field_path} is not supported by the kubelet stand-in")

    def _headless_addresses(self) -> dict[str, str]:
        """Service name -> the first ready endpoint address (for headless Services)."""
        out: dict[str, str] = {}
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        for sl in self.api.items(path):
            name = (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
            for ep in sl.get("endpoints") or []:
                if name and (ep.get("conditions") or {}).get("ready") and ep.get("addresses"):
                    out.setdefault(name, ep["addresses"][0])
        return out

    # -- environment ---------------------------------------------------------------
    def _service_env(self) -> dict[str, str]:
        """The variables the kubelet sets for each Service (enableServiceLinks)."""
        env: dict[str, str] = {}
        services = self.api.items(f"/api/v1/namespaces/{self.namespace}/services")
        kubernetes = self.api.get("/api/v1/namespaces/default/services/kubernetes")
        for svc in [*services, *([kubernetes] if kubernetes else [])]:
            ip = svc["spec"].get("clusterIP")
            if not ip or ip == "None":
                continue
            prefix = svc["metadata"]["name"].upper().replace("-", "_")
            ports = svc["spec"].get("ports") or []
            first = ports[0]
            env[f"{prefix}_SERVICE_HOST"] = ip
            env[f"{prefix}_SERVICE_PORT"] = str(first["port"])
            for port in ports:
                proto = port.get("protocol", "TCP")
                if port.get("name"):
                    env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                        port["port"]
                    )
                base = f"{prefix}_PORT_{port['port']}_{proto}"
                env[base] = f"{proto.lower()}://{ip}:{port['port']}"
                env[f"{base}_PROTO"] = proto.lower()
                env[f"{base}_PORT"] = str(port["port"])
                env[f"{base}_ADDR"] = ip
            env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        return env

    def _hosts(self, pod: dict[str, Any], services: list[str] | None = None) -> str:
        """/etc/hosts answering what cluster DNS would for the namespace's Services."""
        lines = ["127.0.0.1 localhost", f"{pod['status']['podIP']} {pod['metadata']['name']}"]
        lines += self._service_hosts() if services is None else services
        return "\n".join(lines) + "\n"

    def _service_hosts(self) -> list[str]:
        ns = self.namespace
        lines = []
        headless = self._headless_addresses()
        for svc in self.api.items(f"/api/v1/namespaces/{ns}/services"):
            ip, name = svc["spec"].get("clusterIP"), svc["metadata"]["name"]
            if ip == "None":
                # A headless Service's name resolves to its ready endpoints.
                ip = headless.get(name)
            if ip:
                fq = f"{name}.{ns}.svc.cluster.local"
                lines.append(f"{ip} {name} {name}.{ns} {name}.{ns}.svc {fq}")
        lines.append(
            f"{KUBERNETES_SERVICE_IP} kubernetes kubernetes.default kubernetes.default.svc "
            "kubernetes.default.svc.cluster.local"
        )
        return lines

    def _refresh_hosts(self, live: dict[str, dict[str, Any]]) -> None:
        """Rewrite running pods' /etc/hosts when Services change, as cluster DNS follows them.

        In place (same inode): podlaunch bind-mounted the file, and the C
        library reads it at every lookup.
        """
        services = self._service_hosts()
        for name in list(self.pods):
            pod = live.get(name)
            if pod is None:
                continue
            text = self._hosts(pod, services)
            for path in (self.state_dir / "pods" / name).glob("*/hosts"):
                with contextlib.suppress(OSError), path.open("r+") as f:
                    if f.read() != text:
                        f.seek(0)
                        f.write(text)
                        f.truncate()

    def _env(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        image: ImageStandIn,
        identity_env: dict[str, str],
    ) -> dict:
        ns = self.namespace
        env = {"HOSTNAME": pod["metadata"]["name"], **image.env, **identity_env}
        if pod["spec"].get("enableServiceLinks", True):
            env.update(self._service_env())
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                cm = self.api.get(
                    f"/api/v1/namespaces/{ns}/configmaps/{source['configMapRef']['name']}"
                )
                env.update((cm or {}).get("data") or {})
            elif "secretRef" in source:
                secret = self.api.get(
                    f"/api/v1/namespaces/{ns}/secrets/{source['secretRef']['name']}"
                )
                for k, v in ((secret or {}).get("data") or {}).items():
                    env[k] = base64.b64decode(v).decode()
        for var in container.get("env") or []:
            env[var["name"]] = self._env_value(pod, var, env)
        # The kubelet always sets these, whatever enableServiceLinks says.
        env["KUBERNETES_SERVICE_HOST"] = KUBERNETES_SERVICE_IP
        env["KUBERNETES_SERVICE_PORT"] = "443"
        # The pod network (module docstring).
        ip = pod["status"]["podIP"]
        env.update(PANGEO_POD_IP=ip, PANGEO_POD_IP6=pod_ip6(ip), LD_PRELOAD=PODBIND_IN_POD)
        return env

    def _env_value(self, pod: dict[str, Any], var: dict[str, Any], env: dict[str, str]) -> str:
        if "valueFrom" not in var:
            return expand(str(var.get("value", "")), env)
        ref, ns = var["valueFrom"], self.namespace
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            secret = self.api.get(f"/api/v1/namespaces/{ns}/secrets/{r['name']}") or {}
            data = secret.get("data") or {}
            if r["key"] not in data:
                raise RuntimeError(f"secretKeyRef {r['name']}/{r['key']}: no such key")
            return base64.b64decode(data[r["key"]]).decode()
        if "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            cm = self.api.get(f"/api/v1/namespaces/{ns}/configmaps/{r['name']}") or {}
            return (cm.get("data") or {})[r["key"]]
        if "fieldRef" in ref:
            return self._field(pod, ref["fieldRef"]["fieldPath"])
        raise RuntimeError(f"env {var['name']}: {sorted(ref)} not supported by the stand-in")

    # -- one container -------------------------------------------------------------
    def _launch(
        self,
        pod: dict[str, Any],
        container: dict[str, Any],
        volumes: dict[str, str],
        pod_dir: Path,
        identity: tuple[dict[str, str], list],
    ) -> subprocess.Popen[bytes]:
        image = self.images[container["image"]]
        env = self._env(pod, container, image, identity[0])
        # Kubernetes' rule: `command` replaces the ENTRYPOINT (and drops the image's CMD).
        if container.get("command"):
            raw = [*container["command"], *(container.get("args") or [])]
        else:
            raw = [*image.entrypoint, *(container.get("args") or image.cmd)]
        argv = [expand(a, env) for a in raw]
        if not argv:
            raise RuntimeError(f"pod {pod['metadata']['name']}: no command for {container['name']}")
        mounts: list[tuple[str, str, bool]] = [(str(self.podbind), PODBIND_IN_POD, True)]
        mounts += [(s, t, True) for t, s in image.binds.items()]
        for m in container.get("volumeMounts") or []:
            source = volumes[m["name"]]
            if m.get("subPath"):
                source = os.path.join(source, m["subPath"])
            mounts.append((source, m["mountPath"], bool(m.get("readOnly"))))
        mounts += identity[1]
        psc, csc = pod["spec"].get("securityContext") or {}, container.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser", image.user))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        groups = [g for g in [psc.get("fsGroup"), *(psc.get("supplementalGroups") or [])] if g]
        spec = {
            "mounts": mounts,
            "reachable": list(image.reachable),
            "hosts": self._hosts(pod),
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "cwd": container.get("workingDir") or image.workdir,
            "env": env,
            "argv": argv,
        }
        run_dir = pod_dir / container["name"]
        run_dir.mkdir()
        spec_file = run_dir / "spec.json"
        spec_file.write_text(json.dumps(spec, indent=1))
        spec_file.chmod(0o600)
        log = pod_dir / f"{container['name']}.log"
        with log.open("ab") as out:
            out.write(f"==== {' '.join(argv)}\n".encode())
            out.flush()
            return subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    sys.executable,
                    str(PODLAUNCH),
                    str(spec_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
