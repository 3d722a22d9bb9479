"""Deploying a deployment's support release (helm-chart/support).

`pangeo-cloud deploy DEPLOYMENT support`: the steps of a stage's deploy
(:mod:`pangeo_cloud.deploy.release`) without promotion and CRDs: validate
(:func:`pangeo_cloud.deploy.support.validate_support`), tools, decrypt, cluster
(read-only), dependencies, upgrade with rollback on failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pangeo_cloud.config import ConfigError, Deployment, Paths
from pangeo_cloud.config.layering import Layer, support_layers
from pangeo_cloud.config.support import SUPPORT_TARGET, require_support
from pangeo_cloud.deploy import cluster, release, releaseplan
from pangeo_cloud.deploy.sops import SopsDecryptor, plaintext_dir
from pangeo_cloud.deploy.support import validate_support
from pangeo_cloud.deploy.tools import ToolError, find_tool, last_line

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
    support = require_support(deployment)
    plan = releaseplan.DeployPlan(
        deployment, support, paths, releaseplan._values_files(layers), tmp=tmp
    )
    files = plan.place_values(tmp)
    helm_bin, kubectl = releaseplan.tool_or_name("helm"), releaseplan.tool_or_name("kubectl")
    chart = str(paths.support_chart)
    context = cluster.kubectl_context_args(support.kube_context)
    plan.steps = [
        releaseplan.Step("validate", f"every check of `pangeo-cloud validate {plan.target}`"),
        releaseplan.Step("tools", "helm, kubectl" + (", sops" if support.secrets_files else "")),
        releaseplan.Step("decrypt", f"sops decrypts {len(support.secrets_files)} secrets file(s)"),
        releaseplan.Step(
            "cluster",
            "the cluster answers (read-only)",
            [kubectl, "version", "--output=json", *context],
        ),
        releaseplan.Step(
            "dependencies",
            "fetch the pinned prometheus and grafana charts into charts/",
            [helm_bin, "dependency", "build", chart] if dependency_build else None,
        ),
        releaseplan.Step(
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
            release.write_temp_values(plan, tmp, decryptor)
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
