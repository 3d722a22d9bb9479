"""(b) Every dashboard query runs on a real Prometheus scraping a real hub.

The hub is JupyterHub configured from gcp-us-central1-b's production values
(the harness of tests/integration/hub), including the monitoring wiring the
support release relies on: the service `prometheus` whose role grants
`read:metrics` only. A real Prometheus (pangeo_cloud.local.prometheus)
scrapes its /hub/metrics with that service's token and the target labels the
support release's scrape configuration gives (deployment, stage). One user
logs in through the GitHub stand-in and starts a server, so that the login
and spawn series exist. Then every panel query and every variable query of
every dashboard, with Grafana's variables replaced by concrete values, is run:
none may be refused, and the hub's series come back non-empty.

The same hub also plays the other side of Grafana's login (part (d)): Grafana's
generic OAuth flow, with the support release's generated settings, against
the hub's service `grafana` from the prod values: a hub admin gets Grafana's
Admin role; the hub refuses anyone else.

Test-only differences: JupyterHub's SimpleLocalProcessSpawner instead of
KubeSpawner (no Kubernetes here), a 1 s scrape interval instead of 1 min, and
active users counted every second instead of every hour.
Series of kube-state-metrics, node-exporter and the gateway are absent here:
their queries must still be accepted (they return nothing).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from repo_support import REPO_ROOT as REPO
from wait_support import wait_for

from pangeo_cloud.config import Paths, dashboards, load_deployment
from pangeo_cloud.config.layering import merge_all, support_layers
from pangeo_cloud.config.support import scrape_configs
from pangeo_cloud.config.support_checks import grafana_attribute
from pangeo_cloud.local.prometheus import (
    PrometheusServer,
    ScrapeTarget,
    find_prometheus,
)
from pangeo_cloud.ports import free_ports
from pangeo_cloud.testing.github import GitHubStandIn

# The hub harness is shared with tests/integration/hub (a plain module there).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from hub_process_support import Hub, deployment_hub_values, launch_hub, page_text  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_prometheus() is None, reason="prometheus not installed (make system installs it)"
    ),
]

DEPLOYMENT, STAGE = "gcp-us-central1-b", "prod"
USER = "dana"
ADMIN = "olga"
DASHBOARDS = REPO / "helm-chart" / "support" / "files" / "dashboards"
# Values for the dashboards' own variables (Grafana's built-ins: pangeo_cloud.config.dashboards).
VARIABLES = {"deployment": DEPLOYMENT, "stage": STAGE, "user": ".*", "datasource": "prometheus"}

# A server is a real jupyterhub-singleuser process in a home under the test's directory.
AFTER_ENTRY = """
import os, sys
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(settings["dir"], "homes", "{username}")
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.default_url = "/api/status"
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []  # test containers run as root
# JupyterHub counts active users once an hour by default; a test cannot wait that long.
c.PeriodicMetricsCollector.active_users_update_interval = 1
"""


@pytest.fixture(scope="module")
def values() -> dict:
    # No overrides: the services and roles are the deployment's (tokens random here).
    return deployment_hub_values(DEPLOYMENT, STAGE)


@pytest.fixture(scope="module")
def github(values) -> Iterator[GitHubStandIn]:
    team = values["hub"]["config"]["GitHubOAuthenticator"]["allowed_organizations"][0]
    admins = values["custom"]["pangeo"]["auth"]["adminTeams"]
    with GitHubStandIn(client_id="pangeo-test-client") as github:
        github.add_user(USER, teams=[team])
        # A member of the deployment's admin team: a hub admin.
        github.add_user(ADMIN, teams=admins)
        yield github


def login(hub: Hub, github: GitHubStandIn, name: str) -> httpx.Client:
    """A browser session of `name` on the hub, logged in through the GitHub stand-in."""
    client = httpx.Client(follow_redirects=True, timeout=30)
    github.next_user = name
    r = client.get(f"{hub.url}/hub/oauth_login", params={"next": "/hub/home"})
    assert r.status_code == 200 and r.url.path == "/hub/home", r.text
    return client


@pytest.fixture(scope="module")
def hub(values, github, tmp_path_factory) -> Iterator[Hub]:
    hub = launch_hub(
        tmp_path_factory.mktemp("metrics-hub"),
        values,
        spawner_class="jupyterhub.spawner.SimpleLocalProcessSpawner",
        github_url=github.url,
        after_entry=AFTER_ENTRY,
    )
    try:
        login(hub, github, USER).close()
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def metrics_token(values) -> str:
    """The token of the hub's `prometheus` service, as the support release holds it."""
    return values["hub"]["services"]["prometheus"]["apiToken"]


