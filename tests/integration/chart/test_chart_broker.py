"""The chart's scratch-credentials broker: what it ships, and that it runs from the ConfigMap alone.

Rendered with the real `helm` (`pangeo-cloud render`). The broker pod runs the
notebook image without our package: the test writes its ConfigMap into a
directory and starts the pod's command from it, as Kubernetes would, then asks
its health check, which must name the missing AWS credentials (there are none
here) instead of answering with anything wider.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pangeo_cloud.deploy import helm
from pangeo_cloud.ports import free_port

REPO = Path(__file__).resolve().parents[3]
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


def test_broker_pod_command_runs_from_the_configmap_alone(aws, tmp_path):
    data = named(aws, "ConfigMap", "pangeo-cloud-scratch-broker")["data"]
    for key, text in data.items():
        (tmp_path / key).write_text(text)
    container = named(aws, "Deployment", "scratch-credentials")["spec"]["template"]["spec"][
        "containers"
    ][0]
    command = [sys.executable, *container["command"][1:]]
    command = [c.replace("/etc/pangeo-cloud/broker", str(tmp_path)) for c in command]
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JUPYTERHUB_", "PYTHON"))
    }
    env.update(
        PANGEO_BROKER_CONFIG=str(tmp_path / "config.json"),
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        JUPYTERHUB_SERVICE_PREFIX="/services/scratch-credentials/",
        JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api",
        JUPYTERHUB_API_TOKEN="unused",
        AWS_EC2_METADATA_DISABLED="true",  # no instance metadata service here
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_REGION="us-west-2",
    )
    # Run outside the repository, so that nothing but the ConfigMap can provide our code.
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/services/scratch-credentials/api/health"
        deadline = time.monotonic() + 60
        answer = None
        while time.monotonic() < deadline and answer is None and proc.poll() is None:
            try:
                urllib.request.urlopen(url, timeout=30)
                answer = (200, "")
            except urllib.error.HTTPError as exc:
                answer = (exc.code, json.loads(exc.read())["error"])
            except OSError:
                time.sleep(0.2)
        assert answer is not None, proc.communicate(timeout=10)[0] if proc.poll() else "no answer"
        code, message = answer
        assert code == 503
        assert "pangeo-scratch" in message and "credentials" in message.lower()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert "pangeo-cloud-bundle" in out or "listening" in out, out
