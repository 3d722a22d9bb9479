"""`pangeo-cloud plan`: which releases sample change sets require redeploying."""

from __future__ import annotations

import json

import pytest

from pangeo_cloud.config import Paths
from pangeo_cloud.deploy.plan import changed_files, plan_changes

ALL_CLOUD = [
    "aws-us-west-2/staging",
    "aws-us-west-2/prod",
    "gcp-us-central1-b/staging",
    "gcp-us-central1-b/prod",
]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["docs/index.md", "README.md", "tests/unit/test_x.py"], []),
        ([".github/workflows/test.yaml", ".github/workflows/image-bump.yaml"], []),
        ([".yamllint.yaml", "src/pangeo_cloud/testing/kubelet.py"], []),
        # What deploys and checks a release runs on staging before prod (issue 14).
        (["src/pangeo_cloud/deploy/health.py"], ALL_CLOUD),
        (["src/pangeo_cloud/deploy/promotion.py"], ALL_CLOUD),
        (["src/pangeo_cloud/deploy/plan.py"], ALL_CLOUD),
        (["src/pangeo_cloud/commands/health.py"], ALL_CLOUD),
        (["src/pangeo_cloud/cli.py"], ALL_CLOUD),
        ([".github/workflows/deploy.yaml"], ALL_CLOUD),
        ([".github/workflows/new-deploy-step.yaml"], ALL_CLOUD),
        (["scripts/install-go-tools.sh"], ALL_CLOUD),
        (["scripts/tool-checksums.txt"], ALL_CLOUD),
        (["requirements/deploy.lock"], ALL_CLOUD),
        (["Makefile"], ALL_CLOUD),
        (["src/pangeo_cloud/local/up.py", "src/pangeo_cloud/testing/github.py"], []),
        (["helm-chart/pangeo-cloud/values.yaml"], ALL_CLOUD),
        (["helm-chart/pangeo-cloud/templates/hub-code-configmap.yaml"], ALL_CLOUD),
        (["src/pangeo_cloud/hub/spawn.py"], ALL_CLOUD),
        (["src/pangeo_cloud/gateway/options.py"], ALL_CLOUD),
        (["src/pangeo_cloud/config/wiring.py"], ALL_CLOUD),
        (["images/notebook/image.yaml"], ALL_CLOUD),
        (["pyproject.toml"], ALL_CLOUD),
        (["deployments/shared.yaml"], ALL_CLOUD),
        (["somewhere/unknown.txt"], ALL_CLOUD),
        (
            ["deployments/gcp-us-central1-b/deployment.yaml"],
            ["gcp-us-central1-b/staging", "gcp-us-central1-b/prod"],
        ),
        (
            ["deployments/gcp-us-central1-b/values/common.yaml"],
            ["gcp-us-central1-b/staging", "gcp-us-central1-b/prod"],
        ),
        (["deployments/gcp-us-central1-b/values/staging.yaml"], ["gcp-us-central1-b/staging"]),
        (["deployments/aws-us-west-2/values/prod.yaml"], ["aws-us-west-2/prod"]),
        (["deployments/aws-us-west-2/secrets/staging.enc.yaml"], ["aws-us-west-2/staging"]),
        (
            ["deployments/aws-us-west-2/values/unused.yaml"],
            ["aws-us-west-2/staging", "aws-us-west-2/prod"],
        ),
        (["deployments/local/values/common.yaml"], []),
        (["deployments/gone/values/common.yaml"], []),
        (
            [
                "deployments/aws-us-west-2/values/prod.yaml",
                "deployments/gcp-us-central1-b/values/staging.yaml",
                "docs/index.md",
            ],
            ["aws-us-west-2/prod", "gcp-us-central1-b/staging"],
        ),
    ],
)
def test_sample_change_sets(repo_paths: Paths, files: list[str], expected: list[str]) -> None:
    assert plan_changes(files, repo_paths).names == expected


def test_stage_filter_and_local(repo_paths: Paths) -> None:
    files = ["helm-chart/pangeo-cloud/values.yaml"]
    assert plan_changes(files, repo_paths, stage="staging").names == [
        "aws-us-west-2/staging",
        "gcp-us-central1-b/staging",
    ]
    assert "local/dev" in plan_changes(files, repo_paths, include_local=True).names


def test_reasons_name_the_files(repo_paths: Paths) -> None:
    plan = plan_changes(["deployments/aws-us-west-2/values/prod.yaml", "docs/a.md"], repo_paths)
    (reasons,) = plan.targets.values()
    assert reasons == ["deployments/aws-us-west-2/values/prod.yaml: a file of its stage"]
    assert plan.effects["docs/a.md"].scope == "none"


def run_cli(root, *argv: str, capsys) -> tuple[int, str]:
    from pangeo_cloud.cli import main

    code = main(["--root", str(root), *argv])
    return code, capsys.readouterr().out


def test_cli_json_is_a_ci_matrix(repo_paths: Paths, capsys, monkeypatch) -> None:

    code, out = run_cli(
        repo_paths.root,
        "plan",
        "--files",
        "deployments/gcp-us-central1-b/values/staging.yaml",
        "docs/x.md",
        "--format",
        "json",
        capsys=capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert data["any"] is True
    assert data["matrix"] == {
        "include": [
            {
                "deployment": "gcp-us-central1-b",
                "stage": "staging",
                "cloud": "gcp",
                "release": "staging",
                "namespace": "staging",
                "requires": None,
                # The deploy job runs in this environment with this identity (issue 14).
                "environment": "staging",
                "identity": "pangeo-deploy-staging@pangeo-181919.iam.gserviceaccount.com",
            }
        ]
    }
    assert data["files"]["docs/x.md"]["scope"] == "none"

    code, out = run_cli(
        repo_paths.root, "plan", "--files", "docs/x.md", "--format", "json", capsys=capsys
    )
    assert json.loads(out)["any"] is False and json.loads(out)["matrix"] == {"include": []}

    code, out = run_cli(repo_paths.root, "plan", "--files", "docs/x.md", capsys=capsys)
    assert out.startswith("nothing to deploy")


def test_git_range(git_repo) -> None:
    paths, git = git_repo
    first = git("rev-parse", "HEAD")
    (paths.root / "docs" / "index.md").write_text("changed\n")
    prod = paths.deployments / "aws-us-west-2" / "values" / "prod.yaml"
    prod.write_text(prod.read_text() + "# a comment\n")
    git("commit", "-q", "-am", "prod values and docs")
    files = changed_files(f"{first}..HEAD", paths.root)
    assert sorted(files) == ["deployments/aws-us-west-2/values/prod.yaml", "docs/index.md"]
    assert plan_changes(files, paths).names == ["aws-us-west-2/prod"]
    # A new branch: GitHub's `before` is all zeros; everything counts.
    everything = changed_files("0000000000000000000000000000000000000000..HEAD", paths.root)
    assert "helm-chart/pangeo-cloud/Chart.yaml" in everything
    assert plan_changes(everything, paths).names == ALL_CLOUD
