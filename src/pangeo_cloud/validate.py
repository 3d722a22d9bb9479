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

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.config import ConfigError, Deployment, Paths, load_deployment, traits
from pangeo_cloud.config.errors import error_list, format_key_path
from pangeo_cloud.config.layering import (
    Decryptor,
    Layer,
    merge,
    merge_all,
    origin,
    values_layers,
)
from pangeo_cloud.config.manifests import load_crds, validate_manifests
from pangeo_cloud.config.promises import check_promises
from pangeo_cloud.config.schemas import (
    UpstreamChart,
    chart_dependencies,
    find_upstream,
    validate_subchart,
    validate_umbrella,
)
from pangeo_cloud.config.secrets import plain_values_errors
from pangeo_cloud.deploy import helm
from pangeo_cloud.deploy.tools import ToolError


@dataclass
class CheckResult:
    """The outcome of one check for one deployment stage."""

    target: str  # deployment/stage
    check: str
    ok: bool
    errors: list[str] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "check": self.check,
            "ok": self.ok,
            "errors": self.errors,
            "note": self.note,
        }


@dataclass
class StageContext:
    """What the checks of one stage share (computed once)."""

    deployment: Deployment
    stage: str
    paths: Paths
    upstream_dir: str | None
    layers: list[Layer] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, UpstreamChart] = field(default_factory=dict)
    manifests: list[dict[str, Any]] | None = None

    @property
    def target(self) -> str:
        return f"{self.deployment.name}/{self.stage}"


def render_values(ctx: StageContext) -> dict[str, Any]:
    """Merged values plus the pinned generated secrets (render only, never deploy)."""
    pinned = helm.RENDER_PINNED_VALUES
    services = ((ctx.values.get("jupyterhub") or {}).get("hub") or {}).get("services") or {}
    optional = {
        name: {"apiToken": token}
        for name, token in helm.RENDER_PINNED_OPTIONAL_TOKENS.items()
        if name in services
    }
    if optional:
        pinned = merge(pinned, {"jupyterhub": {"hub": {"services": optional}}})
    return merge(ctx.values, pinned)


def render(ctx: StageContext) -> tuple[str, helm.ChartView]:
    """`helm template` of one stage; returns the stream and the chart view used."""
    st = ctx.deployment.stage(ctx.stage)
    with helm.chart_view(ctx.paths.chart) as view:
        stream = helm.template(
            view,
            render_values(ctx),
            release=st.release,
            namespace=st.namespace,
            kube_version=ctx.deployment.kubernetes_version,
        )
    return stream, view


def _subchart_note(view: helm.ChartView) -> str:
    if view.full:
        return "full chart with subcharts"
    return (
        "umbrella templates only: subcharts "
        + ", ".join(view.missing)
        + " not downloaded (run `helm dependency build` with network)"
    )


# --- the checks ----------------------------------------------------------------


def check_schemas(ctx: StageContext) -> tuple[list[ConfigError], str]:
    errors: list[ConfigError] = []
    sources = []
    for name, version in chart_dependencies(ctx.paths):
        upstream = find_upstream(name, version, ctx.paths, ctx.upstream_dir)
        ctx.upstream[name] = upstream
        sources.append(f"{name} {version}")
        errors += validate_subchart(ctx.values, upstream, ctx.layers)
    errors += validate_umbrella(ctx.values, ctx.paths, ctx.layers)
    return errors, "against " + ", ".join(sources) + " and the umbrella schema"


def check_promises_(ctx: StageContext) -> tuple[list[ConfigError], str]:
    gateway = ctx.upstream.get("dask-gateway")
    errors = check_promises(
        ctx.deployment,
        ctx.values,
        ctx.layers,
        image_file=ctx.paths.images / "notebook" / "image.yaml",
        gateway_app_version=gateway.app_version if gateway else None,
    )
    return errors, ""


def check_traits(ctx: StageContext) -> tuple[list[ConfigError], str]:
    """Pass-through config (hub.config, kubespawner_override, gateway) vs the real classes."""
    errors: list[ConfigError] = []
    notes = []
    for what, check, versions in (
        ("hub", traits.hub_problems, traits.hub_classes),
        ("gateway", traits.gateway_problems, traits.gateway_classes),
    ):
        try:
            problems = check(ctx.values)
        except traits.Unavailable as exc:
            notes.append(f"{what}: skipped: its packages are not installed ({exc})")
            continue
        notes.append(f"{what}: {versions().versions}")
        for problem in problems:
            file, line = origin(ctx.layers, problem.path)
            errors.append(
                ConfigError(
                    problem.message, file=file, line=line, key_path=format_key_path(problem.path)
                )
            )
    return errors, "; ".join(notes)


def check_lint(ctx: StageContext) -> tuple[list[ConfigError], str]:
    with helm.chart_view(ctx.paths.chart) as view:
        helm.lint(view, render_values(ctx), ctx.deployment.kubernetes_version)
    return [], _subchart_note(view)


