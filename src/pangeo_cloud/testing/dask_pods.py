"""The Dask pods the real dask-gateway would create from a rendered chart (for tests).

Dask scheduler and worker pods are not in the chart's manifests: the gateway
turns a user's cluster options into a cluster config (the chart's gateway
ConfigMap, with our generated extraConfig: the options handler and the image
allowlist), and the controller turns that config into pod specs
(``KubeController.make_pod``). :func:`dask_pods` runs exactly those two steps,
from the rendered ConfigMaps, in a fresh Python process (the extraConfig
installs our gateway modules from the embedded sources, as in the gateway pod),
so tests can check the pods' security settings and labels, or create them on a
control plane.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

CONFIG_KEY = "dask_gateway_config.py"

_SCRIPT = """
import asyncio, json, sys
from traitlets.config import Config

data = json.loads(sys.stdin.read())
c = Config()
exec(compile(data["gateway"], "gateway/dask_gateway_config.py", "exec"),
     {"c": c, "__file__": "/nonexistent/dask_gateway_config.py"})
exec(compile(data["controller"], "controller/dask_gateway_config.py", "exec"), {"c": c})

# A stand-in for the hub's token endpoint (POST /users/<name>/tokens): the
# options handler asks the hub for the workers' broker-only token; what is
# built here is the pod spec, not that token.
import http.server, os, threading

class _Hub(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"token": "stand-in-worker-token"}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
threading.Thread(target=hub.serve_forever, daemon=True).start()
os.environ["JUPYTERHUB_API_URL"] = "http://127.0.0.1:%d/hub/api" % hub.server_address[1]
os.environ["JUPYTERHUB_API_TOKEN"] = "stand-in-gateway-token"

from dask_gateway_server.backends.base import Backend
from dask_gateway_server.backends.kubernetes.controller import KubeController
from dask_gateway_server.models import User
from traitlets.utils.importstring import import_item

backend_class = import_item(c.DaskGateway.backend_class)
backend = Backend(config=c, cluster_config_class=backend_class.cluster_config_class.default_value)
user = User(data["user"], groups=[])
try:
    _, config = asyncio.run(backend.process_cluster_options(user, data["options"]))
except Exception as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
controller = KubeController(config=c)
ns, name = data["namespace"], data["cluster"]
print(json.dumps({
    "scheduler": controller.make_pod(ns, name, config),
    "worker": controller.make_pod(ns, name, config, is_worker=True),
}))
"""


def _config_maps(manifests: list[dict[str, Any]]) -> dict[str, str]:
    """The gateway's and the controller's dask_gateway_config.py."""
    found = {}
    for doc in manifests:
        if doc.get("kind") != "ConfigMap" or CONFIG_KEY not in (doc.get("data") or {}):
            continue
        text = doc["data"][CONFIG_KEY]
        found["controller" if "c.KubeController.gateway_instance" in text else "gateway"] = text
    missing = {"gateway", "controller"} - set(found)
    if missing:
        raise ValueError(f"no dask-gateway {', '.join(sorted(missing))} ConfigMap in the manifests")
    return found


def dask_pods(
    manifests: list[dict[str, Any]],
    *,
    namespace: str,
    user: str = "alice",
    cluster: str = "0123456789abcdef",
    options: dict[str, Any] | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """``{"scheduler": pod, "worker": pod}``, or ``{"error": message}`` if refused."""
    payload = {
        **_config_maps(manifests),
        "namespace": namespace,
        "user": user,
        "cluster": cluster,
        "options": options or {},
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the Dask pods failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