@pytest.fixture(scope="module")
def prometheus(hub, metrics_token, tmp_path_factory) -> Iterator[PrometheusServer]:
    deployment = load_deployment(DEPLOYMENT, Paths.discover(REPO))
    job = next(j for j in scrape_configs(deployment) if j["job_name"] == f"jupyterhub-{STAGE}")
    labels = job["static_configs"][0]["labels"]
    target = ScrapeTarget(
        "jupyterhub", f"{hub.url}{job['metrics_path']}", metrics_token, labels=labels
    )
    (port,) = free_ports(1)
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), port, [target], interval_s=1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _start(hub: Hub) -> None:
    r = hub.api("POST", f"/users/{USER}/server")
    assert r.status_code in (201, 202), r.text
    hub.wait_for(
        lambda: (hub.user(USER)["servers"].get("") or {}).get("ready"),
        120,
        f"{USER}'s server to be ready",
    )


@pytest.fixture(scope="module")
def activity(hub, prometheus) -> None:
    """Two spawns while Prometheus scrapes: a counter's increase needs two samples
    of different values, so the range panels (median spawn) have data."""
    count = (
        f'sum(jupyterhub_server_spawn_duration_seconds_count{{job="jupyterhub", '
        f'stage="{STAGE}", status="success"}})'
    )

    def scraped(n: int):
        return lambda: [s for s in prometheus.query(count) if float(s["value"][1]) >= n]

    _start(hub)
    wait_for("the first spawn in Prometheus", scraped(1), 120)
    assert hub.api("DELETE", f"/users/{USER}/server").status_code in (202, 204)
    hub.wait_for(lambda: "" not in hub.user(USER)["servers"], 60, "the server to stop")
    _start(hub)
    wait_for("the second spawn in Prometheus", scraped(2), 120)


def test_the_prometheus_token_reads_metrics_and_nothing_else(hub, metrics_token):
    auth = {"Authorization": f"token {metrics_token}"}
    assert httpx.get(f"{hub.url}/hub/metrics", headers=auth).status_code == 200
    assert httpx.get(f"{hub.url}/hub/metrics").status_code == 403
    assert httpx.get(f"{hub.url}/hub/api/users", headers=auth).status_code == 403


