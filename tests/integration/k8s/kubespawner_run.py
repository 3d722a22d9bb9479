"""Start and stop one user server with the real KubeSpawner; print what the API server saw.

Run by test_kubespawner_on_cluster.py in its own process, because KubeSpawner
and kubernetes_asyncio keep process-wide state (the kubeconfig path read at
import, the cached client configuration, class-level reflectors) that must
neither leak into nor come from other tests of the session.

    python kubespawner_run.py --kubeconfig FILE --kubectl BIN --namespace NS \
        --deployment D --stage S --user NAME --profile SLUG --toleration JSON \
        --volume-name PV

The hub's configuration is built as the hub builds it: z2jh's mapping of the
stage's merged values (pangeo_cloud.hub.z2jh_values), then our configure().
Steps: JupyterHub's pre-start calls (options, pre_spawn_hook); create the
PersistentVolume for the claim KubeSpawner will create (pre-bound to it);
``start()``; snapshot pod and PVC; ``stop()``; snapshot again. One JSON
document on stdout; a failure exits 1 with the traceback on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import Any

START_TIMEOUT = 180


def kubectl(args: argparse.Namespace, *cmd: str, stdin: str | None = None) -> Any:
    result = subprocess.run(
        [args.kubectl, "--kubeconfig", args.kubeconfig, *cmd],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result


def get(args: argparse.Namespace, what: str) -> dict[str, Any] | None:
    result = kubectl(args, "-n", args.namespace, "get", what, "-o", "json")
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise RuntimeError(f"kubectl get {what}: {result.stderr}")
    return json.loads(result.stdout)


def broker_health_standin() -> str:
    """A stand-in for the broker's health endpoint (200), serving on loopback in a thread."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server API
            ok = self.path.endswith("/api/health")
            self.send_response(200 if ok else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ok", "scheme": "stand-in"}' if ok else b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/services/scratch-credentials/"


def hub_config(args: argparse.Namespace) -> Any:
    from traitlets.config import Config

    from pangeo_cloud.config import merged_values
    from pangeo_cloud.hub.config import configure
    from pangeo_cloud.hub.z2jh_values import apply_z2jh_values, values_get_config

    values = merged_values(args.deployment, args.stage)["jupyterhub"]
    # kwok runs no containers, so the broker's pod cannot answer the hub's
    # pre-spawn health check: a loopback stand-in answers it instead.
    values["custom"]["pangeo"]["scratch"]["broker"]["url"] = broker_health_standin()
    c = Config()
    get_config = values_get_config(values)
    apply_z2jh_values(c, get_config)
    configure(c, get_config)
    # Where the test cluster differs from the cloud's (see the test's docstring).
    c.KubeSpawner.namespace = args.namespace
    c.KubeSpawner.tolerations = [json.loads(args.toleration)]
    c.KubeSpawner.start_timeout = START_TIMEOUT
    c.KubeSpawner.k8s_api_request_retry_timeout = 60
    return c


def home_volume(args: argparse.Namespace, pvc_name: str, spawner: Any) -> dict[str, Any]:
    """A disk for the user's claim, pre-bound to it (a provisioner's job in the cloud)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": args.volume_name},
        "spec": {
            "capacity": {"storage": spawner.storage_capacity},
            "accessModes": list(spawner.storage_access_modes),
            "storageClassName": spawner.storage_class,
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": args.namespace, "name": pvc_name},
            "hostPath": {"path": f"/tmp/{args.volume_name}"},
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from kubespawner import KubeSpawner

    user = SimpleNamespace(
        name=args.user, id=7, url=f"/user/{args.user}/", escaped_name=args.user, groups=[]
    )
    hub = SimpleNamespace(
        public_host="",
        url="http://hub:8081/hub/",
        base_url="/hub/",
        api_url="http://hub:8081/hub/api",
    )
    spawner = KubeSpawner(config=hub_config(args), user=user, hub=hub)
    spawner.api_token = "loopback-token"
    out: dict[str, Any] = {"timings": {}}
    started = False
    try:
        # What JupyterHub does before start(): the form's options, the hook.
        spawner.user_options = {"profile": args.profile}
        await spawner._run_apply_user_options(spawner.user_options)
        await spawner.run_pre_spawn_hook()
        out["pvc_name"], out["pod_name"] = spawner.pvc_name, spawner.pod_name
        volume = home_volume(args, spawner.pvc_name, spawner)
        created = kubectl(args, "create", "-f", "-", stdin=json.dumps(volume))
        if created.returncode != 0:
            raise RuntimeError(f"creating the volume: {created.stderr}")

        t0 = time.monotonic()
        out["url"] = await asyncio.wait_for(spawner.start(), START_TIMEOUT + 30)
        started = True
        out["timings"]["start"] = round(time.monotonic() - t0, 2)
        out["port"] = spawner.port
        out["pod"] = get(args, f"pod/{spawner.pod_name}")
        out["pvc"] = get(args, f"pvc/{spawner.pvc_name}")

        t0 = time.monotonic()
        await asyncio.wait_for(spawner.stop(), START_TIMEOUT + 30)
        started = False
        out["timings"]["stop"] = round(time.monotonic() - t0, 2)
        out["pod_after_stop"] = get(args, f"pod/{spawner.pod_name}")
        out["pvc_after_stop"] = get(args, f"pvc/{spawner.pvc_name}")
    finally:
        if started:
            await asyncio.wait_for(spawner.stop(now=True), 60)
        await KubeSpawner._stop_all_reflectors()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in (
        "kubeconfig",
        "kubectl",
        "namespace",
        "deployment",
        "stage",
        "user",
        "profile",
        "toleration",
        "volume-name",
    ):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    # Before kubernetes_asyncio is imported: it reads $KUBECONFIG at import.
    os.environ["KUBECONFIG"] = args.kubeconfig
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
