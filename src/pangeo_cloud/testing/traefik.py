"""A stand-in for traefik's Kubernetes CRD provider, run as the traefik pod's process.

traefik v3 cannot be built here (its module is not served by the Go module
proxy this machine reaches), so the dask-gateway chart's traefik Deployment
runs this program instead, from its rendered pod spec (the kubelet stand-in
maps the traefik image to it), with traefik's own command line:

- ``--entrypoints.<name>.address=[HOST]:PORT``: one listener per entrypoint;
- ``--ping=true``: ``GET /ping`` answers ``OK`` on the ``traefik`` entrypoint;
- ``--providers.kubernetescrd.labelselector=...`` and
  ``--providers.kubernetescrd.namespaces=a,b``: which objects are read;
  other flags are accepted and ignored.

Every second it lists, with the pod's ServiceAccount (in-cluster config: the
token and CA under ``/var/run/secrets/kubernetes.io/serviceaccount``), the
``IngressRoute``, ``IngressRouteTCP`` and ``Middleware`` objects
(``traefik.io/v1alpha1``) and routes as traefik does:

- a connection to an entrypoint with TCP routes that starts with a TLS
  ClientHello is matched by its SNI against ``HostSNI(`name`)`` and passed
  through unchanged (``tls.passthrough``) to the service's endpoint;
- anything else is HTTP/1.1: the request goes to the route whose rule matches
  (``PathPrefix``, ``Path``, ``Host`` joined by ``&&``; the longest rule wins,
  traefik's default priority), after its ``stripPrefix`` /
  ``stripPrefixRegex`` middlewares (with ``X-Forwarded-Prefix``), with
  ``X-Forwarded-For/-Host/-Proto`` added; no route: 404.

Backends are the Service's ready endpoints (EndpointSlices), as traefik uses
them, so headless Services work. What differs from traefik, on purpose: one
request per client connection (``Connection: close`` is sent upstream; clients
open a new connection per request), no TLS termination, no other rule forms,
middlewares or providers. Standard library only: it runs as a script in the
pod, where pangeo_cloud is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
GROUP = "/apis/traefik.io/v1alpha1"
_RULE = re.compile(r"(PathPrefix|Path|Host|HostSNI)\(`([^`]*)`\)")


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} traefik-standin: {message}", flush=True)


class Cluster:
    """Reads the provider's objects and endpoints with the pod's ServiceAccount."""

    def __init__(self, selector: str, namespaces: list[str]) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        self.context = ssl.create_default_context(cafile=f"{SA_DIR}/ca.crt")
        self.selector, self.namespaces = selector, namespaces

    def get(self, path: str, **query: str) -> dict[str, Any]:
        with open(f"{SA_DIR}/token") as f:  # noqa: PTH123 - rotated by the kubelet
            token = f.read().strip()
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, context=self.context, timeout=10) as resp:
            return json.load(resp)

    def objects(self, group_path: str, kind: str) -> list[dict[str, Any]]:
        query = {"labelSelector": self.selector} if self.selector else {}
        if not self.namespaces:
            return self.get(f"{group_path}/{kind}", **query).get("items") or []
        out: list[dict[str, Any]] = []
        for ns in self.namespaces:
            out += self.get(f"{group_path}/namespaces/{ns}/{kind}", **query).get("items") or []
        return out

    def endpoint(self, namespace: str, name: str, port: Any) -> tuple[str, int] | None:
        """A ready endpoint of Service ``namespace/name`` for its port ``port`` (number/name)."""
        service = self.get(f"/api/v1/namespaces/{namespace}/services/{name}")
        ports = service["spec"].get("ports") or []
        match = next((p for p in ports if port in (p.get("port"), p.get("name"))), None)
        if match is None:
            return None
        slices = self.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            labelSelector=f"kubernetes.io/service-name={name}",
        )
        for sl in slices.get("items") or []:
            target = next(
                (
                    p
                    for p in sl.get("ports") or []
                    if (p.get("name") or "") == match.get("name", "")
                ),
                None,
            )
            if target is None:
                continue
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") and ep.get("addresses"):
                    return ep["addresses"][0], int(target["port"])
        return None


class Routes:
    """The routing table, refreshed from the cluster (see :meth:`refresh`)."""

    def __init__(self) -> None:
        self.http: list[dict[str, Any]] = []  # entrypoints, rule, terms, services, middlewares
        self.tcp: list[dict[str, Any]] = []  # entrypoints, sni, services
        self.middlewares: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()

    def refresh(self, cluster: Cluster) -> None:
        http, tcp, middlewares = [], [], {}
        for mw in cluster.objects(GROUP, "middlewares"):
            middlewares[(mw["metadata"]["namespace"], mw["metadata"]["name"])] = mw["spec"]
        for obj in cluster.objects(GROUP, "ingressroutes"):
            ns = obj["metadata"]["namespace"]
            for route in obj["spec"].get("routes") or []:
                terms = _terms(route.get("match", ""))
                if terms is None:
                    log(f"ingressroute {ns}/{obj['metadata']['name']}: rule not served: {route}")
                    continue
                http.append(
                    {
                        "entrypoints": obj["spec"].get("entryPoints") or [],
                        "priority": route.get("priority") or len(route.get("match", "")),
                        "terms": terms,
                        "namespace": ns,
                        "services": route.get("services") or [],
                        "middlewares": route.get("middlewares") or [],
                    }
                )
        for obj in cluster.objects(GROUP, "ingressroutetcps"):
            ns = obj["metadata"]["namespace"]
            for route in obj["spec"].get("routes") or []:
                terms = _terms(route.get("match", "")) or []
                snis = [value for kind, value in terms if kind == "HostSNI"]
                tcp.append(
                    {
                        "entrypoints": obj["spec"].get("entryPoints") or [],
                        "sni": snis,
                        "namespace": ns,
                        "services": route.get("services") or [],
                    }
                )
        http.sort(key=lambda r: -r["priority"])
        with self.lock:
            self.http, self.tcp, self.middlewares = http, tcp, middlewares

    def match_http(self, entrypoint: str, host: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            routes = list(self.http)
        for route in routes:
            if route["entrypoints"] and entrypoint not in route["entrypoints"]:
                continue
            if all(_term_true(kind, value, host, path) for kind, value in route["terms"]):
                return route
        return None

    def match_sni(self, entrypoint: str, sni: str) -> dict[str, Any] | None:
        with self.lock:
            routes = list(self.tcp)
        for route in routes:
            if route["entrypoints"] and entrypoint not in route["entrypoints"]:
                continue
            if sni in route["sni"] or "*" in route["sni"]:
                return route
        return None

    def has_tcp(self, entrypoint: str) -> bool:
        with self.lock:
            return any(not r["entrypoints"] or entrypoint in r["entrypoints"] for r in self.tcp)

    def strip(self, route: dict[str, Any], path: str) -> tuple[str, str]:
        """(path after the route's strip middlewares, the stripped prefix)."""
        stripped = ""
        for ref in route["middlewares"]:
            key = (ref.get("namespace") or route["namespace"], ref["name"])
            with self.lock:
                spec = self.middlewares.get(key) or {}
            for prefix in (spec.get("stripPrefix") or {}).get("prefixes") or []:
                if path.startswith(prefix):
                    path, stripped = path[len(prefix) :], stripped + prefix
                    break
            for regex in (spec.get("stripPrefixRegex") or {}).get("regex") or []:
                if m := re.match(regex, path):
                    path, stripped = path[m.end() :], stripped + m.group(0)
                    break
        if not path.startswith("/"):
            path = "/" + path
        return path, stripped


def _terms(rule: str) -> list[tuple[str, str]] | None:
    """``A(`x`) && B(`y`)`` as [(A, x), (B, y)]; None for anything else."""
    terms = []
    for part in rule.split("&&"):
        m = _RULE.fullmatch(part.strip())
        if m is None:
            return None
        terms.append((m.group(1), m.group(2)))
    return terms


def _term_true(kind: str, value: str, host: str, path: str) -> bool:
    if kind == "PathPrefix":
        return path.startswith(value)
    if kind == "Path":
        return path == value
    if kind == "Host":
        return host.split(":")[0].lower() == value.lower()
    return False


# -- TLS ---------------------------------------------------------------------------


def client_hello_sni(sock: socket.socket) -> str | None:
    """The SNI of the TLS ClientHello waiting on ``sock`` (peeked: the bytes stay)."""
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = sock.recv(16384, socket.MSG_PEEK)
        if len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big"):
            break
        time.sleep(0.01)
    return _sni(data)


def _sni(record: bytes) -> str | None:
    try:
        body = record[5:]
        if body[0] != 1:  # handshake type: ClientHello
            return None
        pos = 4 + 2 + 32  # header, version, random
        pos += 1 + body[pos]  # session id
        pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
        pos += 1 + body[pos]  # compression methods
        end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
        while pos + 4 <= end:
            ext_type = int.from_bytes(body[pos : pos + 2], "big")
            length = int.from_bytes(body[pos + 2 : pos + 4], "big")
            if ext_type == 0:  # server_name: list length, type 0, name length, name
                name_len = int.from_bytes(body[pos + 7 : pos + 9], "big")
                return body[pos + 9 : pos + 9 + name_len].decode("ascii")
            pos += 4 + length
    except (IndexError, UnicodeDecodeError):
        return None
    return None


# -- proxying ------------------------------------------------------------------------


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def splice(client: socket.socket, upstream: socket.socket, first: bytes = b"") -> None:
    """Send ``first`` upstream, then copy both ways until both sides are done."""
    try:
        if first:
            upstream.sendall(first)
        other = threading.Thread(target=pipe, args=(client, upstream), daemon=True)
        other.start()
        pipe(upstream, client)
        other.join(60)
    finally:
        upstream.close()
        client.close()


def backend(cluster: Cluster, route: dict[str, Any]) -> tuple[str, int] | None:
    for service in route["services"]:
        ns = service.get("namespace") or route["namespace"]
        address = cluster.endpoint(ns, service["name"], service.get("port"))
        if address is not None:
            return address
    return None


def _reply(client: socket.socket, status: str, body: bytes) -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with contextlib.suppress(OSError):
        client.sendall(head.encode() + body)
    client.close()


def serve_http(
    client: socket.socket, peer: str, entrypoint: str, routes: Routes, cluster: Cluster, ping: bool
) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            client.close()
            return
        data += chunk
        if len(data) > 1 << 20:
            return _reply(client, "431 Request Header Fields Too Large", b"")
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = [tuple(h.split(":", 1)) for h in lines[1:] if ":" in h]
    host = next((v.strip() for k, v in headers if k.lower() == "host"), "")
    path, _, query = target.partition("?")
    if ping and path == "/ping":
        return _reply(client, "200 OK", b"OK")
    route = routes.match_http(entrypoint, host, path)
    if route is None:
        return _reply(client, "404 Not Found", b"404 page not found\n")
    address = backend(cluster, route)
    if address is None:
        return _reply(client, "503 Service Unavailable", b"no available server\n")
    new_path, stripped = routes.strip(route, path)
    upgrade = any(k.lower() == "connection" and "upgrade" in v.lower() for k, v in headers)
    kept = [
        (k, v)
        for k, v in headers
        if k.lower() not in ("x-forwarded-prefix", "x-forwarded-for")
        and (upgrade or k.lower() not in ("connection", "keep-alive"))
    ]
    forwarded = [("X-Forwarded-For", " " + peer), ("X-Forwarded-Host", " " + host)]
    forwarded.append(("X-Forwarded-Proto", " http"))
    if stripped:
        forwarded.append(("X-Forwarded-Prefix", " " + stripped))
    if not upgrade:
        forwarded.append(("Connection", " close"))
    request_line = f"{method} {new_path}{'?' + query if query else ''} {version}"
    out = "\r\n".join([request_line, *(f"{k}:{v}" for k, v in kept + forwarded)])
    try:
        upstream = socket.create_connection(address, timeout=10)
    except OSError:
        return _reply(client, "502 Bad Gateway", b"Bad Gateway\n")
    upstream.settimeout(None)
    splice(client, upstream, out.encode("latin-1") + b"\r\n\r\n" + rest)


def serve(
    client: socket.socket, peer: str, entrypoint: str, routes: Routes, cluster: Cluster, ping: bool
) -> None:
    try:
        first = client.recv(1, socket.MSG_PEEK)
        if first == b"\x16" and routes.has_tcp(entrypoint):
            sni = client_hello_sni(client) or ""
            route = routes.match_sni(entrypoint, sni)
            address = backend(cluster, route) if route else None
            if address is None:
                log(f"{entrypoint}: no TCP route or endpoint for SNI {sni!r}")
                client.close()
                return
            upstream = socket.create_connection(address, timeout=10)
            upstream.settimeout(None)
            splice(client, upstream)
        elif first:
            serve_http(client, peer, entrypoint, routes, cluster, ping)
        else:
            client.close()
    except Exception as exc:  # noqa: BLE001 - one connection's failure, logged
        log(f"{entrypoint}: connection from {peer}: {exc!r}")
        client.close()


def listen(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # "" is every address (the pod's, under the kubelet stand-in's bind shim).
    sock.bind((host or "0.0.0.0", int(port)))  # noqa: S104
    sock.listen(128)
    return sock


def accept_loop(
    sock: socket.socket, entrypoint: str, routes: Routes, cluster: Cluster, ping: bool
) -> None:
    while True:
        client, peer = sock.accept()
        args = (client, peer[0], entrypoint, routes, cluster, ping)
        threading.Thread(target=serve, args=args, daemon=True).start()


def parse_args(argv: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"entrypoints": {}, "ping": False, "selector": "", "namespaces": []}
    for arg in argv:
        key, _, value = arg.lstrip("-").partition("=")
        key = key.lower()
        if m := re.fullmatch(r"entrypoints\.([^.]+)\.address", key):
            opts["entrypoints"][m.group(1)] = value
        elif key == "ping":
            opts["ping"] = value.lower() in ("", "true")
        elif key == "providers.kubernetescrd.labelselector":
            opts["selector"] = value
        elif key == "providers.kubernetescrd.namespaces":
            opts["namespaces"] = [n for n in value.split(",") if n]
    return opts


def main(argv: list[str]) -> None:
    opts = parse_args(argv)
    if not opts["entrypoints"]:
        raise SystemExit("traefik-standin: no --entrypoints.<name>.address given")
    cluster, routes = Cluster(opts["selector"], opts["namespaces"]), Routes()
    for name, address in opts["entrypoints"].items():
        ping = opts["ping"] and name == "traefik"
        sock = listen(address)
        args = (sock, name, routes, cluster, ping)
        threading.Thread(target=accept_loop, args=args, daemon=True).start()
        log(f"entrypoint {name} on {address}")
    last = ""
    while True:
        try:
            routes.refresh(cluster)
            summary = f"{len(routes.http)} HTTP and {len(routes.tcp)} TCP routes"
            if summary != last:
                log(summary)
                last = summary
        except Exception as exc:  # noqa: BLE001 - keep serving the last table
            log(f"reading the provider's objects failed: {exc!r}")
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
