"""`pangeo-cloud validate`: every check of a deployment stage, before any action.

For each deployment and stage, in order: the deployment model (and releases
shared across deployments), the values layers (with the offline checks of the
sops files, or their decryption when a key is given), the merged values against
the z2jh, dask-gateway and umbrella schemas, the federation's promises, the
pass-through config against the real traitlets classes, `helm lint --strict`,
`helm template`, and the rendered manifests against the Kubernetes API schemas.
A check that cannot run here (e.g. no `helm`) fails with the reason; nothing
touches a cluster. Each spot (file, line, key path) is reported once, and
decrypted values never appear in a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.config import (
    ConfigError,
    Deployment,
    Paths,
    Target,
    list_deployments,
    load_deployment,
)
from pangeo_cloud.config.errors import error_list
from pangeo_cloud.config.identity import shared_principals
from pangeo_cloud.config.layering import Decryptor, Layer, merge_all, values_layers
from pangeo_cloud.config.recipients import recipient_problems, shared_cloud_keys
from pangeo_cloud.config.secrets import plain_values_errors
from pangeo_cloud.config.support import SUPPORT_TARGET, require_support
from pangeo_cloud.config.yamlpos import Document
from pangeo_cloud.deploy.checks import (
    CHECKS,
    RENDERING_CHECKS,
    CheckResult,
    StageContext,
    run_check,
    scrubber,
)
from pangeo_cloud.deploy.support import validate_support
from pangeo_cloud.deploy.tools import ToolError


def validate_stage(
    target: Target,
    *,
    upstream_dir: str | None = None,
    decrypt: Decryptor | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    only: set[str] | None = None,
    layers: list[Layer] | None = None,
) -> list[CheckResult]:
    """Run every check (or those in `only`) for one stage.

    Files that cannot be loaded stop the stage after `values`; values that fail
    their schemas skip only the rendering checks; a check that crashes is
    reported as an internal error and the others still run. `layers` already
    built for the target (masked, by a deploy) are checked as they are.
    """
    ctx = StageContext(target.deployment, target.stage, target.paths, upstream_dir)
    results: list[CheckResult] = []

    def emit(result: CheckResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    # Problems of a secrets file fail `values`, but the checks still run (masked).
    secret_problems: list[ConfigError] = []
    try:
        ctx.layers = layers or values_layers(
            target.deployment,
            target.stage,
            paths=target.paths,
            decrypt=decrypt,
            secret_problems=secret_problems,
        )
        ctx.values = merge_all(ctx.layers)
    except ConfigError as exc:
        emit(CheckResult(ctx.target, "values", False, [str(e) for e in error_list(exc)]))
        return results
    except ToolError as exc:
        emit(CheckResult(ctx.target, "values", False, [str(exc)]))
        return results
    for layer in ctx.layers:
        if layer.kind == "values" and layer.document is not None:
            secret_problems += plain_values_errors(layer.document)
    note = " < ".join(layer.name for layer in ctx.layers)
    paths, stages = target.paths, target.deployment.stages
    shared = shared_cloud_keys(
        {name: st.secrets_files for name, st in stages.items()},
        target.stage.name,
        lambda file: _relative(file, paths),
    )
    emit(
        CheckResult(
            ctx.target,
            "values",
            not secret_problems and not shared,
            [str(e) for e in secret_problems] + shared,
            note,
            warnings=_recipient_warnings(target),
        )
    )
    schema_failed = False
    reported = _Reported()
    for name, check in CHECKS:
        if only is not None and name not in only:
            continue
        if schema_failed and name in RENDERING_CHECKS:
            # Rendering invalid values only repeats the same errors less clearly.
            continue
        errors, note = run_check(check, ctx)
        errors = [e for e in errors if _first_report(e, name, reported, ctx.values)]
        scrub = scrubber(ctx.layers)
        emit(CheckResult(ctx.target, name, not errors, [scrub(e) for e in errors], note))
        schema_failed = schema_failed or (name == "schemas" and bool(errors))
    return results


def _recipient_warnings(target: Target) -> list[str]:
    """Secrets files not encrypted for every key their .sops.yaml rule names."""
    files = target.stage.secrets_files
    return [line for f in files for line in recipient_problems(f, _relative(f, target.paths))]


def _relative(file: Path, paths: Paths) -> str:
    try:
        return file.resolve().relative_to(paths.root.resolve()).as_posix()
    except ValueError:
        return str(file)


@dataclass
class _Reported:
    """What a stage's checks have reported so far, for :func:`_first_report`."""

    owners: dict[tuple[str, int | None, str], str] = field(default_factory=dict)
    seen: set[tuple[tuple[str, int | None, str], str | None]] = field(default_factory=set)


def _first_report(error: Any, check: str, reported: _Reported, values: Any) -> bool:
    """False for an error about a spot another check already reported.

    The spot is file, line and key path; errors below a value that is not a
    mapping or list (a string where a mapping belongs) are one error about that
    value. One check may still report distinct problems of one spot (two
    promises broken by one list), never the same one twice.
    """
    if not isinstance(error, ConfigError) or error.key_path is None:
        return True
    prefix = _wrong_shape_prefix(values, error.key_path)
    spot = (str(error.file), error.line, prefix or error.key_path)
    if reported.owners.setdefault(spot, check) != check:
        return False
    what = (spot, None if prefix else str(error))
    if what in reported.seen:
        return False
    reported.seen.add(what)
    return True


