"""Validating and rendering a deployment's support release (helm-chart/support).

`pangeo-cloud validate` checks it as the target ``DEPLOYMENT/support`` after the
deployment's stages, `pangeo-cloud render DEPLOYMENT support` prints it. The
checks, in order: ``values`` (the layers of :mod:`pangeo_cloud.config.support`,
sops files checked offline or decrypted), ``schemas`` and ``hub-login``
(:mod:`pangeo_cloud.config.support_checks`), ``helm-lint`` and ``manifests``
(with the real ``helm``; without the downloaded subcharts only the chart's own
templates, and the note says so).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pangeo_cloud.config import ConfigError, Deployment, Paths
from pangeo_cloud.config.errors import error_list
from pangeo_cloud.config.layering import Decryptor, Layer, merge_all, support_layers, values_layers
from pangeo_cloud.config.manifests import validate_manifests
from pangeo_cloud.config.secrets import plain_values_errors
from pangeo_cloud.config.support import SUPPORT_TARGET, require_support
from pangeo_cloud.config.support_checks import check_hub_login, check_support_schemas
from pangeo_cloud.deploy import helm
from pangeo_cloud.deploy.checks import CheckResult, run_check, scrubber
from pangeo_cloud.deploy.tools import ToolError


def _note(view: helm.ChartView) -> str:
    return helm.subchart_note(
        view, "support chart templates", "helm dependency build helm-chart/support"
    )


def render_support(
    deployment: Deployment, values: dict[str, Any], paths: Paths
) -> tuple[str, helm.ChartView]:
    """`helm template` of the support release with the merged values."""
    support = require_support(deployment)
    with helm.chart_view(paths.support_chart) as view:
        stream = helm.template(
            view,
            values,
            release=support.release,
            namespace=support.namespace,
            kube_version=deployment.kubernetes_version,
        )
    return stream, view


def validate_support(
    deployment: Deployment,
    paths: Paths,
    *,
    upstream_dir: str | None = None,
    decrypt: Decryptor | None = None,
    on_result: Callable[[Any], None] | None = None,
    only: set[str] | None = None,
) -> list[Any]:
    """Every check of the support release; one CheckResult per check (module docstring)."""
    support = require_support(deployment)
    target = f"{deployment.name}/{SUPPORT_TARGET}"
    results: list[Any] = []

    def emit(result: Any) -> None:
        results.append(result)
        if on_result:
            on_result(result)

    problems: list[ConfigError] = []
    try:
        layers = support_layers(deployment, paths=paths, decrypt=decrypt, secret_problems=problems)
    except (ConfigError, ToolError) as exc:
        errors = error_list(exc) if isinstance(exc, ConfigError) else [exc]
        emit(CheckResult(target, "values", False, [str(e) for e in errors]))
        return results
    for layer in layers:
        if layer.name.startswith("values: ") and layer.document is not None:
            problems += plain_values_errors(layer.document)
    note = " < ".join(layer.name for layer in layers)
    emit(CheckResult(target, "values", not problems, [str(e) for e in problems], note))
    values = merge_all(layers)
    scrub = scrubber(layers)

    def schemas(_: Any) -> tuple[list[Any], str]:
        return check_support_schemas(values, layers, paths, upstream_dir)

    def hub_login(_: Any) -> tuple[list[Any], str]:
        stage_layers = {
            name: values_layers(deployment, name, paths=paths, generated=False)
            for name in deployment.stages
        }
        stage_values = {name: merge_all(ls) for name, ls in stage_layers.items()}
        errors = check_hub_login(deployment, support, values, layers, stage_values, stage_layers)
        domain = deployment.stages[support.login_stage].domain
        return errors, f"Grafana at https://{domain}/services/grafana/, hub admins only"

    def lint(_: Any) -> tuple[list[Any], str]:
        with helm.chart_view(paths.support_chart) as view:
            helm.lint(view, values, deployment.kubernetes_version)
        return [], _note(view)

    def manifests(_: Any) -> tuple[list[Any], str]:
        stream, view = render_support(deployment, values, paths)
        docs = helm.split_manifests(stream)
        errors = validate_manifests(docs, deployment.kubernetes_version, {})
        return errors, f"{len(docs)} objects, Kubernetes {deployment.kubernetes_version}; " + _note(
            view
        )

    failed_schema = False
    for name, check in (
        ("schemas", schemas),
        ("hub-login", hub_login),
        ("helm-lint", lint),
        ("manifests", manifests),
    ):
        if only is not None and name not in only:
            continue
        if failed_schema and name in ("helm-lint", "manifests"):
            continue  # rendering invalid values only repeats the errors less clearly
        errors, note = run_check(check, None)
        emit(CheckResult(target, name, not errors, [scrub(e) for e in errors], note))
        failed_schema = failed_schema or (name == "schemas" and bool(errors))
    return results


def support_values(
    deployment: Deployment, paths: Paths, decrypt: Decryptor | None = None
) -> tuple[list[Layer], dict[str, Any]]:
    """The support release's layers and merged values (for `render`)."""
    layers = support_layers(deployment, paths=paths, decrypt=decrypt)
    return layers, merge_all(layers)


# --- deploy ---------------------------------------------------------------------------

# The stage deploy's steps without `promotion` (the support release serves every
# stage; there is no staging copy of it) and `crds` (its charts bring none).
