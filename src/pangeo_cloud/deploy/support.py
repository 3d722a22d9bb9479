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
from pathlib import Path
from typing import Any

from pangeo_cloud.config import ConfigError, Deployment, Paths
from pangeo_cloud.config.errors import error_list
from pangeo_cloud.config.layering import Decryptor, Layer, merge_all, values_layers
from pangeo_cloud.config.manifests import validate_manifests
from pangeo_cloud.config.secrets import plain_values_errors
from pangeo_cloud.config.support import SUPPORT_TARGET, require_support, support_layers
from pangeo_cloud.config.support_checks import check_hub_login, check_support_schemas
from pangeo_cloud.deploy import helm
from pangeo_cloud.deploy.tools import ToolError


def _note(view: helm.ChartView) -> str:
    if view.full:
        return "full chart with subcharts"
    return (
        "support chart templates only: subcharts "
        + ", ".join(view.missing)
        + " not downloaded (run `helm dependency build helm-chart/support` with network)"
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
    from pangeo_cloud.validate import CheckResult, _scrubber, run_check

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
    scrub = _scrubber(layers)

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
DEPLOY_STEPS = ("validate", "tools", "decrypt", "cluster", "dependencies", "upgrade")


def build_support_plan(
    deployment: Deployment,
    paths: Paths,
    layers: list[Layer],
    *,
    tmp: Any = None,
    timeout: str = "10m",
    dependency_build: bool = True,
) -> Any:
    """The support release's deploy plan (release.DeployPlan), as for a stage."""
    from pangeo_cloud.deploy import cluster, release
    from pangeo_cloud.deploy.tools import find_tool

    support = require_support(deployment)
    plan = release.DeployPlan(
        deployment, support, paths, release._values_files(layers, support), tmp=tmp
    )
    base = tmp or Path(release.TMP)
    for vf in plan.values:
        if vf.kind != "values" and tmp is not None:
            vf.path = tmp / plan._temp_name(vf)
    files = [str(vf.path or base / plan._temp_name(vf)) for vf in plan.values]

    def tool(name: str) -> str:
        try:
            return find_tool(name)
        except ToolError:
            return name  # a dry run needs no tools; the `tools` step reports them

    helm_bin, kubectl = tool("helm"), tool("kubectl")
    chart = str(paths.support_chart)
    context = cluster.kubectl_context_args(support.kube_context)
    plan.steps = [
        release.Step("validate", f"every check of `pangeo-cloud validate {plan.target}`"),
        release.Step("tools", "helm, kubectl" + (", sops" if support.secrets_files else "")),
        release.Step("decrypt", f"sops decrypts {len(support.secrets_files)} secrets file(s)"),
        release.Step(
            "cluster",
            "the cluster answers (read-only)",
            [kubectl, "version", "--output=json", *context],
        ),
        release.Step(
            "dependencies",
            "fetch the pinned prometheus and grafana charts into charts/",
            [helm_bin, "dependency", "build", chart] if dependency_build else None,
        ),
        release.Step(
            "upgrade",
            "install or upgrade the release; roll back on failure",
            [
                helm_bin,
                "upgrade",
                "--install",
                support.release,
                chart,
                "--namespace",
                support.namespace,
                "--create-namespace",
                *[arg for file in files for arg in ("-f", file)],
                "--atomic",
                "--wait",
                "--timeout",
                timeout,
                *cluster.helm_context_args(support.kube_context),
            ],
        ),
    ]
    if not dependency_build:
        plan.step("dependencies").summary = "skipped: use the charts already in charts/"
    return plan


def deploy_support(
    deployment: Deployment,
    paths: Paths,
    *,
    out: Callable[[str], None] = print,
    upstream_dir: str | None = None,
    timeout: str = "10m",
    dependency_build: bool = True,
    dry_run: bool = False,
    decryptor: Any = None,
) -> Any:
    """`pangeo-cloud deploy DEPLOYMENT support`; raises release.DeployError naming the step."""
    import time

    import yaml

    from pangeo_cloud.deploy import cluster, release
    from pangeo_cloud.deploy.sops import SopsDecryptor, plaintext_dir
    from pangeo_cloud.deploy.tools import find_tool, last_line

    support = require_support(deployment)
    target = f"{deployment.name}/{SUPPORT_TARGET}"
    masked = support_layers(deployment, paths=paths)
    preview = build_support_plan(
        deployment, paths, masked, timeout=timeout, dependency_build=dependency_build
    )
    if dry_run:
        out(preview.format())
        out("dry run: nothing was decrypted and no cluster was contacted")
        return preview
    counter = iter(range(1, len(DEPLOY_STEPS) + 1))

    def begin(name: str) -> float:
        out(f"[{next(counter)}/{len(DEPLOY_STEPS)}] {name}: {preview.step(name).summary}")
        return time.monotonic()

    def done(t0: float) -> None:
        out(f"      ok ({time.monotonic() - t0:.1f}s)")

    t0 = begin("validate")
    failed = [r for r in validate_support(deployment, paths, upstream_dir=upstream_dir) if not r.ok]
    if failed:
        detail = f"{failed[0].check}: {failed[0].errors[0] if failed[0].errors else 'failed'}"
        raise release.DeployError(target, "validate", detail)
    done(t0)
    t0 = begin("tools")
    try:
        for name in ("helm", "kubectl", *(["sops"] if support.secrets_files else [])):
            find_tool(name)
    except ToolError as exc:
        raise release.DeployError(target, "tools", str(exc)) from None
    done(t0)
    t0 = begin("decrypt")
    decryptor = decryptor or SopsDecryptor()
    try:
        layers = support_layers(deployment, paths=paths, decrypt=decryptor)
    except (ToolError, ConfigError) as exc:
        raise release.DeployError(target, "decrypt", str(exc)) from None
    done(t0)
    t0 = begin("cluster")
    try:
        cluster.check_with_kubectl(support.kube_context)
    except ToolError as exc:
        raise release.DeployError(target, "cluster", str(exc)) from None
    done(t0)
    try:
        with plaintext_dir("pangeo-deploy-") as tmp:
            plan = build_support_plan(
                deployment,
                paths,
                layers,
                tmp=tmp.path,
                timeout=timeout,
                dependency_build=dependency_build,
            )
            for vf in plan.values:
                if vf.kind == "generated":
                    tmp.write(vf.path.name, yaml.safe_dump(vf.data, sort_keys=False))
                elif vf.kind == "secrets":
                    tmp.write(vf.path.name, decryptor(vf.source))
            for name in ("dependencies", "upgrade"):
                step = plan.step(name)
                t0 = begin(name)
                if step.command:
                    code, output = release.run_forwarding_signals(step.command)
                    if code != 0:
                        raise release.DeployError(target, name, last_line(output))
                done(t0)
    finally:
        decryptor.clear()
    out(f"deployed {target}: release {support.release} in namespace {support.namespace}")
    return plan