def _wrong_shape_prefix(values: Any, key_path: str) -> str | None:
    """The part of `key_path` (as formatted) that reaches a scalar it then goes into."""
    rest, done, node = key_path, "", values
    while rest:
        if isinstance(node, dict):
            keys = [k for k in node if rest == k or rest.startswith((f"{k}.", f"{k}["))]
            if not keys:
                return None
            key = max(keys, key=len)
            done, rest, node = done + ("." if done else "") + key, rest[len(key) :], node[key]
            rest = rest.removeprefix(".")
        elif isinstance(node, list):
            match = re.match(r"\[(\d+)\]\.?", rest)
            if not match or int(match.group(1)) >= len(node):
                return None
            done, rest = done + f"[{match.group(1)}]", rest[match.end() :]
            node = node[int(match.group(1))]
        else:
            return done if node is not None else None
    return None


def select_targets(selectors: list[str], paths: Paths) -> list[tuple[str, str | None]]:
    """Parse DEPLOYMENT[/STAGE] selectors (all deployments when empty)."""
    if not selectors:
        return [(name, None) for name in list_deployments(paths)]
    out = []
    for selector in selectors:
        name, _, stage = selector.partition("/")
        out.append((name, stage or None))
    return out


def _cluster(deployment: Deployment, stage: str) -> tuple[Any, ...]:
    """What identifies the cluster a stage deploys to (its kube context when given)."""
    st = deployment.stage(stage)
    if st.kube_context:
        return ("context", st.kube_context)
    c = deployment.cluster
    return (
        deployment.cloud,
        c.get("name"),
        c.get("project") or c.get("account"),
        c.get("region"),
        c.get("zone"),
    )


def shared_releases(deployments: list[Deployment]) -> dict[str, ConfigError]:
    """deployment/stage -> error, for stages that reuse another deployment's release.

    Two deployments on the same cluster (same kube context, or same cloud,
    cluster name, project/account and location) may not use the same release in
    the same namespace: each deploy would overwrite the other.
    """
    owners: dict[tuple[Any, ...], str] = {}
    errors: dict[str, ConfigError] = {}
    for deployment in deployments:
        for name, st in deployment.stages.items():
            key = (*_cluster(deployment, name), st.release, st.namespace)
            target = f"{deployment.name}/{name}"
            other = owners.setdefault(key, target)
            if other != target and other.split("/")[0] != deployment.name:
                errors[target] = (deployment.source or _no_doc(deployment)).error(
                    ("stages", name, "release"),
                    f"release {st.release!r} in namespace {st.namespace!r} on this cluster "
                    f"is already stage {other}: one deploy would overwrite the other; "
                    "use another release name or namespace",
                )
    return errors


def _no_doc(deployment: Deployment) -> Any:
    return Document(deployment.directory / "deployment.yaml", None)


def _load_all(paths: Paths) -> list[Deployment]:
    out = []
    for name in list_deployments(paths):
        try:
            out.append(load_deployment(name, paths))
        except ConfigError:
            continue  # reported when that deployment is validated
    return out


def validate_all(
    selectors: list[str],
    paths: Paths,
    *,
    upstream_dir: str | None = None,
    decrypt: Decryptor | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    only: set[str] | None = None,
) -> list[CheckResult]:
    results: list[CheckResult] = []

    def emit(result: CheckResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    loaded = _load_all(paths)
    conflicts = shared_releases(loaded)
    identities = shared_principals(
        [
            (f"{d.name}/{n}", st.deploy_identity, d.source or _no_doc(d))
            for d in loaded
            for n, st in d.stages.items()
        ]
    )
    for name, stage in select_targets(selectors, paths):
        try:
            deployment = load_deployment(name, paths)
            # `support` names the support release unless a stage has that name (then
            # deployment.yaml may not declare a support release).
            only_support = stage == SUPPORT_TARGET and SUPPORT_TARGET not in deployment.stages
            support = stage is None or only_support
            if only_support:
                require_support(deployment)
                stages = []
            else:
                stages = [deployment.stage(stage).name] if stage else list(deployment.stages)
        except ConfigError as exc:
            emit(CheckResult(f"{name}/{stage or '*'}", "deployment", False, [str(exc)]))
            continue
        for st in stages:
            problems = [
                str(e)
                for e in (conflicts.get(f"{name}/{st}"), identities.get(f"{name}/{st}"))
                if e is not None
            ]
            emit(
                CheckResult(
                    f"{name}/{st}",
                    "deployment",
                    not problems,
                    problems,
                    note=str(Path(deployment.directory.name) / "deployment.yaml"),
                )
            )
            results += validate_stage(
                Target(deployment, deployment.stage(st), paths),
                upstream_dir=upstream_dir,
                decrypt=decrypt,
                on_result=on_result,
                only=only,
            )
        if support and deployment.support is not None:
            # The cluster's monitoring release (helm-chart/support), same commands.
            results += validate_support(
                deployment,
                paths,
                upstream_dir=upstream_dir,
                decrypt=decrypt,
                on_result=on_result,
                only=only,
            )
    return results
