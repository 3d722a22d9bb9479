"""Staging before prod: recording that a commit passed a stage, and checking it.

A pass is an annotated git tag ``passed/<deployment>/<stage>/<commit sha>`` on the
commit, made after a deploy of that stage and its health check succeeded. Tags
work the same locally and in GitHub Actions (``git push origin <tag>`` with
``contents: write``), people read them with ``git tag -l 'passed/*' -n3`` or on
GitHub's tags page, and the tag message says when and where (workflow run) the
pass happened.

A stage with ``requires: <other stage>`` accepts a commit when

* the commit has a pass tag for the required stage, or
* some commit ``P`` with such a tag differs from it only in files that do not
  affect the required stage (per :mod:`pangeo_cloud.deploy.plan`), e.g. docs,
  tests, or ``values/prod.yaml``: then the required stage at this commit is
  exactly what passed at ``P``;

and its working tree has no uncommitted change that affects the stage. Only a
real pass counts (:mod:`pangeo_cloud.deploy.pass_tags`): an annotated tag on the
commit, made by the deploy workflow's identity, naming its run. A tag that
fails this is refused with the reason, never skipped silently for the commit
itself; forged tags on earlier commits are not carried over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pangeo_cloud.config import Paths, Target
from pangeo_cloud.deploy.pass_tags import DEPLOY_TAGGER, pass_problem, read_tag
from pangeo_cloud.deploy.plan import git, load_all, plan_changes
from pangeo_cloud.deploy.tools import ToolError
from pangeo_cloud.errors import PangeoError

TAG_PREFIX = "passed"
# How many earlier passes to compare against when the commit itself has none.
MAX_CANDIDATES = 50


class PromotionError(PangeoError):
    """A stage's `requires:` rule is not met; the message is one line."""


@dataclass(frozen=True)
class PassRecord:
    tag: str
    commit: str
    carried_from: str | None = None  # the passed commit, when not the commit itself

    def describe(self) -> str:
        if self.carried_from is None:
            return f"{self.tag}"
        return (
            f"{self.tag} (commit {self.carried_from[:12]}; the changes since then do "
            "not affect that stage)"
        )


def tag_name(deployment: str, stage: str, sha: str) -> str:
    return f"{TAG_PREFIX}/{deployment}/{stage}/{sha}"


def resolve(repo: Path, rev: str = "HEAD") -> str:
    return git(["rev-parse", "--verify", f"{rev}^{{commit}}"], repo).strip()


def record_pass(
    repo: Path, deployment: str, stage: str, *, rev: str = "HEAD", note: str = ""
) -> str:
    """Tag `rev` as having passed `deployment/stage`; returns the tag name (idempotent)."""
    sha = resolve(repo, rev)
    tag = tag_name(deployment, stage, sha)
    existing = git(["tag", "-l", tag], repo).strip()
    if existing:
        found = read_tag(repo, tag)
        if found is None or found.tag != tag or found.type != "commit" or found.object != sha:
            # A forged or broken tag under the pass's name: never vouch for it.
            raise PromotionError(
                f"tag {tag} exists but is not a pass of {sha[:12]} (lightweight, or another "
                "object); delete it (`git tag -d`, and on the remote) and record the pass again"
            )
        return tag
    run_url = ""
    if os.environ.get("GITHUB_RUN_ID"):
        run_url = (
            f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/"
            f"{os.environ.get('GITHUB_REPOSITORY', '')}/actions/runs/"
            f"{os.environ['GITHUB_RUN_ID']}"
        )
    message = "\n".join(
        filter(
            None,
            [
                f"{deployment}/{stage} passed deploy and health check",
                f"at {datetime.now(UTC).isoformat(timespec='seconds')}",
                f"run: {run_url}" if run_url else "",
                note,
            ],
        )
    )
    identity = []
    if not git(["config", "--get", "user.email"], repo, ok_codes=(0, 1)).strip():
        identity = ["-c", "user.name=pangeo-cloud", "-c", "user.email=pangeo-cloud@localhost"]
    git([*identity, "tag", "-a", tag, "-m", message, sha], repo)
    return tag


