"""The usage report against what a test did: a real `pangeo-cloud up` and its Prometheus.

One `up` of the local deployment (real JupyterHub, CHP, dask-gateway-server with
real scheduler and worker processes, MinIO, the broker, Debian's Prometheus
scraping them every second). The test starts servers for three users (one in
the ``operators`` group), a Dask cluster with a worker for one of them, writes
scratch bytes for one, and stops everything, noting when each server was seen
ready and seen gone. Then `pangeo-cloud usage local dev` (the CLI, as an
operator runs it) must report:

- each user's server-seconds equal to what the test observed, within one
  scrape interval (plus the uncertainty of the observation itself: the time
  between the last poll that saw the server not ready and the first that saw
  it ready, and the time the stop request took: the server is no longer
  "ready" from the moment its stop begins);
- Dask worker-hours for the user who ran a worker, and none for the others;
- the scratch bytes written; the group row; a cost from the price table;
- JSON and both plot formats written; and every bad input (unreachable
  Prometheus, an empty range, a node type without a price) as one line,
  exit 1, no plot file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pangeo_cloud.local import objectstore
from pangeo_cloud.local.prometheus import find_prometheus
from pangeo_cloud.ports import free_ports
from pangeo_cloud.testing.harness import HubUser, UpProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        find_prometheus() is None, reason="prometheus not installed (make system installs it)"
    ),
]

# Seconds between scrapes (PANGEO_SCRAPE_INTERVAL); also Prometheus' scrape timeout,
# so not shorter: on a loaded machine a 1 s timeout drops scrapes of a slow hub.
INTERVAL = 2
SCRATCH_BYTES = 123_457
REPO_ROOT = Path(__file__).resolve().parents[3]


def usage(data: Path, *args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pangeo_cloud.cli"]
    if root is not None:
        command += ["--root", str(root)]
    command += ["usage", "local", "dev", "--data-dir", str(data), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)


class Session:
    """One user's server, with the window in which it became ready and went away."""

    def __init__(self, up: UpProcess, name: str, password: str) -> None:
        self.user = HubUser(up.url, name, password)
        self.user.login()
        self.ready: tuple[float, float] | None = None  # (last poll not ready, first ready)
        self.gone: tuple[float, float] | None = None  # (DELETE sent, DELETE answered)

    def spawn(self, profile: str) -> None:
        self.user.spawn(profile)

    def wait_ready(self) -> None:
        before = time.time()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            model = self.user.server_model()
            now = time.time()
            if model and model.get("ready"):
                self.ready = (before, now)
                return
            before = now
            time.sleep(0.1)
        pytest.fail(f"the server of {self.user.name} was not ready within 240 s")

    def stop(self) -> None:
        """Stop the server; it stops being ready (a stop is pending) during the DELETE."""
        api = f"{self.user.base}/hub/api/users/{self.user.name}/server"
        before = time.time()
        resp = self.user.session.delete(
            api, headers={"X-XSRFToken": self.user._xsrf()}, timeout=120
        )
        assert resp.status_code in (202, 204), resp.text
        self.gone = (before, time.time())
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.user.server_model() is None:
                return
            time.sleep(0.1)
        pytest.fail(f"the server of {self.user.name} did not stop within 120 s")

    def seconds_range(self) -> tuple[float, float]:
        """Shortest and longest time the server can have been ready."""
        assert self.ready and self.gone
        return self.gone[0] - self.ready[1], self.gone[1] - self.ready[0]

    def token(self) -> str:
        resp = self.user.session.post(
            f"{self.user.base}/hub/api/users/{self.user.name}/tokens",
            headers={"X-XSRFToken": self.user._xsrf()},
            json={"note": "usage test", "expires_in": 3600},
            timeout=60,
        )
        resp.raise_for_status()
        return resp.json()["token"]


def run_dask_worker(up: UpProcess, token: str, seconds: float) -> None:
    from dask_gateway import Gateway
    from dask_gateway.auth import JupyterHubAuth

    rt = up.runtime
    gateway = Gateway(
        address=f"{up.url}services/dask-gateway",
        proxy_address=f"gateway://127.0.0.1:{rt['ports']['gateway']}",
        auth=JupyterHubAuth(api_token=token),
    )
    cluster = gateway.new_cluster()
    try:
        cluster.scale(1)
        with cluster.get_client() as client:
            client.wait_for_workers(1, timeout=180)
            assert client.submit(sum, [1, 2, 3]).result(timeout=60) == 6
            time.sleep(seconds)
    finally:
        cluster.shutdown()


