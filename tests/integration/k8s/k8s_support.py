"""Helpers for the tests that use the loopback control plane for real work.

(A uniquely named module, not conftest: test directories have no __init__.py.)

* running the ``pangeo-cloud`` CLI as a subprocess against the plane, with the
  pinned kubectl/helm of the tool cache first on PATH;
* preparing a repository copy for a deploy into a test namespace: a test stage
  of the ``local`` deployment with values a simulated cluster can satisfy, and,
  where the upstream subcharts were not downloaded, stand-in subcharts so the
  deploy runs our own templates and the real dask-gateway CRDs;
* reading the API server (kubectl JSON, helm history).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from wait_support import wait_for  # noqa: F401 - the k8s tests import it from here

from pangeo_cloud.deploy.release import extract_crds
from pangeo_cloud.deploy.tools import ToolError
from pangeo_cloud.testing.k8s import ControlPlane
from pangeo_cloud.toolcache import tools_dir

# Values a simulated (kwok) cluster can satisfy, for the test stage. All of
# them pass the chart schemas (the deploy validates them like any stage):
# no cloud load balancer (helm --wait would wait for an external IP forever),
# and no hub database volume (no storage provisioner on loopback).
LOOPBACK_VALUES: dict[str, Any] = {
    "userServiceAccount": {"create": True, "annotations": {}},
    "jupyterhub": {
        "hub": {"db": {"type": "sqlite-memory"}},
        "proxy": {"service": {"type": "ClusterIP"}},
    },
    "dask-gateway": {"traefik": {"service": {"type": "ClusterIP"}}},
}


def tool_env(plane: ControlPlane, upstream: Path | None = None) -> dict[str, str]:
    """The environment for CLI/helm/kubectl subprocesses aimed at the plane."""
    env = dict(os.environ)
    env["KUBECONFIG"] = str(plane.kubeconfig)
    env["PATH"] = f"{tools_dir()}{os.pathsep}{env.get('PATH', '')}"
    if upstream is not None:
        env["PANGEO_UPSTREAM_DIR"] = str(upstream)
    return env


def run_cli(
    args: list[str], env: dict[str, str], *, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``pangeo-cloud ARGS`` (the real CLI) in a subprocess; stdout and stderr apart."""
    return subprocess.run(
        [sys.executable, "-m", "pangeo_cloud.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def helm(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools_dir() / "helm"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def helm_history(env: dict[str, str], release: str, namespace: str) -> list[dict[str, Any]]:
    result = helm(env, "history", release, "--namespace", namespace, "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def deployed_revision(history: list[dict[str, Any]]) -> dict[str, Any]:
    deployed = [r for r in history if r["status"] == "deployed"]
    assert len(deployed) == 1, history
    return deployed[0]


def get_json(plane: ControlPlane, *args: str) -> dict[str, Any]:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


# -- repository copies ------------------------------------------------------
def add_test_stage(root: Path, stage: str, namespace: str, values: dict[str, Any]) -> Path:
    """Add ``stage`` to the copy's ``local`` deployment; returns its values file.

    The stage layers ``values/common.yaml`` (what `pangeo-cloud up` runs) and
    ``values/<stage>.yaml`` (``values``), and deploys into ``namespace`` a
    release of the same name: z2jh names cluster-scoped objects (PriorityClass,
    ClusterRole) after the release, so releases in a shared cluster must differ.
    """
    deployment = root / "deployments" / "local" / "deployment.yaml"
    data = yaml.safe_load(deployment.read_text())
    data["stages"][stage] = {
        "release": namespace,
        "namespace": namespace,
        "valuesFiles": ["values/common.yaml", f"values/{stage}.yaml"],
    }
    deployment.write_text(yaml.safe_dump(data, sort_keys=False))
    values_file = root / "deployments" / "local" / "values" / f"{stage}.yaml"
    write_values(values_file, values)
    return values_file


def write_values(path: Path, values: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def chart_dependencies(chart: Path) -> list[dict[str, Any]]:
    return yaml.safe_load((chart / "Chart.yaml").read_text()).get("dependencies") or []


def write_standin_subcharts(chart: Path, upstream: Path, original_chart: Path) -> list[str]:
    """Empty charts named like the dependencies, carrying the real CRDs.

    For machines where `helm dependency build` has not run (no network): helm
    then installs only the umbrella's own templates (the subcharts render
    nothing), and the deploy's `crds` step applies the real CRDs of the pinned
    version, taken from the shared upstream data (``<name>-<version>/crds``)
    or else from the original chart's downloaded subchart (archive or
    directory). Returns the names of the subcharts that carry CRDs.
    """
    with_crds = []
    for dep in chart_dependencies(chart):
        name, version = dep["name"], str(dep["version"])
        sub = chart / "charts" / name
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "Chart.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v2",
                    "name": name,
                    "version": version,
                    "description": "test stand-in: renders nothing (subchart not downloaded)",
                }
            )
        )
        crds = upstream / f"{name}-{version}" / "crds"
        if crds.is_dir():
            (sub / "crds").mkdir(exist_ok=True)
            for crd in sorted(crds.glob("*.y*ml")):
                (sub / "crds" / crd.name).write_bytes(crd.read_bytes())
        else:
            archive = original_chart / "charts" / f"{name}-{version}.tgz"
            try:
                extract_crds(archive, sub / "crds")
            except ToolError:
                shutil.rmtree(sub / "crds", ignore_errors=True)
        if any((sub / "crds").glob("*.y*ml")):
            with_crds.append(name)
    return with_crds


def release_objects(manifest: str) -> list[tuple[str, str]]:
    """(kind, name) of every object in a helm manifest stream."""
    out = []
    for doc in yaml.safe_load_all(manifest):
        if isinstance(doc, dict) and doc.get("kind"):
            out.append((doc["kind"], doc["metadata"]["name"]))
    return sorted(out)


def live_fingerprint(
    plane: ControlPlane, namespace: str, objects: list[tuple[str, str]]
) -> dict[str, Any]:
    """What must not change when an upgrade is refused: per object, its
    resourceVersion (or, for workloads whose status controllers keep updating,
    generation, labels, annotations and pod template)."""
    out: dict[str, Any] = {}
    for kind, name in objects:
        obj = get_json(plane, "-n", namespace, f"{kind}/{name}")
        meta = obj["metadata"]
        if kind in ("Deployment", "DaemonSet", "StatefulSet"):
            out[f"{kind}/{name}"] = (
                meta.get("generation"),
                meta.get("labels"),
                meta.get("annotations"),
                obj["spec"]["template"],
            )
        else:
            out[f"{kind}/{name}"] = meta["resourceVersion"]
    return out