def _candidates(repo: Path, deployment: str, stage: str) -> list[tuple[str, str]]:
    """(tag, the commit its name claims) of earlier pass tags, newest first."""
    prefix = f"refs/tags/{TAG_PREFIX}/{deployment}/{stage}/"
    out = git(
        [
            "for-each-ref",
            "--sort=-creatordate",
            f"--count={MAX_CANDIDATES}",
            "--format=%(refname)",
            prefix,
        ],
        repo,
    )
    names = [line.strip().removeprefix("refs/tags/") for line in out.splitlines() if line]
    # Whether the tag really points there is pass_problem's question.
    return [(name, name.rsplit("/", 1)[-1]) for name in names]


def find_pass(
    repo: Path,
    paths: Paths,
    deployment: str,
    stage: str,
    rev: str = "HEAD",
    *,
    tagger: str = DEPLOY_TAGGER,
) -> PassRecord | None:
    """The real pass that covers `rev` for `deployment/stage`, if any (see module docs).

    The commit's own tag, if present, must be a real pass: a forged one raises
    PromotionError with the reason. Earlier passes that are not real are skipped.
    """
    sha = resolve(repo, rev)
    own = tag_name(deployment, stage, sha)
    if git(["tag", "-l", own], repo).strip():
        problem = pass_problem(repo, own, sha, tagger)
        if problem:
            raise PromotionError(f"refusing to promote {sha[:12]}: {problem}")
        return PassRecord(own, sha)
    deployments = load_all(paths)
    for tag, commit in _candidates(repo, deployment, stage):
        if pass_problem(repo, tag, commit, tagger):
            continue  # not a real pass: nothing to carry over
        changed = git(["diff", "--name-only", "--no-renames", commit, sha], repo).split()
        plan = plan_changes(
            changed, paths, stage=stage, include_local=True, deployments=deployments
        )
        if f"{deployment}/{stage}" not in plan.names:
            return PassRecord(tag, sha, carried_from=commit)
    return None


def uncommitted_changes(repo: Path, paths: Paths, deployment: str, stages: list[str]) -> list[str]:
    """Uncommitted files that would change what `deployment` deploys for `stages`."""
    status = git(["status", "--porcelain", "--untracked-files=all"], repo)
    files = [line[3:].split(" -> ")[-1].strip('"') for line in status.splitlines() if line]
    if not files:
        return []
    deployments = load_all(paths)
    hits = []
    for stage in stages:
        plan = plan_changes(files, paths, stage=stage, include_local=True, deployments=deployments)
        for target, reasons in plan.targets.items():
            if target.deployment == deployment:
                hits += [r.split(":", 1)[0] for r in reasons]
    return sorted(set(hits))


def check_promotion(
    target: Target,
    *,
    repo: Path | None = None,
    rev: str = "HEAD",
    tagger: str = DEPLOY_TAGGER,
) -> PassRecord | None:
    """Raise PromotionError unless `rev` may be deployed to the target (None: no rule)."""
    deployment, stage, paths = target.deployment, target.stage.name, target.paths
    required = target.stage.requires
    if required is None:
        return None
    repo = repo or paths.root
    try:
        sha = resolve(repo, rev)
    except ToolError as exc:
        raise PromotionError(
            f"{target.name} requires a commit that passed {required}, but the "
            f"commit cannot be determined: {exc}"
        ) from None
    dirty = uncommitted_changes(repo, paths, deployment.name, [stage, required])
    if dirty:
        raise PromotionError(
            f"{target.name} deploys only committed changes that passed {required}; uncommitted: "
            + ", ".join(dirty[:5])
            + (" ..." if len(dirty) > 5 else "")
        )
    record = find_pass(repo, paths, deployment.name, required, sha, tagger=tagger)
    if record is None:
        raise PromotionError(
            f"refusing to deploy {target.name}: commit {sha[:12]} has not passed "
            f"{deployment.name}/{required} (no tag {tag_name(deployment.name, required, sha)} "
            "and no earlier real pass with the same inputs); deploy and health-check "
            f"{required} first"
        )
    return record
