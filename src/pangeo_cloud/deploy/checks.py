"""The checks of one deployment stage, each on the values merged once.

Each check takes the :class:`StageContext` (values, layers and what earlier
checks found) and returns its errors and a note; :mod:`pangeo_cloud.deploy.validate`
runs them in :data:`CHECKS` order and reports each spot once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pangeo_cloud.config import ConfigError, Deployment, Paths, Stage, traits
from pangeo_cloud.config.errors import error_list, format_key_path
from pangeo_cloud.config.layering import Layer, origin
from pangeo_cloud.config.manifests import load_crds, validate_manifests
from pangeo_cloud.config.promises import check_promises
from pangeo_cloud.config.protections import check_protections
from pangeo_cloud.config.schemas import (
    UpstreamChart,
    chart_dependencies,
    find_upstream,
    validate_subchart,
    validate_umbrella,
)
from pangeo_cloud.deploy import helm
from pangeo_cloud.deploy.tools import ToolError


@dataclass
class StageContext:
    """What the checks of one stage share (computed once)."""

    deployment: Deployment
    stage: Stage
    paths: Paths
    upstream_dir: str | None
    layers: list[Layer] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    upstream: dict[str, UpstreamChart] = field(default_factory=dict)
    manifests: list[dict[str, Any]] | None = None

    @property
    def target(self) -> str:
        return f"{self.deployment.name}/{self.stage.name}"


def render(ctx: StageContext) -> tuple[str, helm.ChartView]:
    """`helm template` of the context's stage (see :func:`pangeo_cloud.deploy.helm.render`)."""
    return helm.render(ctx.paths.chart, ctx.stage, ctx.deployment.kubernetes_version, ctx.values)


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


def check_protections_(ctx: StageContext) -> tuple[list[ConfigError], str]:
    """Least privilege: the health-check role, Dask images, pod tokens and isolation."""
    return check_protections(ctx.values, ctx.layers, namespace=ctx.stage.namespace), ""


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
        helm.lint(view, helm.render_values(ctx.values), ctx.deployment.kubernetes_version)
    return [], helm.subchart_note(view, "umbrella templates")


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
        + helm.subchart_note(view, "umbrella templates")
    )


# Checks that render the chart: pointless once the values fail their schemas.
RENDERING_CHECKS = {"helm-lint", "manifests"}
CHECKS: list[tuple[str, Callable[[StageContext], tuple[list[ConfigError], str]]]] = [
    ("schemas", check_schemas),
    ("promises", check_promises_),
    ("protections", check_protections_),
    ("traits", check_traits),
    ("helm-lint", check_lint),
    ("manifests", check_manifests),
]


@dataclass
class CheckResult:
    """The outcome of one check for one deployment stage."""

    target: str  # deployment/stage
    check: str
    ok: bool
    errors: list[str] = field(default_factory=list)
    note: str = ""
    # Problems that do not fail the check unless `validate --strict` (e.g. a secrets
    # file whose recipients differ from .sops.yaml: fixable only with the keys).
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "check": self.check,
            "ok": self.ok,
            "errors": self.errors,
            "note": self.note,
            "warnings": self.warnings,
        }


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


def scrubber(layers: list[Layer]) -> Callable[[Any], str]:
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
