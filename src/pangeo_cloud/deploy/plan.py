"""Which deployments and stages a set of changed files requires redeploying.

This module owns the mapping from a changed path to the releases it affects:

* the chart, server-side code under ``src/pangeo_cloud`` (what the hub and the
  gateway run, and what generates values), images, ``pyproject.toml``, shared
  files directly under ``deployments/``, and any path no rule knows: **every**
  deployment and stage (unknown paths are treated conservatively);
* ``deployments/<name>/deployment.yaml``: every stage of that deployment;
* a values or secrets file of ``deployments/<name>/``: the stages that list it
  (every stage of that deployment when no stage does, e.g. a deleted file);
* documentation, tests, CI workflows, scripts, lint configuration and the
  client-only parts of the CLI (commands, plan, diff, health, promotion, the
  local runtime): **nothing**.

Only deployments on a cloud (not ``cloud: local``) are deployment targets unless
asked. The same rules decide whether a staging pass carries over to a later
commit (:mod:`pangeo_cloud.deploy.promotion`).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pangeo_cloud.config import ConfigError, Deployment, Paths, list_deployments, load_deployment
from pangeo_cloud.deploy.tools import ToolError

# Paths (prefixes end with "/") that never change what runs in a cluster.
NO_DEPLOY_PREFIXES = (
    "docs/",
    "tests/",
    "benchmarks/",
    ".github/",
    "seed/",
    "scripts/",
    "src/pangeo_cloud/commands/",
    "src/pangeo_cloud/testing/",
    "src/pangeo_cloud/local/",
    "src/pangeo_cloud.egg-info/",
)
NO_DEPLOY_FILES = {
    "src/pangeo_cloud/cli.py",
    "src/pangeo_cloud/py.typed",
    "src/pangeo_cloud/deploy/plan.py",
    "src/pangeo_cloud/deploy/health.py",
    "src/pangeo_cloud/deploy/hubapi.py",
    "src/pangeo_cloud/deploy/diff.py",
    "src/pangeo_cloud/deploy/promotion.py",
    "Makefile",
    ".gitignore",
    ".gitattributes",
    ".yamllint.yaml",
    ".pre-commit-config.yaml",
    # Creation rules only: each encrypted file carries its own recipients.
    ".sops.yaml",
    "LICENSE",
    "LICENSE.txt",
}
NO_DEPLOY_SUFFIXES = (".md", ".rst")
# Paths that change every release.
ALL_PREFIXES = {
    "helm-chart/": "the chart",
    "src/pangeo_cloud/": "server-side code",
    "images/": "an image",
}
ALL_FILES = {"pyproject.toml": "package versions"}


@dataclass(frozen=True)
class Effect:
    """What one changed path requires: all releases, some of one deployment, or nothing."""

    scope: str  # "all" | "deployment" | "none"
    reason: str
    deployment: str | None = None
    stages: tuple[str, ...] | None = None  # None: every stage of `deployment`


@dataclass(frozen=True)
class Target:
    """One release to (re)deploy."""

    deployment: str
    stage: str
    cloud: str
    release: str
    namespace: str
    requires: str | None

    @property
    def name(self) -> str:
        return f"{self.deployment}/{self.stage}"


@dataclass
class Plan:
    """The releases to redeploy, why, and what each changed file did."""

    targets: dict[Target, list[str]] = field(default_factory=dict)
    effects: dict[str, Effect] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    def as_dict(self) -> dict[str, Any]:
        targets = [
            {
                "deployment": t.deployment,
                "stage": t.stage,
                "cloud": t.cloud,
                "release": t.release,
                "namespace": t.namespace,
                "requires": t.requires,
                "reasons": reasons,
            }
            for t, reasons in self.targets.items()
        ]
        include = [{k: v for k, v in t.items() if k != "reasons"} for t in targets]
        return {
            "any": bool(targets),
            "targets": targets,
            # For a GitHub Actions matrix: strategy.matrix: ${{ fromJSON(...matrix) }}
            "matrix": {"include": include},
            "files": {
                path: {"scope": e.scope, "reason": e.reason} for path, e in self.effects.items()
            },
        }


def _stage_files(deployment: Deployment, paths: Paths) -> dict[str, set[str]]:
    """Repository-relative file -> stages listing it (values and secrets)."""
    out: dict[str, set[str]] = {}
    for stage in deployment.stages.values():
        for file in (*stage.values_files, *stage.secrets_files):
            rel = Path(file).resolve().relative_to(paths.root.resolve()).as_posix()
            out.setdefault(rel, set()).add(stage.name)
    return out


def classify(path: str, deployments: dict[str, Deployment], paths: Paths) -> Effect:
    """The effect of changing `path` (relative to the repository root, `/`-separated)."""
    path = PurePosixPath(path).as_posix()
    parts = path.split("/")
    if path in NO_DEPLOY_FILES or path.endswith(NO_DEPLOY_SUFFIXES):
        return Effect("none", "documentation or tooling")
    if path.startswith(NO_DEPLOY_PREFIXES):
        return Effect("none", f"{parts[0]}/ does not run in the cluster")
    if path in ALL_FILES:
        return Effect("all", ALL_FILES[path])
    for prefix, what in ALL_PREFIXES.items():
        if path.startswith(prefix):
            return Effect("all", what)
    if parts[0] == "deployments" and len(parts) == 2:
        return Effect("all", "a file shared by all deployments")
    if parts[0] == "deployments":
        name = parts[1]
        deployment = deployments.get(name)
        if deployment is None:
            return Effect("none", f"deployment {name!r} no longer exists (remove it by hand)")
        if parts[2:] == ["deployment.yaml"]:
            return Effect("deployment", "its deployment.yaml", name)
        stages = _stage_files(deployment, paths).get(path)
        if stages:
            return Effect(
                "deployment",
                "a file of its stage",
                name,
                tuple(s for s in deployment.stages if s in stages),
            )
        return Effect("deployment", "a file no stage lists (every stage, to be safe)", name)
    return Effect("all", "a path no rule knows (every release, to be safe)")


def load_all(paths: Paths) -> dict[str, Deployment]:
    return {name: load_deployment(name, paths) for name in list_deployments(paths)}


def plan_changes(
    files: list[str],
    paths: Paths,
    *,
    stage: str | None = None,
    include_local: bool = False,
    deployments: dict[str, Deployment] | None = None,
) -> Plan:
    """The releases that `files` (changed paths) require redeploying."""
    deployments = load_all(paths) if deployments is None else deployments
    candidates = [
        Target(d.name, s.name, d.cloud, s.release, s.namespace, s.requires)
        for d in deployments.values()
        if include_local or d.cloud != "local"
        for s in d.stages.values()
        if stage is None or s.name == stage
    ]
    plan = Plan()
    for file in sorted(set(files)):
        effect = classify(file, deployments, paths)
        plan.effects[file] = effect
        if effect.scope == "none":
            continue
        for target in candidates:
            hit = effect.scope == "all" or (
                target.deployment == effect.deployment
                and (effect.stages is None or target.stage in effect.stages)
            )
            if hit:
                plan.targets.setdefault(target, []).append(f"{file}: {effect.reason}")
    order = {t: i for i, t in enumerate(candidates)}
    plan.targets = dict(sorted(plan.targets.items(), key=lambda item: order[item[0]]))
    return plan


def git(args: list[str], repo: Path, ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run git in `repo`; another exit code raises ToolError with git's message."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise ToolError("`git` not found on PATH") from None
    if proc.returncode not in ok_codes:
        last = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
        raise ToolError(f"git {args[0]} failed: {last[0]}")
    return proc.stdout


def changed_files(git_range: str, repo: Path) -> list[str]:
    """Paths changed in `A..B` (both names of a rename; `A` all zeros: every file)."""
    base, sep, head = git_range.partition("..")
    head = head.lstrip(".") or "HEAD"
    if not sep:
        raise ConfigError(f"--git-range must look like A..B, got {git_range!r}")
    if not base or set(base) == {"0"}:
        # A new branch (GitHub sends before=000...0): everything in the tree.
        return git(["ls-tree", "-r", "--name-only", head], repo).split()
    return git(["diff", "--name-only", "--no-renames", git_range], repo).split()


def format_text(plan: Plan) -> str:
    lines = []
    if not plan.targets:
        lines.append("nothing to deploy")
    for target, reasons in plan.targets.items():
        lines.append(
            f"deploy {target.name} (release {target.release}, namespace {target.namespace})"
        )
        for reason in reasons[:10]:
            lines.append(f"    {reason}")
        if len(reasons) > 10:
            lines.append(f"    ... and {len(reasons) - 10} more")
    ignored = [p for p, e in plan.effects.items() if e.scope == "none"]
    if ignored:
        lines.append(
            f"{len(ignored)} changed file(s) affect no release: "
            + ", ".join(ignored[:8])
            + (" ..." if len(ignored) > 8 else "")
        )
    return "\n".join(lines)
