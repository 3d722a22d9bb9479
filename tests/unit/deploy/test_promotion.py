"""Staging before prod, recorded as git tags, checked in a temporary git repository."""

from __future__ import annotations

import pytest
from deploy_support import workflow_pass

from pangeo_cloud.config import load_deployment, resolve_target
from pangeo_cloud.deploy.pass_tags import DEPLOY_TAGGER_EMAIL, DEPLOY_TAGGER_NAME
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


def test_recorded_pass_allows_prod_and_is_readable(git_repo, monkeypatch) -> None:
    paths, git = git_repo
    sha = git("rev-parse", "HEAD")
    tag = workflow_pass(monkeypatch, paths.root, DEP, "staging")
    assert tag == f"passed/{DEP}/staging/{sha}"
    assert record_pass(paths.root, DEP, "staging") == tag  # idempotent
    assert git("rev-parse", f"{tag}^{{commit}}") == sha
    shown = git("tag", "-l", "-n9", "passed/*")
    assert "passed deploy and health check" in shown and "deploy workflow" in shown
    assert "actions/runs/4242" in shown
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
def test_pass_carries_over_changes_that_do_not_affect_staging(
    git_repo, rel: str, monkeypatch
) -> None:
    paths, git = git_repo
    passed = git("rev-parse", "HEAD")
    workflow_pass(monkeypatch, paths.root, DEP, "staging")
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
def test_changes_to_staging_inputs_need_a_new_pass(git_repo, rel: str, monkeypatch) -> None:
    paths, git = git_repo
    workflow_pass(monkeypatch, paths.root, DEP, "staging")
    _commit(paths, git, rel, "# changed\n", f"change {rel}")
    with pytest.raises(PromotionError, match="has not passed"):
        check_promotion(resolve_target(DEP, "prod", paths))
    workflow_pass(monkeypatch, paths.root, DEP, "staging")
    assert check_promotion(resolve_target(DEP, "prod", paths)) is not None


def test_uncommitted_changes_are_refused(git_repo, monkeypatch) -> None:
    paths, _ = git_repo
    workflow_pass(monkeypatch, paths.root, DEP, "staging")
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


# --- forged passes: each is refused with one line naming what is wrong -----------


def _tag(mp, git, *args: str, who: tuple[str, str] = (DEPLOY_TAGGER_NAME, DEPLOY_TAGGER_EMAIL)):
    """`git tag ARGS` as `who` (the tagger of an annotated tag is the committer identity)."""
    with mp.context() as env:
        env.setenv("GIT_COMMITTER_NAME", who[0])
        env.setenv("GIT_COMMITTER_EMAIL", who[1])
        git("tag", *args)


RUN = "run: https://github.com/pangeo-data/pangeo-cloud/actions/runs/4242"


@pytest.mark.parametrize(
    "forgery, needle",
    [
        ("lightweight", "is a lightweight tag, not a pass"),
        ("other-commit", "points at commit"),
        ("someone-else", "was made by 'mallory <mallory@example.com>'"),
        ("no-run", "names no workflow run"),
        ("renamed", "is a tag object made as"),
    ],
)
def test_forged_pass_is_refused(git_repo, monkeypatch, forgery: str, needle: str) -> None:
    paths, git = git_repo
    base = git("rev-parse", "HEAD")
    sha = _commit(paths, git, "helm-chart/pangeo-cloud/values.yaml", "# x\n", "chart change")
    tag = tag_name(DEP, "staging", sha)
    if forgery == "lightweight":
        _tag(monkeypatch, git, tag, sha)
    elif forgery == "other-commit":
        _tag(monkeypatch, git, "-a", tag, "-m", f"passed\n{RUN}", base)
    elif forgery == "someone-else":
        _tag(
            monkeypatch,
            git,
            "-a",
            tag,
            "-m",
            f"passed\n{RUN}",
            sha,
            who=("mallory", "mallory@example.com"),
        )
    elif forgery == "no-run":
        _tag(monkeypatch, git, "-a", tag, "-m", "passed, honest", sha)
    else:  # a real-looking tag object made under another name, pushed as this ref
        _tag(monkeypatch, git, "-a", "innocent", "-m", f"passed\n{RUN}", sha)
        git("update-ref", f"refs/tags/{tag}", git("rev-parse", "refs/tags/innocent"))
    with pytest.raises(PromotionError) as info:
        check_promotion(resolve_target(DEP, "prod", paths))
    message = str(info.value)
    assert "\n" not in message
    assert needle in message, message
    assert sha[:12] in message


def test_forged_pass_on_an_earlier_commit_is_not_carried_over(git_repo, monkeypatch) -> None:
    paths, git = git_repo
    base = git("rev-parse", "HEAD")
    # A lightweight tag on the earlier commit, then a change that would carry it over.
    git("tag", tag_name(DEP, "staging", base), base)
    _commit(paths, git, "docs/index.md", "more\n", "docs")
    with pytest.raises(PromotionError, match="no earlier real pass"):
        check_promotion(resolve_target(DEP, "prod", paths))
    # The workflow's pass of the same earlier commit does carry over.
    git("tag", "-d", tag_name(DEP, "staging", base))
    workflow_pass(monkeypatch, paths.root, DEP, "staging", rev=base)
    record = check_promotion(resolve_target(DEP, "prod", paths))
    assert record is not None and record.carried_from == base


def test_pass_recorded_by_hand_does_not_promote(git_repo) -> None:
    """`health --record-pass` on an operator's machine: annotated, but not the workflow's."""
    paths, _ = git_repo
    record_pass(paths.root, DEP, "staging", note="by hand")
    with pytest.raises(PromotionError, match="not by the deploy workflow"):
        check_promotion(resolve_target(DEP, "prod", paths))


def test_recording_over_a_forged_tag_refuses(git_repo, monkeypatch) -> None:
    paths, git = git_repo
    sha = git("rev-parse", "HEAD")
    git("tag", tag_name(DEP, "staging", sha), sha)  # lightweight, under the pass's name
    with pytest.raises(PromotionError, match="exists but is not a pass of"):
        workflow_pass(monkeypatch, paths.root, DEP, "staging")