def write_scratch(up: UpProcess, user: str) -> None:
    store = up.runtime["store"]
    client = objectstore.s3_client(
        store["endpoint"], store["access_key"], store["secret_key"], "us-east-1"
    )
    client.put_object(Bucket="pangeo-scratch", Key=f"{user}/data.bin", Body=b"x" * SCRATCH_BYTES)


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    from pangeo_cloud.local.runtime import LocalRuntimeError, find_proxy

    try:
        find_proxy()
    except LocalRuntimeError as exc:
        pytest.skip(str(exc))
    env = dict(os.environ, PANGEO_SCRAPE_INTERVAL=str(INTERVAL), PANGEO_SCRATCH_USAGE_CACHE="0")
    run = UpProcess(data_dir=tmp_path_factory.mktemp("usage") / "data", env=env)
    run.start(timeout=240)
    try:
        yield run
    finally:
        assert not run.stop(check=False), "pangeo-cloud up left processes alive"


@pytest.fixture(scope="module")
def sessions(up):
    """Servers for alice (small), olga (operators, medium) and bob (small); a worker for alice."""
    secrets = up.secrets
    alice = Session(up, "alice", secrets["user_password"])
    olga = Session(up, "olga", secrets["group_passwords"]["operators"])
    bob = Session(up, "bob", secrets["user_password"])
    alice.spawn("small")
    olga.spawn("medium")
    alice.wait_ready()
    olga.wait_ready()
    run_dask_worker(up, alice.token(), seconds=6)
    write_scratch(up, "alice")
    olga.stop()
    bob.spawn("small")
    bob.wait_ready()
    time.sleep(4)
    alice.stop()
    bob.stop()
    time.sleep(3 * INTERVAL)  # the last scrapes (the stale markers) are in
    return {"alice": alice, "olga": olga, "bob": bob}


