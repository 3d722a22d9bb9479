"""Staging before prod, recorded as git tags, checked in a temporary git repository."""

from __future__ import annotations

import pytest

from pangeo_cloud.config import load_deployment, resolve_target
from pangeo_cloud.deploy.promotion import (
    PromotionError,
    check_promotion,
    record_pass,
    tag_name,
)

DEP = "gcp-us-central1-b"


def _commit(paths, git, rel: str, extra: str, message: str) -> str:
    file = paths.root / rel
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text((file.read_text() if file.exists() else "") + extra)
    git("add", rel)
    git("commit", "-q", "-m", message)
    return git("rev-parse", "HEAD")


def test_prod_refuses_a_commit_that_did_not_pass_staging(git_repo) -> None:
    paths, git = git_repo
    deployment = load_deployment(DEP, paths)
    sha = git("rev-parse", "HEAD")
    with pytest.raises(PromotionError) as info:
        check_promotion(resolve_target(deployment, "prod", paths))
    message = str(info.value)
    assert "\n" not in message
    assert f"has not passed {DEP}/staging" in message
    assert tag_name(DEP, "staging", sha) in message


def test_staging_has_no_rule(git_repo) -> None:
    paths, _ = git_repo
    assert check_promotion(resolve_target(DEP, "staging", paths)) is None


def test_recorded_pass_allows_prod_and_is_readable(git_repo) -> None:
    paths, git = git_repo
    sha = git("rev-parse", "HEAD")
    tag = record_pass(paths.root, DEP, "staging", note="health: all steps ok")
    assert tag == f"passed/{DEP}/staging/{sha}"
    assert record_pass(paths.root, DEP, "staging") == tag  # idempotent
    assert git("rev-parse", f"{tag}^{{commit}}") == sha
    shown = git("tag", "-l", "-n9", "passed/*")
    assert "passed deploy and health check" in shown and "health: all steps ok" in shown
    record = check_promotion(resolve_target(DEP, "prod", paths))
    assert record is not None and record.tag == tag and record.carried_from is None
    # Another deployment's pass does not count.
    with pytest.raises(PromotionError):
        check_promotion(resolve_target("aws-us-west-2", "prod", paths))


@pytest.mark.parametrize(
    "rel",
    [
        "docs/index.md",
        "deployments/gcp-us-central1-b/values/prod.yaml",
        "deployments/aws-us-west-2/values/common.yaml",
        "tests/unit/test_new.py",
    ],
)
def test_pass_carries_over_changes_that_do_not_affect_staging(git_repo, rel: str) -> None:
    paths, git = git_repo
    passed = git("rev-parse", "HEAD")
    record_pass(paths.root, DEP, "staging")
    _commit(paths, git, rel, "# changed\n", f"change {rel}")
    record = check_promotion(resolve_target(DEP, "prod", paths))
    assert record is not None and record.carried_from == passed


@pytest.mark.parametrize(
    "rel",
    [
        "helm-chart/pangeo-cloud/values.yaml",
        "deployments/gcp-us-central1-b/values/staging.yaml",
        "deployments/gcp-us-central1-b/values/common.yaml",
        "images/notebook/Dockerfile",
    ],
)
def test_changes_to_staging_inputs_need_a_new_pass(git_repo, rel: str) -> None:
    paths, git = git_repo
    record_pass(paths.root, DEP, "staging")
    _commit(paths, git, rel, "# changed\n", f"change {rel}")
    with pytest.raises(PromotionError, match="has not passed"):
        check_promotion(resolve_target(DEP, "prod", paths))
    record_pass(paths.root, DEP, "staging")
    assert check_promotion(resolve_target(DEP, "prod", paths)) is not None


def test_uncommitted_changes_are_refused(git_repo) -> None:
    paths, _ = git_repo
    record_pass(paths.root, DEP, "staging")
    common = paths.deployments / DEP / "values" / "common.yaml"
    common.write_text(common.read_text() + "# local edit\n")
    with pytest.raises(PromotionError, match="uncommitted: deployments/gcp-us-central1-b/values"):
        check_promotion(resolve_target(DEP, "prod", paths))
    common.write_text(common.read_text().replace("# local edit\n", ""))
    (paths.root / "docs" / "notes.md").write_text("untracked docs are fine\n")
    assert check_promotion(resolve_target(DEP, "prod", paths)) is not None


def test_not_a_git_repository(repo_copy, monkeypatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(repo_copy.root.parent))
    with pytest.raises(PromotionError, match="commit cannot be determined"):
        check_promotion(resolve_target(DEP, "prod", repo_copy))
