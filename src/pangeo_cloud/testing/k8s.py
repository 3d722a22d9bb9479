"""A real Kubernetes control plane on loopback, for tests and for developers.

This module owns the lifecycle of one local control plane built from upstream
binaries (no container runtime, no mock API server):

* etcd, kube-apiserver, kube-controller-manager and kube-scheduler of the
  Kubernetes release pinned in ``scripts/k8s-tools/go.mod``;
* kwok, which simulates the nodes (two by default, 16 CPU / 64Gi each, one per
  zone) and drives pod status, so Deployments, ReplicaSets and readiness
  progress exactly as the controllers decide;
* the certificates, service-account keys and kubeconfig those need, generated
  with the ``openssl`` CLI.

Everything listens on 127.0.0.1 on free ports. The binaries come from
``$PANGEO_TOOLS_DIR`` (default ``~/.cache/pangeo-cloud/bin``), where
``scripts/install-k8s-tools.sh`` builds them. All state (certificates,
kubeconfig, etcd data, one log file per component, ``state.json`` with pids
and ports) lives in ``$PANGEO_K8S_STATE`` (default
``~/.cache/pangeo-cloud/k8s``), never in the repository.

A plane whose processes are still alive in the state directory is reused
rather than started again; each component runs in its own process group,
which :meth:`ControlPlane.stop` kills.

For people::

    python -m pangeo_cloud.testing.k8s start    # start, or reuse a running plane
    python -m pangeo_cloud.testing.k8s status
    python -m pangeo_cloud.testing.k8s stop
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.ports import free_ports
from pangeo_cloud.toolcache import k8s_state_dir, tools_dir

INSTALL_SCRIPT = "scripts/install-k8s-tools.sh"

#: Binaries the plane needs, in start order (kubectl is for tests and people).
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
)
#: Components started as long-running processes, in start order.
#: kwok's node and pod stages, written next to the binaries by the install script.
KWOK_STAGES = "kwok-stages.yaml"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def default_state_dir() -> Path:
    """Where the plane keeps certificates, kubeconfig, etcd data and logs."""
    return k8s_state_dir()


def missing_binaries(directory: Path | None = None) -> list[str]:
    """Names of required binaries (and kwok's stages) absent in ``directory``."""
    directory = directory or tools_dir()
    missing = [b for b in BINARIES if not os.access(directory / b, os.X_OK)]
    if not (directory / KWOK_STAGES).is_file():
        missing.append(KWOK_STAGES)
    return missing


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or did not become ready."""


@dataclass(frozen=True)
class NodeSpec:
    """A node simulated by kwok."""

    name: str
    zone: str
    cpu: str = "16"
    memory: str = "64Gi"
    pods: str = "110"
    labels: dict[str, str] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": self.name,
                    "topology.kubernetes.io/region": "loopback",
                    "topology.kubernetes.io/zone": self.zone,
                    **self.labels,
                },
            },
            "status": {"allocatable": resources, "capacity": resources},
        }


DEFAULT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("kwok-node-0", zone="zone-a"),
    NodeSpec("kwok-node-1", zone="zone-b"),
)


def _pid_is(pid: int, binary: str) -> bool:
    """True if ``pid`` is a live (non-zombie) process running ``binary``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and bool(cmdline) and cmdline[0].endswith(binary.encode())


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ControlPlaneError(f"openssl not found on PATH (run {INSTALL_SCRIPT})")
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


class ControlPlane:
    """One loopback control plane, identified by its state directory.

    ``start()`` reuses a plane already running from the same state directory;
    ``started_here`` tells whether this object started it (and so whether a
    test session should stop it).
    """

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        binaries_dir: Path | str | None = None,
        nodes: Sequence[NodeSpec] = DEFAULT_NODES,
        timeout: float = 180.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.binaries_dir = Path(binaries_dir) if binaries_dir else tools_dir()
        self.nodes = tuple(nodes)
        self.timeout = timeout
        self.started_here = False
        self.timings: dict[str, float] = {}
        self._log = log or (lambda _msg: None)
        self._state: dict[str, Any] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- paths ------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def server(self) -> str:
        self._load_state()
        return f"https://127.0.0.1:{self._state['ports']['apiserver']}"

    def _bin(self, name: str) -> str:
        return str(self.binaries_dir / name)

    # -- state ------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        if not self._state and self._state_file.exists():
            self._state = json.loads(self._state_file.read_text())
        return self._state

    def _save_state(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=2, sort_keys=True))
        tmp.replace(self._state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop between processes sharing the state dir."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _alive_components(self) -> dict[str, bool]:
        pids = self._load_state().get("pids", {})
        return {c: (c in pids and _pid_is(pids[c], c)) for c in COMPONENTS}

    def is_running(self) -> bool:
        """All components alive and the API server answers ``/readyz``."""
        self._state = {}
        if not self._load_state():
            return False
        if not all(self._alive_components().values()):
            return False
        try:
            status, body = self.request("GET", "/readyz", raw=True)
        except OSError:
            return False
        return status == 200 and body.strip() == b"ok"

    def status(self) -> dict[str, Any]:
        self._state = {}
        state = self._load_state()
        return {
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.kubeconfig),
            "server": f"https://127.0.0.1:{state['ports']['apiserver']}" if state else None,
            "components": self._alive_components() if state else {},
            "ready": self.is_running(),
        }

    # -- talking to the API server ----------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def request(
        self, method: str, path: str, body: Any = None, *, raw: bool = False
    ) -> tuple[int, Any]:
        """One authenticated request as cluster-admin; returns (status, json|bytes)."""
        port = self._load_state()["ports"]["apiserver"]
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, context=self._ssl_context(), timeout=10
        )
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if raw:
            return resp.status, payload
        return resp.status, (json.loads(payload) if payload else None)

    @property
    def discovery_cache(self) -> Path:
        """kubectl's discovery cache for this plane (not the user's ~/.kube/cache)."""
        return self.state_dir / "kubectl-cache"

    def forget_discovery(self) -> None:
        """Drop kubectl's cached discovery, after a served API version was removed.

        kubectl keeps discovery on disk for hours and trusts it while the
        resource is listed there: after a CRD version it cached as preferred is
        removed, ``kubectl get <resource>`` keeps asking for that version and
        gets 404 although the API server serves the resource in another one.
        """
        shutil.rmtree(self.discovery_cache, ignore_errors=True)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this plane (its discovery in :attr:`discovery_cache`)."""
        proc = subprocess.run(
            [
                self._bin("kubectl"),
                "--kubeconfig",
                str(self.kubeconfig),
                "--cache-dir",
                str(self.discovery_cache),
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
            )
        return proc

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> bool:
        """Start the plane, or reuse a running one. Returns True if started here."""
        t0 = time.monotonic()
        with self._locked():
            if self.is_running():
                self._log(f"reusing the control plane at {self.server} ({self.state_dir})")
                self.timings["reuse"] = time.monotonic() - t0
                return False
            missing = missing_binaries(self.binaries_dir)
            if missing:
                raise ControlPlaneError(
                    f"missing {', '.join(missing)} in {self.binaries_dir}; run {INSTALL_SCRIPT}"
                )
            self._stop_locked()  # leftovers of a half-dead plane
            try:
                self._start_locked()
            except BaseException:
                self._stop_locked()
                raise
        self.started_here = True
        self.timings["total"] = time.monotonic() - t0
        self._log(f"control plane ready in {self.timings['total']:.1f}s at {self.server}")
        return True

    def stop(self) -> None:
        """Kill every component's process group and forget the pids."""
        with self._locked():
            self._stop_locked()

    def _phase(self, name: str, t0: float) -> None:
        self.timings[name] = time.monotonic() - t0
        self._log(f"  {name}: {self.timings[name]:.1f}s")

    def _start_locked(self) -> None:
        t = time.monotonic()
        for d in (self.pki, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self._ensure_certs()
        etcd_client, etcd_peer, apiserver, kcm, sched, kwok = free_ports(6)
        self._state = {
            "ports": {
                "etcd": etcd_client,
                "etcd_peer": etcd_peer,
                "apiserver": apiserver,
                "controller_manager": kcm,
                "scheduler": sched,
                "kwok": kwok,
            },
            "pids": {},
            "started_at": time.time(),
        }
        self._write_kubeconfig()
        self._save_state()
        self._phase("certs", t)

        # A fresh start is a fresh cluster: etcd data does not survive.
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
        self._spawn("etcd", self._etcd_args())
        self._wait(f"etcd on :{etcd_client}", lambda: self._etcd_healthy(etcd_client), "etcd")
        self._phase("etcd", t)

        self._spawn("kube-apiserver", self._apiserver_args())
        self._wait("kube-apiserver /readyz", self._readyz, "kube-apiserver")
        self._phase("kube-apiserver", t)

        self._spawn("kube-controller-manager", self._controller_manager_args())
        self._spawn("kube-scheduler", self._scheduler_args())
        self._spawn("kwok", self._kwok_args())
        self._create_nodes()
        self._wait("nodes Ready", self._nodes_ready, "kwok")
        self._phase("nodes", t)
        self._wait(
            "the default ServiceAccount (controller-manager)",
            lambda: (
                self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
            ),
            "kube-controller-manager",
        )
        self._phase("controllers", t)

    def _stop_locked(self) -> None:
        self._state = {}
        state = self._load_state()
        pids: dict[str, int] = state.get("pids", {}) if state else {}
        for name in reversed(COMPONENTS):
            pid = pids.get(name)
            if pid is None or not _pid_is(pid, name):
                continue
            self._kill_group(name, pid)
        self._procs.clear()
        if state:
            state["pids"] = {}
            self._save_state()

    def _kill_group(self, name: str, pid: int) -> None:
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                proc = self._procs.get(name)
                if proc is not None:
                    proc.poll()  # reap our own children
                if not _pid_is(pid, name):
                    return
                time.sleep(0.1)

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(args)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                [self._bin(name), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,  # own process group, killed by stop()
            )
        finally:
            log.close()
        self._procs[name] = proc
        self._state["pids"][name] = proc.pid
        self._save_state()
        self._log(f"  started {name} (pid {proc.pid}), log: {self.logs / (name + '.log')}")

    def _wait(self, what: str, check: Callable[[], bool], component: str) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            proc = self._procs.get(component)
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(
                    f"{component} exited with {proc.returncode} while waiting for {what}; "
                    f"last log lines:\n{self._tail(component)}"
                )
            try:
                if check():
                    return
            except (OSError, KeyError, ValueError, TypeError):
                pass
            time.sleep(0.25)
        raise ControlPlaneError(
            f"timed out after {self.timeout:.0f}s waiting for {what}; "
            f"last lines of {component}.log:\n{self._tail(component)}"
        )

    def _tail(self, component: str, lines: int = 30) -> str:
        try:
            text = (self.logs / f"{component}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- readiness checks ---------------------------------------------------
    def _etcd_healthy(self, port: int) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return resp.status == 200 and json.loads(resp.read()).get("health") == "true"
        finally:
            conn.close()

    def _readyz(self) -> bool:
        status, body = self.request("GET", "/readyz", raw=True)
        return status == 200 and body.strip() == b"ok"

    def _create_nodes(self) -> None:
        for node in self.nodes:
            status, body = self.request("POST", "/api/v1/nodes", node.manifest())
            if status not in (201, 409):
                raise ControlPlaneError(f"creating node {node.name}: HTTP {status}: {body}")

    def _nodes_ready(self) -> bool:
        status, body = self.request("GET", "/api/v1/nodes")
        if status != 200:
            return False
        ready = {
            item["metadata"]["name"]
            for item in body.get("items", [])
            for cond in item.get("status", {}).get("conditions", [])
            if cond.get("type") == "Ready" and cond.get("status") == "True"
        }
        return all(n.name in ready for n in self.nodes)

    # -- certificates and kubeconfig ----------------------------------------
    def _ensure_certs(self) -> None:
        pki = self.pki
        if all((pki / f).exists() for f in ("ca.crt", "apiserver.crt", "admin.crt", "sa.pub")):
            return
        for f in pki.iterdir():
            f.unlink()
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=pangeo-cloud-loopback-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            cwd=pki,
        )  # fmt: skip
        sans = ",".join(
            [
                "IP:127.0.0.1",
                f"IP:{SERVICE_IP}",
                "DNS:localhost",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ]
        )
        self._signed_cert("apiserver", "/CN=kube-apiserver", "serverAuth", sans)
        self._signed_cert("admin", "/O=system:masters/CN=pangeo-cloud-admin", "clientAuth")
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
        for key in pki.glob("*.key"):
            key.chmod(0o600)

    def _signed_cert(self, name: str, subject: str, usage: str, sans: str | None = None) -> None:
        pki = self.pki
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
        ]
        if sans:
            ext.append(f"subjectAltName={sans}")
        (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", subject, cwd=pki,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650",
            "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=pki,
        )  # fmt: skip

    def _write_kubeconfig(self) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        server = f"https://127.0.0.1:{self._state['ports']['apiserver']}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "pangeo-loopback",
                    "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "pangeo-admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "pangeo-loopback",
                    "context": {"cluster": "pangeo-loopback", "user": "pangeo-admin"},
                }
            ],
            "current-context": "pangeo-loopback",
        }
        # JSON is valid YAML, and kubectl/client-go read it as a kubeconfig.
        tmp = self.kubeconfig.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.kubeconfig)

    # -- component command lines ------------------------------------------
    def _etcd_args(self) -> list[str]:
        p = self._state["ports"]
        client, peer = f"http://127.0.0.1:{p['etcd']}", f"http://127.0.0.1:{p['etcd_peer']}"
        return [
            "--name=loopback",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=loopback={peer}",
            "--unsafe-no-fsync",  # test data: speed over durability
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        p, pki = self._state["ports"], self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={p['apiserver']}",
            f"--cert-dir={self.state_dir / 'apiserver'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            # Endpoints may not hold loopback addresses, so the reconciler of the
            # `kubernetes` Service could only log errors here.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ]

    def _component_common(self, port_key: str, name: str) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self._state['ports'][port_key]}",
            f"--cert-dir={self.state_dir / name}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    def _controller_manager_args(self) -> list[str]:
        pki = self.pki
        return [
            *self._component_common("controller_manager", "kube-controller-manager"),
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=false",
        ]

    def _scheduler_args(self) -> list[str]:
        return self._component_common("scheduler", "kube-scheduler")

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.binaries_dir / KWOK_STAGES}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{self._state['ports']['kwok']}",
        ]


