"""The chart's scratch-credentials broker: what it ships, and that it runs from the ConfigMap alone.

Rendered with the real `helm` (`pangeo-cloud render`). The broker pod runs the
notebook image without our package: the test writes its ConfigMap into a
directory and starts the pod's command from it, as Kubernetes would, then asks
its health check, which must name the missing AWS credentials (there are none
here), or for gs:// the failed Google token exchange, instead of answering
with anything wider. For gs:// the client ConfigMap must hold exactly the
credentials file google_client.py would write.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from repo_support import REPO_ROOT

from pangeo_cloud.broker import google_client
from pangeo_cloud.deploy import helm
from pangeo_cloud.ports import free_port
from pangeo_cloud.testing.google_metadata import GoogleMetadataStandIn

REPO = REPO_ROOT
SRC = REPO / "src" / "pangeo_cloud"


def render(deployment: str, stage: str) -> list[dict]:
    cmd = [sys.executable, "-m", "pangeo_cloud.cli", "--root", str(REPO), "render"]
    result = subprocess.run(
        [*cmd, deployment, stage], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return helm.split_manifests(result.stdout)


@pytest.fixture(scope="module")
def aws(helm_bin, upstream_dir) -> list[dict]:
    return render("aws-us-west-2", "staging")


@pytest.fixture(scope="module")
def gcp(helm_bin, upstream_dir) -> list[dict]:
    return render("gcp-us-central1-b", "prod")


def named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_broker_configmap_ships_exactly_the_source_and_config(aws):
    data = named(aws, "ConfigMap", "pangeo-cloud-scratch-broker")["data"]
    expected = {f"pangeo_cloud.{n}.py": SRC / f"{n}.py" for n in ("__init__", "bundle", "scratch")}
    for file in sorted((SRC / "broker").glob("*.py")):
        expected[f"pangeo_cloud.broker.{file.name}"] = file
    for key, file in expected.items():
        assert data[key] == file.read_text().rstrip("\n"), key
    assert set(data) - set(expected) == {"config.json"}
    config = json.loads(data["config.json"])
    assert config["scratch"]["url"] == "s3://pangeo-scratch-uswest2"
    assert config["provider"]["roleArn"].endswith(":role/pangeo-scratch")
    assert config["lifetime"] == 3600


def test_client_configmap_and_its_mounts(aws):
    data = named(aws, "ConfigMap", "pangeo-cloud-scratch-client")["data"]
    assert data["client.py"] == (SRC / "broker" / "client.py").read_text().rstrip("\n")
    assert (
        "credential_process = python3 /etc/pangeo-cloud/scratch/client.py aws" in data["aws-config"]
    )
    deployment = named(aws, "Deployment", "scratch-credentials")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "scratch-credentials"
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub",
        "key": "hub.services.scratch-credentials.apiToken",
    }
    policy = named(aws, "NetworkPolicy", "scratch-credentials")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # s3:// deployments ship nothing of the Google path.
    assert not {"google_client.py", "gcs-credentials.json"} & set(data)


def test_gcs_client_configmap_is_what_google_client_builds(gcp):
    data = named(gcp, "ConfigMap", "pangeo-cloud-scratch-client")["data"]
    source = SRC / "broker" / "google_client.py"
    assert data["google_client.py"] == source.read_text().rstrip("\n")
    scratch = json.loads(
        named(gcp, "ConfigMap", "pangeo-cloud-scratch-broker")["data"]["config.json"]
    )
    assert scratch["scratch"]["url"] == "gs://pangeo-scratch"
    broker_url = "http://scratch-credentials:8000/services/scratch-credentials/"
    # The file the chart writes is exactly what the Python side would write, so the
    # constants the template repeats (audience, token type) cannot drift.
    assert json.loads(data["gcs-credentials.json"]) == google_client.external_account_info(
        google_client.token_url_from(broker_url),
        "python3 -I -S /etc/pangeo-cloud/scratch/google_client.py subject-token",
    )


def test_hub_points_google_credentials_at_the_mounted_file(gcp):
    """GOOGLE_APPLICATION_CREDENTIALS (scratch.broker_env) names the file the chart mounts."""
    missing = helm.missing_subcharts(REPO / "helm-chart" / "pangeo-cloud")
    if missing:
        pytest.skip(
            f"subcharts {', '.join(missing)} not in helm-chart/pangeo-cloud/charts/: the hub's "
            "values Secret is rendered by the jupyterhub subchart"
        )
    # z2jh hands the hub its values in the `hub` Secret.
    hub = base64.b64decode(named(gcp, "Secret", "hub")["data"]["values.yaml"]).decode()
    assert "gcsCredentialsFile: /etc/pangeo-cloud/scratch/gcs-credentials.json" in hub


def run_broker_pod(docs: list[dict], tmp_path: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Start the broker pod's command from its ConfigMap alone; (health status, error, output)."""
    data = named(docs, "ConfigMap", "pangeo-cloud-scratch-broker")["data"]
    for key, text in data.items():
        (tmp_path / key).write_text(text)
    container = named(docs, "Deployment", "scratch-credentials")["spec"]["template"]["spec"][
        "containers"
    ][0]
    command = [sys.executable, *container["command"][1:]]
    command = [c.replace("/etc/pangeo-cloud/broker", str(tmp_path)) for c in command]
    port = free_port()
    prefixes = ("AWS_", "GOOGLE_", "GCE_", "JUPYTERHUB_", "PYTHON")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    full_env.update(
        PANGEO_BROKER_CONFIG=str(tmp_path / "config.json"),
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_SERVICE_PREFIX="/services/scratch-credentials/",
        JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api",
        JUPYTERHUB_API_TOKEN="unused",
        **env,
    )
    # Run outside the repository, so that nothing but the ConfigMap can provide our code.
    proc = subprocess.Popen(
        command,
        env=full_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/services/scratch-credentials/api/health"
        deadline = time.monotonic() + 90
        answer = None
        while time.monotonic() < deadline and answer is None and proc.poll() is None:
            try:
                urllib.request.urlopen(url, timeout=60)
                answer = (200, "")
            except urllib.error.HTTPError as exc:
                answer = (exc.code, json.loads(exc.read())["error"])
            except OSError:
                time.sleep(0.2)
        assert answer is not None, proc.communicate(timeout=10)[0] if proc.poll() else "no answer"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    return answer[0], answer[1], out


def test_broker_pod_command_runs_from_the_configmap_alone(aws, tmp_path):
    code, message, out = run_broker_pod(
        aws,
        tmp_path,
        {
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance metadata service here
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_REGION": "us-west-2",
        },
    )
    assert code == 503
    assert "pangeo-scratch" in message and "credentials" in message.lower()
    assert "pangeo-cloud-bundle" in out or "listening" in out, out


def test_gcs_broker_pod_runs_from_the_configmap_alone(gcp, tmp_path):
    # Its identity from the metadata server (stand-in); Google's STS is unreachable
    # from here (or refuses the stand-in's token), so the health check must say the
    # exchange failed, not pass.
    with GoogleMetadataStandIn("ya29.broker") as metadata:
        env = {**metadata.environment(), "CLOUDSDK_CONFIG": str(tmp_path / "no-gcloud")}
        code, message, out = run_broker_pod(gcp, tmp_path, env)
    assert metadata.token_requests >= 1
    assert code == 503, out
    assert message.startswith("Google token exchange failed"), message
    assert "listening" in out and "(gs)" in out, out