def test_usage_report_matches_what_the_test_did(up, sessions, tmp_path):
    plot = tmp_path / "usage.png"
    result = usage(up.data_dir, "--since", "30m", "--format", "json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {row["key"]: row for row in report["rows"]}
    assert set(rows) >= {"alice", "olga", "bob"}, rows
    for name, session in sessions.items():
        shortest, longest = session.seconds_range()
        seconds = rows[name]["server_hours"] * 3600
        assert shortest - INTERVAL <= seconds <= longest + INTERVAL, (
            f"{name}: reported {seconds:.2f} s, observed {shortest:.2f}..{longest:.2f} s"
        )
    # Guarantees of the local profiles: small 0.5 CPU / 1G, medium 1 CPU / 2G (2**30 bytes per G).
    alice = rows["alice"]
    assert alice["cpu_hours"] == pytest.approx(
        0.5 * alice["server_hours"] + alice["dask_cpu_hours"]
    )
    olga = rows["olga"]
    assert olga["memory_gb_hours"] == pytest.approx(2 * 2**30 / 1e9 * olga["server_hours"])
    assert alice["dask_worker_hours"] > 0 and alice["dask_cpu_hours"] > 0
    assert rows["bob"]["dask_worker_hours"] == 0 and olga["dask_worker_hours"] == 0
    assert alice["scratch_bytes"] == SCRATCH_BYTES
    # A small server reserves max(0.5/2 CPU, 1 GiB/16 GiB) = 1/4 of the notional 0.10 USD/h node.
    assert rows["bob"]["cost"] == pytest.approx(0.10 / 4 * rows["bob"]["server_hours"])
    assert report["currency"] == "USD" and report["total"]["cost"] > 0
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_usage_by_group_profile_and_html_plot(up, sessions, tmp_path):
    by_group = usage(up.data_dir, "--since", "30m", "--by", "group")
    assert by_group.returncode == 0, by_group.stderr
    assert "operators" in by_group.stdout and "(no group)" in by_group.stdout
    html = tmp_path / "usage.html"
    by_profile = usage(
        up.data_dir, "--since", "30m", "--by", "profile", "--format", "json", "--plot", str(html)
    )
    assert by_profile.returncode == 0, by_profile.stderr
    rows = {row["key"]: row for row in json.loads(by_profile.stdout)["rows"]}
    by_user = usage(up.data_dir, "--since", "30m", "--format", "json")
    users = {row["key"]: row for row in json.loads(by_user.stdout)["rows"]}
    # Only olga ran a medium server.
    assert rows["medium"]["server_hours"] == pytest.approx(users["olga"]["server_hours"])
    assert rows["(dask workers)"]["dask_worker_hours"] > 0
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "alice" in page


def test_bad_input_is_one_line_and_writes_nothing(up, sessions, tmp_path, repo_copy, edit_yaml):
    plot = tmp_path / "never.png"
    (dead,) = free_ports(1)
    cases = {
        "cannot be reached": ["--prometheus", f"http://127.0.0.1:{dead}"],
        "the range is empty": ["--since", "0s"],
        "not a duration": ["--since", "soon"],
    }
    for expected, args in cases.items():
        result = usage(up.data_dir, *args, "--plot", str(plot))
        assert result.returncode == 1, (args, result.stdout)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not plot.exists() and not list(tmp_path.glob(".never.png*"))
    # Nothing recorded for another deployment's labels in this Prometheus: an empty range.
    prometheus = up.runtime["prometheus"]
    other = subprocess.run(
        [sys.executable, "-m", "pangeo_cloud.cli", "usage", "aws-us-west-2", "staging"]
        + ["--prometheus", prometheus, "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert other.returncode == 1 and "no usage recorded" in other.stderr, other.stderr
    assert not plot.exists()
    # The machine's node type loses its price (another, unused, type keeps one).
    deployment = repo_copy.deployments / "local" / "deployment.yaml"
    edit_yaml(deployment, "    nodeType: workstation\n", "    nodeType: unpriced\n")
    edit_yaml(
        deployment,
        "prices:\n",
        "  - name: spare\n    nodeType: workstation\n    cpu: 2\n    memory: 16Gi\nprices:\n",
    )
    unpriced = usage(up.data_dir, "--plot", str(plot), root=repo_copy.root)
    assert unpriced.returncode == 1, unpriced.stdout
    assert "node type 'unpriced'" in unpriced.stderr and "prices.perHour" in unpriced.stderr
    assert len(unpriced.stderr.strip().splitlines()) == 1 and not plot.exists()


def test_idle_running_cluster_is_named_in_report_and_on_home_page(up, sessions):
    """A cluster that ran no task: its owner is told, in the report and on the hub's home page."""
    from dask_gateway import Gateway
    from dask_gateway.auth import JupyterHubAuth

    carol = Session(up, "carol", up.secrets["user_password"])
    carol.spawn("small")
    carol.wait_ready()
    gateway = Gateway(
        address=f"{up.url}services/dask-gateway",
        proxy_address=f"gateway://127.0.0.1:{up.runtime['ports']['gateway']}",
        auth=JupyterHubAuth(api_token=carol.token()),
    )
    cluster = gateway.new_cluster()
    try:
        home = f"{up.url}hub/home"
        deadline = time.monotonic() + 180  # the hub asks Prometheus at most once a minute
        page = ""
        while time.monotonic() < deadline:
            page = carol.user.session.get(home, timeout=60).text
            if "has been idle" in page:
                break
            time.sleep(2)
        assert f"Your Dask cluster {cluster.name}" in page and "has been idle" in page
        table = usage(up.data_dir, "--since", "30m")
        assert table.returncode == 0, table.stderr
        assert f"Idle cluster: carol: Dask cluster {cluster.name} is running" in table.stdout
        # alice's cluster ran a task and is gone: she is not nudged.
        assert "Idle cluster: alice" not in table.stdout
    finally:
        cluster.shutdown()
        carol.stop()


def test_metrics_need_a_read_metrics_token(up, sessions):
    """The gateway's and the broker's metrics name users: only read:metrics tokens get them."""
    import requests

    rt = up.runtime
    endpoints = [
        f"{up.url}services/dask-gateway/metrics",
        f"http://127.0.0.1:{rt['ports']['broker']}/services/scratch-credentials/metrics",
    ]
    user_token = sessions["alice"].token()  # a user's token: no read:metrics
    metrics_token = up.secrets["metrics_token"]  # the `prometheus` service's
    for url in endpoints:
        assert requests.get(url, timeout=30).status_code == 401, url
        headers = {"Authorization": f"Bearer {user_token}"}
        assert requests.get(url, headers=headers, timeout=30).status_code == 403, url
        ok = requests.get(url, headers={"Authorization": f"Bearer {metrics_token}"}, timeout=30)
        assert ok.status_code == 200 and "pangeo_" in ok.text, url