@contextlib.contextmanager
def session_plane() -> Iterator[ControlPlane]:
    """The plane for a pytest session (the ``k8s_cluster`` fixtures).

    Skips, naming the script to run, when the binaries have not been built;
    fails when they are there but the plane does not start; stops the plane at
    the end only if it was started here (a plane from ``make k8s-up`` stays).
    """
    import pytest

    missing = missing_binaries()
    if missing:
        pytest.skip(
            f"loopback Kubernetes binaries missing in {tools_dir()}: {', '.join(missing)}; "
            f"build them with {INSTALL_SCRIPT} (or `make k8s-tools`)"
        )
    if shutil.which("openssl") is None:
        pytest.skip(f"openssl not on PATH (needed for the certificates); run {INSTALL_SCRIPT}")
    plane = ControlPlane()
    try:
        plane.start()
    except ControlPlaneError as exc:
        pytest.fail(f"loopback control plane did not start: {exc}", pytrace=False)
    try:
        yield plane
    finally:
        if plane.started_here:
            plane.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pangeo_cloud.testing.k8s",
        description="Start, inspect or stop the loopback Kubernetes control plane.",
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", type=Path, default=None, help="default: $PANGEO_K8S_STATE")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)

    plane = ControlPlane(args.state_dir, timeout=args.timeout, log=lambda m: print(m, flush=True))
    if args.command == "start":
        try:
            started = plane.start()
        except ControlPlaneError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        total = plane.timings.get("total" if started else "reuse", 0.0)
        print(f"{'started' if started else 'reused'} in {total:.1f}s")
        print(f"export KUBECONFIG={plane.kubeconfig}")
        return 0
    if args.command == "stop":
        plane.stop()
        print(f"stopped (state kept in {plane.state_dir})")
        return 0
    status = plane.status()
    print(json.dumps(status, indent=2))
    return 0 if status["ready"] else 3


if __name__ == "__main__":
    sys.exit(main())
