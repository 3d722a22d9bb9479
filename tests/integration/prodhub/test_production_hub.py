"""The production-hub tier: gcp and aws prod hubs, run from their rendered manifests.

For each stage, prodhub_support.production_hub renders the full chart (real
z2jh 4.4.0 and dask-gateway 2026.3.0 subcharts) through the project's own
render path, applies it to the loopback control plane and runs the hub, the
proxy, the user scheduler and user servers with the kubelet stand-in, each
from its pod spec (volumes, environment, command, user) in a private mount
namespace, so that z2jh's jupyterhub_config.py runs unmodified from the
ConfigMap at /usr/local/etc/jupyterhub. Nothing of the hub's configuration is
changed except the test layer that replaces the sops secrets (see
prodhub_support.test_values).

Then, as people and CI use it:

* a member of the deployment's first allowed team logs in through the GitHub
  stand-in, sees the profiles, starts the "small" one: KubeSpawner creates the
  claim and the pod, the user scheduler (real kube-scheduler, z2jh's config)
  places it on the user pool's node, the kubelet stand-in runs
  ``jupyterhub-singleuser`` at the pod's IP, and the server answers through
  the proxy with the user's cookie; the server is then stopped;
* ``pangeo-cloud health`` runs against the hub with the health-check token.

Skips (with the reason) without the subcharts in helm-chart/pangeo-cloud/charts/
(as in CI), without the kube binaries, without configurable-http-proxy, without MinIO, or
without root for mount namespaces and loopback addresses.
"""

from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from prodhub_support import (
    chp_missing,
    minio_missing,
    production_hub,
    run_health,
    subcharts_missing,
    wait_for,
)

from pangeo_cloud.deploy.health import STEPS
from pangeo_cloud.testing.kubelet import missing_privileges

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from hub_process_support import form_action, page_text  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.timeout(1500)]

STAGES = [("gcp-us-central1-b", "prod"), ("aws-us-west-2", "prod")]
USER = "alice-prod"
PROFILE = "small"


@pytest.fixture(scope="module", params=STAGES, ids=lambda s: "/".join(s))
def prod_hub(request, tmp_path_factory):
    for reason in (subcharts_missing(), chp_missing(), minio_missing(), missing_privileges()):
        if reason:
            pytest.skip(reason)
    plane = request.getfixturevalue("k8s_cluster")
    deployment, stage = request.param
    state = tmp_path_factory.mktemp(f"prodhub-{deployment}")
    with production_hub(plane, deployment, stage, state, log=lambda m: None) as hub:
        yield hub


def _api(hub, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(
        method,
        f"{hub.url}hub/api/{path}",
        # The test-only admin service: the health-check token reaches no real user.
        headers={"Authorization": f"token {hub.admin_token}"},
        timeout=30,
        **kw,
    )


def _pods(hub) -> list[dict[str, Any]]:
    out = hub.plane.kubectl("-n", hub.namespace, "get", "pods", "-o", "json").stdout
    return json.loads(out)["items"]


def test_team_member_logs_in_spawns_a_profile_and_reaches_the_server(prod_hub) -> None:
    hub = prod_hub
    hub_values = hub.values["jupyterhub"]
    team = hub_values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"][0]
    hub.github.add_user(USER, teams=[team])
    try:
        _login_and_spawn(hub, hub_values)
    finally:
        # Pods share this machine's network: the next test's server needs the port.
        _api(hub, "DELETE", f"users/{USER}/server")
        wait_for(
            "the user's pod to be deleted",
            lambda: not [p for p in _pods(hub) if p["metadata"]["name"] == f"jupyter-{USER}"],
            180,
            hub.kubelet,
        )


def _login_and_spawn(hub, hub_values: dict[str, Any]) -> None:
    client = httpx.Client(follow_redirects=True, timeout=60)
    with closing(client):
        hub.github.next_user = USER
        r = client.get(f"{hub.url}hub/oauth_login", params={"next": "/hub/spawn"})
        assert r.status_code == 200, f"{r.status_code}: {page_text(r)[:2000]}"
        assert r.url.path == "/hub/spawn", r.url
        text = page_text(r)
        for profile in hub_values["singleuser"]["profileList"]:
            if not profile.get("allowed_groups"):
                assert profile["display_name"] in text, profile["display_name"]

        r = client.post(form_action(r), data={"profile": PROFILE})
        assert r.status_code == 200, f"{r.status_code}: {page_text(r)[:2000]}"

        def ready() -> bool:
            server = (_api(hub, "GET", f"users/{USER}").json().get("servers") or {}).get("")
            assert server is not None, "the server stopped while starting:\n" + hub.logs("hub")
            return bool(server.get("ready"))

        wait_for("the user's server to be ready", ready, 300, hub.kubelet)

        # The browser's way in: the server's own OAuth with the hub, then its API.
        # (Polled: kwok reports the pod ready before the stand-in's process listens.)
        def lab() -> httpx.Response | None:
            page = client.get(f"{hub.url}user/{USER}/lab")
            return page if page.status_code == 200 else None

        page = wait_for("JupyterLab through the proxy", lab, 120, hub.kubelet)
        assert page.url.path == f"/user/{USER}/lab", page.url
        status = client.get(f"{hub.url}user/{USER}/api/status")
        assert status.status_code == 200, status.text
        assert "started" in status.json()

    pod = next(p for p in _pods(hub) if p["metadata"]["name"] == f"jupyter-{USER}")
    assert pod["spec"]["schedulerName"] == f"{hub.stage}-user-scheduler"
    node = json.loads(
        hub.plane.kubectl("get", "node", pod["spec"]["nodeName"], "-o", "json").stdout
    )
    labels = node["metadata"]["labels"]
    assert labels.items() >= hub_values["singleuser"]["nodeSelector"].items()


def test_health_check_passes_every_step(prod_hub) -> None:
    """`pangeo-cloud health` as CI runs it after a deploy, every step.

    The throw-away user through the REST API (with GitHub login,
    refresh_pre_spawn and the membership re-check on), its server through
    KubeSpawner, a kernel, the scratch bucket with the pod's cloud identity,
    and a Dask cluster through the rendered gateway: its api and controller
    Deployments run from their pod specs, the controller's scheduler and worker
    pods run real ``dask`` processes, and the client reaches them through the
    hub's proxy and the traefik stand-in (HTTP by path, the scheduler's TLS by SNI).
    """
    result = run_health(prod_hub, "--start-timeout", "300", "--exec-timeout", "300")
    out = result.stdout + result.stderr
    done = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("ok ")]
    if result.returncode != 0:
        logs = "".join(
            prod_hub.logs(prefix)
            for prefix in ("hub", "jupyter-health", "api-", "controller-", "traefik-", "dask-")
        )
        pytest.fail(out + "\n" + logs)
    assert done == [*STEPS, "cleanup"], out
    bucket = prod_hub.values["jupyterhub"]["custom"]["pangeo"]["scratch"]["url"]
    scratch = next(line for line in result.stdout.splitlines() if " scratch " in line)
    assert f"{bucket}/health-2dcheck-" in scratch, scratch
    if prod_hub.cloud == "gcp":
        # The broker downscoped its token at the STS stand-in, the chart's stsEndpoint.
        exchanges = prod_hub.identity.sts.exchanges
        assert [e for e in exchanges if e.status == 200], exchanges
    dask = next(line for line in result.stdout.splitlines() if " dask-gateway " in line)
    assert f"worker PANGEO_SCRATCH={bucket}/health-2dcheck-" in dask, dask
