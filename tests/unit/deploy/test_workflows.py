"""The GitHub Actions workflows pass the real actionlint and do what CI promises."""

from __future__ import annotations

import re
import subprocess
import tomllib

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
    jobs = flow["jobs"]
    assert flow["permissions"] == {"contents": "read"}
    for stage in ("staging", "prod"):
        job = jobs[stage]
        assert job["needs"] == "plan"
        assert f"github.ref_name == '{stage}'" in job["if"]
        assert "fromJSON(needs.plan.outputs.matrix)" in job["strategy"]["matrix"]
        assert "matrix.deployment" in job["concurrency"]["group"]
        assert "matrix.stage" in job["concurrency"]["group"]
        assert job["uses"] == "./.github/workflows/deploy-release.yaml"
        # The environment is fixed per branch job, never read from the pushed files;
        # the stage's own (deployIdentity) must match it, and its identity is used.
        assert job["with"]["environment"] == stage
        assert job["with"]["identity"] == "${{ matrix.identity }}"
        assert job["with"]["identity-environment"] == "${{ matrix.environment }}"
        assert job["permissions"]["id-token"] == "write"
    # contents: write only where a tag is pushed (issue 14).
    assert jobs["staging"]["permissions"]["contents"] == "write"
    assert jobs["staging"]["with"]["record-pass"] is True
    assert jobs["prod"]["permissions"]["contents"] == "read"
    assert jobs["prod"]["with"]["record-pass"] is False
    assert "permissions" not in jobs["plan"]

    release = _load("deploy-release.yaml")
    assert "workflow_call" in release[True]
    deploy = release["jobs"]["deploy"]
    assert deploy["environment"] == "${{ inputs.environment }}"
    assert "permissions" not in deploy  # the caller's, never more
    steps = deploy["steps"]
    by_name = {s.get("name"): s for s in steps}
    check = by_name["The stage belongs to this job's environment"]
    assert steps[0] is check and "exit 1" in check["run"]
    gcp = next(s for s in steps if s.get("uses", "").startswith("google-github-actions/auth@"))
    assert gcp["with"]["service_account"] == "${{ inputs.identity }}"
    aws = next(s for s in steps if s.get("uses", "").startswith("aws-actions/"))
    assert aws["with"]["role-to-assume"] == "${{ inputs.identity }}"
    text = (WORKFLOWS / "deploy-release.yaml").read_text()
    assert "credentials_json" not in text and "aws-access-key-id" not in text
    assert "helm rollback" in by_name["Roll back after a failed health check"]["run"]
    record = by_name["Record the staging pass"]
    assert record["if"] == "inputs.record-pass" and "record_pass" in record["run"]


def test_pass_tags_are_made_with_the_identity_promotion_accepts() -> None:
    from pangeo_cloud.deploy.pass_tags import DEPLOY_TAGGER_EMAIL, DEPLOY_TAGGER_NAME

    run = _step("deploy-release.yaml", "deploy", "Record the staging pass")["run"]
    assert f'git config user.name "{DEPLOY_TAGGER_NAME}"' in run
    assert f'git config user.email "{DEPLOY_TAGGER_EMAIL}"' in run


def _step(workflow: str, job: str, name: str) -> dict:
    return next(s for s in _load(workflow)["jobs"][job]["steps"] if s.get("name") == name)


# --- supply chain of the deploy job (issue 14) ---------------------------------------

_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
_PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
_VERSION_COMMENT = re.compile(r"^\s+#\s*v\d+(\.\d+)*\s*$")


def test_every_action_is_pinned_by_commit_sha() -> None:
    problems = []
    count = 0
    for file in sorted(WORKFLOWS.glob("*.y*ml")):
        for number, line in enumerate(file.read_text().splitlines(), 1):
            match = _USES.match(line)
            if not match:
                continue
            count += 1
            ref, rest = match["ref"], match["rest"]
            if ref.startswith("./"):
                continue  # a workflow of this repository, at the same commit
            if not _PINNED.match(ref) or not _VERSION_COMMENT.match(rest):
                problems.append(f"{file.name}:{number}: {line.strip()}")
    assert count > 10
    assert not problems, "not pinned to a 40-hex commit SHA with a '# vX.Y.Z' comment:\n" + (
        "\n".join(problems)
    )


def test_deploy_jobs_restore_no_cache_and_verify_their_tools() -> None:
    for name in ("deploy.yaml", "deploy-release.yaml"):
        text = (WORKFLOWS / name).read_text()
        assert "actions/cache" not in text, name  # nothing another branch could have written
        assert "make install" not in text, name  # unpinned: pip install -e '.[dev]'
    deploy = _load("deploy-release.yaml")["jobs"]["deploy"]
    assert deploy["env"]["PANGEO_TOOLS_VERIFY"] == "strict"
    install = next(s for s in deploy["steps"] if s.get("name", "").startswith("Install"))
    assert "--require-hashes" in install["run"] and "requirements/deploy.lock" in install["run"]
    assert "scripts/install-go-tools.sh" in install["run"]
    plan = next(s for s in _load("deploy.yaml")["jobs"]["plan"]["steps"] if "run" in s)
    assert "--require-hashes" in plan["run"]


def test_workflows_build_tools_with_the_go_version_of_the_checksums() -> None:
    recorded = {
        line.split()[2]
        for line in (REPO_ROOT / "scripts" / "tool-checksums.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert recorded, "scripts/tool-checksums.txt records no tool"
    for file in sorted(WORKFLOWS.glob("*.y*ml")):
        for job in _load(file.name)["jobs"].values():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/setup-go@"):
                    version = step["with"]["go-version"]
                    assert f"go{version}" in recorded, (file.name, version, recorded)


def test_deploy_lock_covers_the_runtime_dependencies() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    lock = (REPO_ROOT / "requirements" / "deploy.lock").read_text()
    pins: dict[str, str] = {}
    hashes: dict[str, int] = {}
    current = None
    for line in lock.splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line):
            current = canonicalize_name(match[1])
            pins[current] = match[2]
            hashes[current] = 0
        elif current and "--hash=sha256:" in line:
            hashes[current] += 1
    assert pins and all(hashes[name] for name in pins), hashes
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"]]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not in requirements/deploy.lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements/deploy.lock pins {name}=={pins[name]}, pyproject.toml wants {req}"
        )


def test_image_bump_opens_a_pr_against_staging() -> None:
    flow = _load("image-bump.yaml")
    assert "schedule" in flow[True]
    steps = flow["jobs"]["bump"]["steps"]
    pr = next(s for s in steps if s.get("uses", "").startswith("peter-evans/create-pull-request"))
    assert pr["with"]["base"] == "staging"
    assert any("bump_notebook_image.py" in s.get("run", "") for s in steps)


def test_every_cloud_stage_has_a_deploy_job_in_its_environment(repo_paths) -> None:
    """plan filters by branch name = stage name; that job's environment must be the stage's."""
    from pangeo_cloud.config import list_deployments, load_deployment

    jobs = _load("deploy.yaml")["jobs"]
    by_branch = {
        job["with"]["environment"]: job["if"] for name, job in jobs.items() if "uses" in job
    }
    for name in list_deployments(repo_paths):
        deployment = load_deployment(name, repo_paths)
        if deployment.cloud == "local":
            continue
        for stage in deployment.stages.values():
            environment = stage.deploy_identity.environment
            assert environment in by_branch, f"{name}/{stage.name}: no job in {environment}"
            assert f"github.ref_name == '{stage.name}'" in by_branch[environment]