def check_manifests(ctx: StageContext) -> tuple[list[ConfigError], str]:
    stream, view = render(ctx)
    ctx.manifests = helm.split_manifests(stream)
    crd_files = sorted(
        ctx.paths.upstream_dirs(ctx.upstream_dir)[-1].glob("dask-gateway-*/crds/*.yaml")
    )
    crds = load_crds(crd_files)
    errors = validate_manifests(ctx.manifests, ctx.deployment.kubernetes_version, crds)
    return errors, (
        f"{len(ctx.manifests)} objects, Kubernetes {ctx.deployment.kubernetes_version}; "
        + _subchart_note(view)
    )


# Checks that render the chart: pointless once the values fail their schemas.
RENDERING_CHECKS = {"helm-lint", "manifests"}
CHECKS: list[tuple[str, Callable[[StageContext], tuple[list[ConfigError], str]]]] = [
    ("schemas", check_schemas),
    ("promises", check_promises_),
    ("traits", check_traits),
    ("helm-lint", check_lint),
    ("manifests", check_manifests),
]


def validate_stage(
    deployment: Deployment,
    stage: str,
    paths: Paths,
    *,
    upstream_dir: str | None = None,
    decrypt: Decryptor | None = None,
    on_result: Callable[[CheckResult], None] | None = None,
    only: set[str] | None = None,
) -> list[CheckResult]:
    """Run every check (or those in `only`) for one stage.

    Files that cannot be loaded stop the stage after `values`; values that fail
    their schemas skip only the rendering checks; a check that crashes is
    reported as an internal error and the others still run.
    """
    ctx = StageContext(deployment, stage, paths, upstream_dir)
    results: list[CheckResult] = []

    def emit(result: CheckResult) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    # Problems of a secrets file fail `values`, but the checks still run (masked).
    secret_problems: list[ConfigError] = []
    try:
        ctx.layers = values_layers(
            deployment, stage, paths=paths, decrypt=decrypt, secret_problems=secret_problems
        )
        ctx.values = merge_all(ctx.layers)
    except ConfigError as exc:
        emit(CheckResult(ctx.target, "values", False, [str(e) for e in error_list(exc)]))
        return results
    except ToolError as exc:
        emit(CheckResult(ctx.target, "values", False, [str(exc)]))
        return results
    for layer in ctx.layers:
        if layer.name.startswith("values: ") and layer.document is not None:
            secret_problems += plain_values_errors(layer.document)
    note = " < ".join(layer.name for layer in ctx.layers)
    emit(
        CheckResult(
            ctx.target, "values", not secret_problems, [str(e) for e in secret_problems], note
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
        scrub = _scrubber(ctx.layers)
        emit(CheckResult(ctx.target, name, not errors, [scrub(e) for e in errors], note))
        schema_failed = schema_failed or (name == "schemas" and bool(errors))
    return results


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


def run_check(
    check: Callable[[StageContext], tuple[list[ConfigError], str]], ctx: StageContext
) -> tuple[list[Any], str]:
    """One check's errors and note; a crash is reported, never stops the other checks."""
    try:
        return check(ctx)
    except ConfigError as exc:
        return error_list(exc), ""
    except ToolError as exc:
        return [exc], ""
    except Exception as exc:  # a bug of ours: say so, and let the other checks run
        return [f"internal error: {type(exc).__name__}: {exc} (please report it)"], ""


def _scrubber(layers: list[Layer]) -> Callable[[Any], str]:
    """An error as text without decrypted secret values (schema messages quote values).

    Only the message is scrubbed, never the file:line: key.path prefix, and a
    value is replaced only where it is not part of a longer word or number.
    """
    secrets = sorted({v for layer in layers for v in layer.secret_values}, key=len, reverse=True)
    pattern = (
        re.compile("|".join(rf"(?<![\w.]){re.escape(v)}(?![\w])" for v in secrets))
        if secrets
        else None
    )

    def scrub(error: Any) -> str:
        if pattern is None:
            return str(error)
        if isinstance(error, ConfigError):
            error = dataclasses.replace(error, message=pattern.sub("<secret>", error.message))
            return str(error)
        return pattern.sub("<secret>", str(error))

    return scrub


def select_targets(selectors: list[str], paths: Paths) -> list[tuple[str, str | None]]:
    """Parse DEPLOYMENT[/STAGE] selectors (all deployments when empty)."""
    from pangeo_cloud.config import list_deployments

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
    from pangeo_cloud.config.yamlpos import Document

    return Document(deployment.directory / "deployment.yaml", None)


def _load_all(paths: Paths) -> list[Deployment]:
    from pangeo_cloud.config import list_deployments

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

    conflicts = shared_releases(_load_all(paths))
    for name, stage in select_targets(selectors, paths):
        try:
            deployment = load_deployment(name, paths)
            stages = [deployment.stage(stage).name] if stage else list(deployment.stages)
        except ConfigError as exc:
            emit(CheckResult(f"{name}/{stage or '*'}", "deployment", False, [str(exc)]))
            continue
        for st in stages:
            conflict = conflicts.get(f"{name}/{st}")
            emit(
                CheckResult(
                    f"{name}/{st}",
                    "deployment",
                    conflict is None,
                    [str(conflict)] if conflict else [],
                    note=str(Path(deployment.directory.name) / "deployment.yaml"),
                )
            )
            results += validate_stage(
                deployment,
                st,
                paths,
                upstream_dir=upstream_dir,
                decrypt=decrypt,
                on_result=on_result,
                only=only,
            )
    return results