def test_every_dashboard_query_is_accepted_and_hub_series_are_returned(hub, prometheus, activity):
    selector = f'{{deployment="{DEPLOYMENT}", stage="{STAGE}", job="jupyterhub"}}'
    wait_for(
        "the running server in Prometheus",
        lambda: [
            s
            for s in prometheus.query(f"jupyterhub_running_servers{selector}")
            if s["value"][1] == "1"
        ],
        120,
    )
    wait_for(
        "the active user in Prometheus",
        lambda: [
            s
            for s in prometheus.query(f'jupyterhub_active_users{selector[:-1]}, period="24h"}}')
            if float(s["value"][1]) >= 1
        ],
        120,
    )
    results: dict[tuple[str, str, str], list] = {}
    failures = []
    for path in dashboards.dashboard_files(DASHBOARDS):
        dashboard = dashboards.load(path)
        for q in dashboards.queries(dashboard) + dashboards.variable_queries(dashboard):
            promql = dashboards.substitute(q.expr, VARIABLES)
            try:
                results[(q.dashboard, q.panel, q.ref_id)] = prometheus.query(promql)
            except Exception as exc:  # collect all refusals, then fail once
                failures.append(f"{q.dashboard} / {q.panel} / {q.ref_id}: {exc}")
    assert failures == []
    assert len(results) >= 30

    def value(uid: str, panel: str, ref: str = "A") -> float:
        series = results[(uid, panel, ref)]
        assert series, f"{uid} / {panel}: no series"
        return sum(float(s["value"][1]) for s in series)

    assert value("pangeo-hub-activity", "Running servers") == 1
    assert value("pangeo-hub-activity", "Active users (24 h)") >= 1
    assert value("pangeo-hub-activity", "Users") >= 1
    # The login handler regex matches the real GitHub callback's handler label.
    assert results[("pangeo-hub-activity", "Logins per hour", "A")]
    assert results[("pangeo-spawns", "Spawns by outcome", "A")]
    assert value("pangeo-spawns", "Median spawn (range)") > 0
    # The stage variable's own query finds the stage.
    stages = results[("pangeo-hub-activity", "variable stage", "stage")]
    assert {s["metric"]["stage"] for s in stages} == {STAGE}


# --- (d) Grafana's login, played against the same real hub --------------------------


def grafana_login(hub: Hub, github: GitHubStandIn, name: str, values: dict) -> dict:
    """Grafana's generic_oauth flow for `name`, with the support release's settings.

    The endpoints are the generated ones with the public host replaced by this
    hub's loopback address (their paths are kept); the client is the hub's
    service `grafana` from the prod values, its secret that service's token.
    Returns the user model Grafana maps to a role, or the hub's refusal.
    """
    deployment = load_deployment(DEPLOYMENT, Paths.discover(REPO))
    support = merge_all(support_layers(deployment, paths=Paths.discover(REPO)))
    ini = support["grafana"]["grafana.ini"]
    oauth = ini["auth.generic_oauth"]

    def here(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        assert parts.netloc == deployment.stages[STAGE].domain, url
        return hub.url + parts.path

    redirect_uri = ini["server"]["root_url"] + "login/generic_oauth"
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    browser = login(hub, github, name)
    try:
        r = browser.get(
            here(oauth["auth_url"]),
            params={
                "client_id": oauth["client_id"],
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": oauth["scopes"],
                "state": "grafana-state",
                "code_challenge": challenge.decode().rstrip("="),
                "code_challenge_method": "S256",
            },
            follow_redirects=False,
        )
    finally:
        browser.close()
    if r.status_code == 403:
        return {"refused": page_text(r)}
    # No consent page (oauth_no_confirm): straight back to Grafana with a code.
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
    assert query["state"] == ["grafana-state"]
    client_secret = values["hub"]["services"]["grafana"]["apiToken"]
    r = httpx.post(
        here(oauth["token_url"]),
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": redirect_uri,
            "client_id": oauth["client_id"],
            "client_secret": client_secret,
            "code_verifier": verifier,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    # What Grafana's token may do: read who the user is, nothing else.
    assert httpx.get(f"{hub.url}/hub/api/users", headers=auth, timeout=30).status_code == 403
    r = httpx.get(here(oauth["api_url"]), headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    return {"model": r.json(), "role_path": oauth["role_attribute_path"]}


def test_grafana_admits_hub_admins_through_the_hubs_oauth(hub, github, values):
    admin = grafana_login(hub, github, ADMIN, values)
    assert admin["model"]["name"] == ADMIN and admin["model"]["admin"] is True
    assert grafana_attribute(admin["role_path"], admin["model"]) == "Admin"


def test_grafana_login_of_other_hub_users_is_refused_by_the_hub(hub, github, values):
    # Users lack access:services!service=grafana: the hub refuses at the authorize
    # step. (Were they let through, Grafana's strict role mapping gives them no
    # role and refuses them too: tests/unit/config/test_support_release.py.)
    user = grafana_login(hub, github, USER, values)
    assert "You do not have permission to access JupyterHub service grafana" in user["refused"]
