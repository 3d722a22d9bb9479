"""The GitHub Actions workflows pass the real actionlint and do what CI promises."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from repo_support import REPO_ROOT

from pangeo_cloud.deploy.tools import ToolError, find_tool

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def _load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_actionlint_passes() -> None:
    try:
        actionlint = find_tool("actionlint")
    except ToolError as exc:
        pytest.skip(str(exc))
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert len(files) >= 3
    result = subprocess.run(
        [actionlint, "-no-color", *files], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_passes() -> None:
    yamllint = pytest.importorskip("yamllint.cli")
    code = None
    try:
        yamllint.run(
            [
                "-s",
                "-c",
                str(REPO_ROOT / ".yamllint.yaml"),
                str(WORKFLOWS),
                str(REPO_ROOT / ".sops.yaml"),
            ]
        )
    except SystemExit as exc:
        code = exc.code
    assert code in (None, 0)


def test_test_workflow_runs_every_check() -> None:
    text = (WORKFLOWS / "test.yaml").read_text()
    for needed in (
        "make lint",
        "make test",
        "pangeo-cloud validate",
        "helm/kind-action",
        "helm dependency build",
        "pangeo-cloud deploy",
        "pangeo-cloud health",
    ):
        assert needed in text, needed


def test_deploy_workflow_shape() -> None:
    flow = _load("deploy.yaml")
    assert flow[True]["push"]["branches"] == ["staging", "prod"]  # `on:` parses as True
    deploy = flow["jobs"]["deploy"]
    assert deploy["needs"] == "plan"
    assert "fromJSON(needs.plan.outputs.matrix)" in deploy["strategy"]["matrix"]
    assert "matrix.deployment" in deploy["concurrency"]["group"]
    assert "matrix.stage" in deploy["concurrency"]["group"]
    assert "'prod'" in deploy["environment"]
    assert deploy["permissions"]["id-token"] == "write"
    uses = [s.get("uses", "") for s in deploy["steps"]]
    assert any(u.startswith("google-github-actions/auth@") for u in uses)
    assert any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses)
    by_name = {s.get("name"): s for s in deploy["steps"]}
    gcp = next(s for s in deploy["steps"] if s.get("uses", "").startswith("google-github"))
    assert "workload_identity_provider" in gcp["with"]
    aws = next(s for s in deploy["steps"] if s.get("uses", "").startswith("aws-actions"))
    assert "role-to-assume" in aws["with"]
    text = (WORKFLOWS / "deploy.yaml").read_text()
    assert "credentials_json" not in text and "aws-access-key-id" not in text
    assert "helm rollback" in by_name["Roll back after a failed health check"]["run"]
    assert "record_pass" in by_name["Record the staging pass"]["run"]


def test_image_bump_opens_a_pr_against_staging() -> None:
    flow = _load("image-bump.yaml")
    assert "schedule" in flow[True]
    steps = flow["jobs"]["bump"]["steps"]
    pr = next(s for s in steps if s.get("uses", "").startswith("peter-evans/create-pull-request"))
    assert pr["with"]["base"] == "staging"
    assert any("bump_notebook_image.py" in s.get("run", "") for s in steps)
