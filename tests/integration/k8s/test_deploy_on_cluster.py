"""`pangeo-cloud deploy` and `pangeo-cloud diff` against the loopback control plane.

The release is installed, upgraded, refused and its CRDs upgraded by the real
CLI (validate, crds, `helm upgrade --install --atomic --wait`), into a real
kube-apiserver whose controllers and scheduler run the workloads on kwok nodes,
so `--wait` waits for real Deployment/DaemonSet readiness.

Two chart modes (module-scoped, one namespace each):

* ``full``: the real z2jh and dask-gateway subcharts, when `helm dependency
  build` has unpacked them into helm-chart/pangeo-cloud/charts (gitignored; not
  in CI, where there is no network for the tests);
* ``umbrella``: our own templates only. The deploy needs the dependencies to
  exist under charts/, so the repository copy gets empty stand-in subcharts
  (k8s_support.write_standin_subcharts), the dask-gateway one carrying the real
  CRDs of the pinned version from the shared upstream data.

The deployment is a test stage of ``local`` (no secrets) in a copy of the
repository: ``values/common.yaml`` plus values a simulated cluster can satisfy
(ClusterIP services, in-memory hub database), and a ServiceAccount annotation
that the tests change.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_support import (
    LOOPBACK_VALUES,
    add_test_stage,
    deployed_revision,
    get_json,
    helm,
    helm_history,
    live_fingerprint,
    release_objects,
    run_cli,
    tool_env,
    wait_for,
    write_standin_subcharts,
    write_values,
)
from repo_support import REPO_ROOT

from pangeo_cloud.deploy.helm import missing_subcharts
from pangeo_cloud.testing.k8s import ControlPlane

STAGE = "loopback"
ANNOTATION = "iam.gke.io/gcp-service-account"
# Passes our schema (annotations: map of strings) and `pangeo-cloud validate`,
# but the API server refuses it: the prefix of a key must be a DNS subdomain.
REJECTED_ANNOTATION = "Not A Valid/key"
CRD = "daskclusters.gateway.dask.org"
DEPLOY_TIMEOUT = 900  # the CLI subprocess; helm's own --timeout is below
HELM_TIMEOUT = "8m"

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.timeout(1800)]


@dataclass
class Release:
    plane: ControlPlane
    mode: str
    root: Path
    namespace: str
    values_file: Path
    values: dict[str, Any]
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def cli(self, *args: str) -> Any:
        return run_cli(["--root", str(self.root), *args], self.env, timeout=DEPLOY_TIMEOUT)

    def deploy(self, label: str) -> Any:
        t0 = time.monotonic()
        result = self.cli(
            "deploy", "local", STAGE, "--skip-dependency-build", "--timeout", HELM_TIMEOUT
        )
        self.timings[label] = round(time.monotonic() - t0, 1)
        return result

    def diff(self) -> Any:
        return self.cli("diff", "local", STAGE, "--exit-code")

    def settle(self) -> None:
        """Make the live release equal to its rendering (an unchanged upgrade if needed).

        z2jh renders its hub Secret twice at install (once for the object,
        once for the hub's checksum annotation) with fresh random values each
        time, so right after an install the checksums of hub and proxy differ
        from a re-render; one unchanged upgrade settles them.
        """
        diff = self.diff()
        if diff.returncode == 2:
            upgrade = self.deploy("upgrade unchanged")
            assert upgrade.returncode == 0, _report(upgrade)
            diff = self.diff()
        assert diff.returncode == 0 and diff.stdout == "", _report(diff)
        assert "no differences" in diff.stderr

    def set_annotation(self, key: str, value: str) -> None:
        self.values["userServiceAccount"]["annotations"] = {key: value}
        write_values(self.values_file, self.values)

    def history(self) -> list[dict[str, Any]]:
        return helm_history(self.env, self.namespace, self.namespace)

    def service_account(self) -> dict[str, Any]:
        return get_json(self.plane, "-n", self.namespace, "serviceaccount/pangeo")

    def manifest(self, revision: int | None = None) -> str:
        args = ["get", "manifest", self.namespace, "--namespace", self.namespace]
        if revision is not None:
            args += ["--revision", str(revision)]
        result = helm(self.env, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout


def _report(result: Any) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.fixture(scope="module", params=["full", "umbrella"])
def release(
    request: pytest.FixtureRequest,
    k8s_cluster: ControlPlane,
    upstream_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    mode = request.param
    missing = missing_subcharts(REPO_ROOT / "helm-chart" / "pangeo-cloud")
    if mode == "full" and missing:
        pytest.skip(
            f"subcharts {', '.join(missing)} not in helm-chart/pangeo-cloud/charts "
            "(run `helm dependency build helm-chart/pangeo-cloud`, which needs network); "
            "the umbrella-only variant of these tests runs instead"
        )
    root = tmp_path_factory.mktemp(f"deploy-{mode}") / "repo"
    for part in ("helm-chart", "deployments", "images"):
        shutil.copytree(REPO_ROOT / part, root / part, symlinks=False)
    chart = root / "helm-chart" / "pangeo-cloud"
    if mode == "umbrella":
        shutil.rmtree(chart / "charts", ignore_errors=True)
        with_crds = write_standin_subcharts(
            chart, upstream_dir, REPO_ROOT / chart.relative_to(root)
        )
        if "dask-gateway" not in with_crds:
            pytest.skip(
                "no dask-gateway CRDs for the stand-in subchart: neither the shared upstream "
                f"data ({upstream_dir}) nor helm-chart/pangeo-cloud/charts holds them"
            )
    namespace = f"deploy-{mode}-{uuid.uuid4().hex[:6]}"
    values = json.loads(json.dumps(LOOPBACK_VALUES))
    values["userServiceAccount"]["annotations"] = {ANNOTATION: "one@example.iam"}
    values_file = add_test_stage(root, STAGE, namespace, values)
    rel = Release(
        k8s_cluster, mode, root, namespace, values_file, values, tool_env(k8s_cluster, upstream_dir)
    )
    try:
        result = rel.deploy("install")
        assert result.returncode == 0, f"install failed: {_report(result)}"
        yield rel
    finally:
        print(f"\n[{mode}] deploy timings (s): {rel.timings}")
        helm(rel.env, "uninstall", namespace, "--namespace", namespace, "--wait=false")
        k8s_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_install_is_deployed_and_ready(release: Release) -> None:
    history = release.history()
    assert [r["status"] for r in history] == ["deployed"], history
    assert history[0]["revision"] == 1
    sa = release.service_account()
    assert sa["metadata"]["annotations"][ANNOTATION] == "one@example.iam"
    code = get_json(release.plane, "-n", release.namespace, "configmap/pangeo-cloud-hub-code")
    assert "z2jh_entry.py" in code["data"], sorted(code["data"])
    # The deploy's crds step: the CRDs are served.
    crd = get_json(release.plane, f"crd/{CRD}")
    established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
    assert established and established[0]["status"] == "True"
    deployments = get_json(release.plane, "-n", release.namespace, "deployments")["items"]
    names = {d["metadata"]["name"] for d in deployments}
    if release.mode == "full":
        # --wait returned only once every workload was ready (kwok runs the pods).
        assert {"hub", "proxy", "user-scheduler", "scratch-credentials"} <= names
        assert any(n.startswith("controller-") for n in names), names
        for d in deployments:
            status = d["status"]
            assert status.get("readyReplicas") == d["spec"]["replicas"], d["metadata"]["name"]
        hub_pods = get_json(release.plane, "-n", release.namespace, "pods", "-l", "component=hub")[
            "items"
        ]
        assert [p["status"]["phase"] for p in hub_pods] == ["Running"]
        # Our hub code is mounted into the hub by the subchart values.
        volumes = hub_pods[0]["spec"]["volumes"]
        assert any(
            (v.get("configMap") or {}).get("name") == "pangeo-cloud-hub-code" for v in volumes
        ), volumes
    else:
        # The stand-in subcharts render nothing; the broker is the umbrella's own.
        assert names == {"scratch-credentials"}, names


def test_diff_shows_exactly_the_change_then_upgrade_applies_it(release: Release) -> None:
    release.settle()
    before = deployed_revision(release.history())["revision"]

    release.set_annotation(ANNOTATION, "two@example.iam")
    diff = release.diff()
    assert diff.returncode == 2, _report(diff)
    assert "1 object(s) differ" in diff.stderr, diff.stderr
    changed = [
        line for line in diff.stdout.splitlines() if line[:1] in "+-" and line[:3] not in "+++---"
    ]
    assert changed == [
        f"-    {ANNOTATION}: one@example.iam",
        f"+    {ANNOTATION}: two@example.iam",
    ], diff.stdout
    assert f"--- live: ServiceAccount/{release.namespace}/pangeo" in diff.stdout

    upgrade = release.deploy("upgrade changed")
    assert upgrade.returncode == 0, _report(upgrade)
    after = deployed_revision(release.history())
    assert after["revision"] == before + 1
    assert after["description"] == "Upgrade complete"
    sa = release.service_account()
    assert sa["metadata"]["annotations"][ANNOTATION] == "two@example.iam"
    settled = release.diff()
    assert settled.returncode == 0 and settled.stdout == "", _report(settled)


def test_rejected_upgrade_keeps_the_previous_revision(release: Release) -> None:
    # Only the refused value differs: helm applies the other changed objects of
    # an upgrade before it fails, and --atomic then patches them back (same
    # content, new generation), so with other changes pending "unchanged"
    # would hold for content only.
    release.settle()
    before = deployed_revision(release.history())
    manifest = release.manifest()
    objects = release_objects(manifest)
    live = live_fingerprint(release.plane, release.namespace, objects)
    annotations = release.service_account()["metadata"]["annotations"]

    release.set_annotation(REJECTED_ANNOTATION, "x")
    try:
        result = release.deploy("upgrade rejected")
    finally:
        release.set_annotation(ANNOTATION, annotations[ANNOTATION])
    assert result.returncode == 1, _report(result)
    # Validation let it through (it is the API server that refuses it)...
    steps = re.findall(r"^\[\d+/\d+\] (\w+):", result.stdout, re.MULTILINE)
    assert steps[0] == "validate" and steps[-1] == "upgrade", result.stdout
    # ...and the CLI names the failing step, the server's reason and the rollback.
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(
        f"pangeo-cloud deploy: error: deploy local/{STAGE} failed at step 'upgrade':"
    ), error
    assert REJECTED_ANNOTATION in error and "metadata.annotations: Invalid value" in error
    assert "rolled the release back" in error

    history = release.history()
    after = deployed_revision(history)
    failed = [r for r in history if r["revision"] > before["revision"] and r["status"] == "failed"]
    assert len(failed) == 1, history
    assert after["description"] == f"Rollback to {before['revision']}", history
    assert release.manifest() == manifest
    assert release.service_account()["metadata"]["annotations"] == annotations
    assert live_fingerprint(release.plane, release.namespace, objects) == live


def _with_new_crd_version(crd: dict[str, Any]) -> dict[str, Any]:
    """The DaskCluster CRD with a printer column and a second served version."""
    crd = json.loads(json.dumps(crd))
    v1alpha1 = crd["spec"]["versions"][0]
    assert v1alpha1["name"] == "v1alpha1"
    v1alpha1["additionalPrinterColumns"] = [
        {"name": "Workers", "type": "integer", "jsonPath": ".spec.worker.replicas"}
    ]
    v1alpha2 = json.loads(json.dumps(v1alpha1))
    v1alpha2.update(name="v1alpha2", served=True, storage=False)
    crd["spec"]["versions"].append(v1alpha2)
    return crd


def test_deploy_upgrades_the_dask_gateway_crds(release: Release) -> None:
    chart = release.root / "helm-chart" / "pangeo-cloud"
    crd_file = chart / "charts" / "dask-gateway" / "crds" / "daskclusters.yaml"
    original_text = crd_file.read_text()
    original = yaml.safe_load(original_text)
    crd_file.write_text(yaml.safe_dump(_with_new_crd_version(original), sort_keys=False))
    try:
        result = release.deploy("upgrade with new CRDs")
        assert result.returncode == 0, _report(result)
        assert re.search(r"^\[\d+/\d+\] crds:", result.stdout, re.MULTILINE), result.stdout

        def served() -> dict[str, Any] | None:
            crd = get_json(release.plane, f"crd/{CRD}")
            versions = [v["name"] for v in crd["spec"]["versions"]]
            return crd if versions == ["v1alpha1", "v1alpha2"] else None

        crd = wait_for("the upgraded CRD", served, timeout=60)
        columns = crd["spec"]["versions"][0].get("additionalPrinterColumns", [])
        assert [c["name"] for c in columns] == ["Workers"]
        # The API server serves the new version and prints the new column.
        wait_for(
            "gateway.dask.org/v1alpha2 in discovery",
            lambda: release.plane.request("GET", "/apis/gateway.dask.org/v1alpha2")[0] == 200,
            timeout=60,
        )
        cluster = {
            "apiVersion": "gateway.dask.org/v1alpha2",
            "kind": "DaskCluster",
            "metadata": {"name": "crd-check", "namespace": release.namespace},
            "spec": {"scheduler": {}, "worker": {"replicas": 3}},
        }
        release.plane.kubectl("apply", "-f", "-", input=json.dumps(cluster))
        table = release.plane.kubectl(
            "-n", release.namespace, "get", "daskclusters.v1alpha1.gateway.dask.org/crd-check"
        ).stdout.split("\n")
        header, row = table[0].split(), table[1].split()
        assert header == ["NAME", "WORKERS"] and row == ["crd-check", "3"], table
        stored = get_json(
            release.plane, "-n", release.namespace, "daskclusters.v1alpha1.gateway.dask.org"
        )["items"]
        assert [c["spec"]["worker"]["replicas"] for c in stored] == [3]
    finally:
        crd_file.write_text(original_text)
        release.plane.kubectl(
            "delete", "-n", release.namespace, "daskclusters.gateway.dask.org/crd-check",
            "--ignore-not-found", "--wait=false", check=False,
        )  # fmt: skip
        # Put the pinned CRD back as the deploy applies it (same field manager:
        # server-side apply removes the version and column this test added).
        release.plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=pangeo-cloud",
            "-f", str(crd_file), check=False,
        )  # fmt: skip
        # v1alpha2 is gone: kubectl's cached discovery (which prefers it) with it.
        release.plane.forget_discovery()
    restored = get_json(release.plane, f"crd/{CRD}")
    assert [v["name"] for v in restored["spec"]["versions"]] == ["v1alpha1"]
    assert "additionalPrinterColumns" not in restored["spec"]["versions"][0]
