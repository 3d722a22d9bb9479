"""Deploying one stage: the plan of steps and commands, and running it.

This module owns the deploy procedure of ``pangeo-cloud deploy DEPLOYMENT STAGE``.
Its steps, in order; everything before ``crds`` is read-only, so a bad input
stops the deploy before anything in the cluster changes:

1. ``validate``: every check of ``pangeo-cloud validate`` for the stage;
2. ``promotion``: a stage with ``requires:`` accepts only a commit that passed
   the required stage (:mod:`pangeo_cloud.deploy.promotion`);
3. ``tools``: helm, kubectl and (with secrets) sops are present;
4. ``decrypt``: each secrets file is decrypted in memory with sops;
5. ``cluster``: the stage's cluster answers (``$KUBECONFIG``, ``kubeContext``);
6. ``dependencies``: ``helm dependency build`` fetches the pinned subcharts;
7. ``crds``: the dask-gateway CRDs from the subchart archive are applied with
   ``kubectl apply --server-side`` (Helm installs CRDs once and never upgrades them);
8. ``upgrade``: ``helm upgrade --install --atomic --wait``; on failure helm rolls
   the release back.

The plan (steps, commands and values files, in layer order) comes from
:mod:`pangeo_cloud.deploy.releaseplan`. Generated and decrypted layers are 0600
files in a private temporary directory removed on every exit path
(:func:`pangeo_cloud.deploy.sops.plaintext_dir`). ``dry_run`` prints the whole
plan without keys and without touching a cluster.
"""

from __future__ import annotations

import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from pangeo_cloud.config import ConfigError, Target
from pangeo_cloud.config.layering import Layer, values_layers
from pangeo_cloud.config.model import Stage
from pangeo_cloud.config.recipients import recipient_problems
from pangeo_cloud.deploy import cluster
from pangeo_cloud.deploy.promotion import PromotionError, check_promotion
from pangeo_cloud.deploy.releaseplan import (
    DEFAULT_TIMEOUT,
    STEPS,
    DeployPlan,
    build_plan,
    subchart_archive,
)
from pangeo_cloud.deploy.sops import SopsDecryptor, plaintext_dir
from pangeo_cloud.deploy.tools import ToolError, find_tool, last_line
from pangeo_cloud.deploy.validate import validate_stage
from pangeo_cloud.errors import PangeoError

# How long to let helm finish (and roll back) after we are interrupted.
INTERRUPT_GRACE = 300

# What a failure at each step leaves behind in the cluster.
AFTERMATH = {
    "crds": "the release is unchanged; some CRDs may have been updated",
    "upgrade": "helm --atomic rolled the release back to its previous revision "
    "(or removed a failed first install)",
}
NOTHING_CHANGED = "nothing in the cluster was changed"


class DeployError(PangeoError):
    """A deploy step failed; the message is one line naming the step."""

    def __init__(self, target: str, step: str, detail: str) -> None:
        self.step = step
        aftermath = AFTERMATH.get(step, NOTHING_CHANGED)
        super().__init__(f"deploy {target} failed at step '{step}': {detail}; {aftermath}")


def extract_crds(archive: Path, dest: Path) -> Path:
    """Copy <chart>/crds/*.yaml of a chart archive (or its unpacked directory) to `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    unpacked = archive.parent / archive.name.rsplit("-", 1)[0] / "crds"
    if archive.is_file():
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if (
                    member.isfile()
                    and len(parts) == 3
                    and parts[1] == "crds"
                    and parts[2].endswith((".yaml", ".yml"))
                ):
                    source = tar.extractfile(member)
                    assert source is not None
                    (dest / parts[2]).write_bytes(source.read())
                    count += 1
    elif unpacked.is_dir():
        for crd in sorted(unpacked.glob("*.y*ml")):
            (dest / crd.name).write_bytes(crd.read_bytes())
            count += 1
    else:
        raise ToolError(f"{archive} not found; `helm dependency build` should have made it")
    if not count:
        raise ToolError(f"{archive} holds no crds/*.yaml")
    return dest


def run_forwarding_signals(args: list[str], timeout: float | None = None) -> tuple[int, str]:
    """Run a long command; if we are interrupted, pass the signal on and let it finish.

    helm reacts to SIGINT/SIGTERM by cancelling, and with --atomic it then rolls
    back; killing it outright would leave the release half-upgraded.
    """
    with tempfile.TemporaryFile(mode="w+") as output:
        proc = subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait(INTERRUPT_GRACE)
            raise
        except KeyboardInterrupt as exc:
            proc.send_signal(signal.SIGTERM if "SIGTERM" in str(exc) else signal.SIGINT)
            try:
                proc.wait(INTERRUPT_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        output.seek(0)
        return code, output.read()


Printer = Callable[[str], None]


def _check_validate(target: Target, layers: list[Layer], upstream_dir: str | None) -> None:
    results = validate_stage(target, upstream_dir=upstream_dir, layers=layers)
    failed = [r for r in results if not r.ok]
    if failed:
        first = failed[0]
        detail = f"{first.check}: {first.errors[0] if first.errors else 'failed'}"
        more = f" (+{len(failed) - 1} more failed checks)" if len(failed) > 1 else ""
        raise DeployError(target.name, "validate", detail + more)


def dry_run(
    target: Target,
    *,
    out: Printer = print,
    upstream_dir: str | None = None,
    timeout: str = DEFAULT_TIMEOUT,
    dependency_build: bool = True,
    checks: bool = True,
    extra_values: tuple[Path, ...] = (),
) -> DeployPlan:
    """Print the plan, then run the checks that need neither keys nor a cluster."""
    masked = values_layers(target.deployment, target.stage, paths=target.paths)
    plan = build_plan(
        target,
        masked,
        timeout=timeout,
        dependency_build=dependency_build,
        extra_values=extra_values,
    )
    out(plan.format())
    if checks:
        out("")
        _check_validate(target, masked, upstream_dir)
        out("check validate: ok")
        try:
            record = check_promotion(target)
        except (PromotionError, ToolError) as exc:
            raise DeployError(target.name, "promotion", str(exc)) from None
        out(f"check promotion: {'ok, ' + record.describe() if record else 'no rule'}")
    out("dry run: nothing was decrypted and no cluster was contacted")
    return plan


def _recipients_hint(stage: Stage) -> str:
    """Why decryption may have failed: a file not encrypted for a key its rule names."""
    problems = [p for file in stage.secrets_files for p in recipient_problems(file)]
    return f" (likely cause: {problems[0]})" if problems else ""


def write_temp_values(plan: DeployPlan, tmp: Any, decryptor: SopsDecryptor) -> None:
    """Write the plan's generated layers and decrypted secrets into the private `tmp` dir."""
    for vf in plan.values:
        if vf.kind == "generated":
            tmp.write(vf.path.name, yaml.safe_dump(vf.data, sort_keys=False))
        elif vf.kind == "secrets":
            tmp.write(vf.path.name, decryptor(vf.source))


def deploy(
    target: Target,
    *,
    out: Printer = print,
    upstream_dir: str | None = None,
    timeout: str = DEFAULT_TIMEOUT,
    dependency_build: bool = True,
    decryptor: SopsDecryptor | None = None,
    extra_values: tuple[Path, ...] = (),
) -> DeployPlan:
    """Run every step (see the module docstring); raise DeployError naming the step."""
    deployment, stage, paths = target.deployment, target.stage, target.paths
    total = len(STEPS)
    counter = iter(range(1, total + 1))
    plan: DeployPlan | None = None

    def begin(name: str, summary: str) -> float:
        out(f"[{next(counter)}/{total}] {name}: {summary}")
        return time.monotonic()

    def done(t0: float, note: str = "") -> None:
        out(f"      ok ({time.monotonic() - t0:.1f}s){': ' + note if note else ''}")

    # 1. validate (masked secrets, as in CI; the layers are built once)
    masked = values_layers(deployment, stage, paths=paths)
    preview = build_plan(target, masked, dependency_build=dependency_build)
    t0 = begin("validate", preview.step("validate").summary)
    _check_validate(target, masked, upstream_dir)
    done(t0)
    # 2. promotion
    t0 = begin("promotion", preview.step("promotion").summary)
    try:
        record = check_promotion(target)
    except (PromotionError, ToolError) as exc:
        raise DeployError(target.name, "promotion", str(exc)) from None
    done(t0, record.describe() if record else "")
    # 3. tools
    t0 = begin("tools", preview.step("tools").summary)
    try:
        for name in ("helm", "kubectl", *(["sops"] if stage.secrets_files else [])):
            find_tool(name)
    except ToolError as exc:
        raise DeployError(target.name, "tools", str(exc)) from None
    done(t0)
    # 4. decrypt (in memory)
    t0 = begin("decrypt", preview.step("decrypt").summary)
    decryptor = decryptor or SopsDecryptor()
    try:
        layers = values_layers(deployment, stage, paths=paths, decrypt=decryptor)
    except (ToolError, ConfigError) as exc:
        raise DeployError(target.name, "decrypt", str(exc) + _recipients_hint(stage)) from None
    done(t0)
    # 5. cluster (read-only)
    t0 = begin("cluster", preview.step("cluster").summary)
    try:
        cluster.check_with_kubectl(stage.kube_context)
    except ToolError as exc:
        raise DeployError(target.name, "cluster", str(exc)) from None
    done(t0)
    try:
        with plaintext_dir("pangeo-deploy-") as tmp:
            plan = build_plan(
                target,
                layers,
                tmp=tmp.path,
                timeout=timeout,
                dependency_build=dependency_build,
                extra_values=extra_values,
            )
            write_temp_values(plan, tmp, decryptor)
            _run_cluster_steps(plan, begin, done)
    finally:
        decryptor.clear()
    out(f"deployed {target.name}: release {stage.release} in namespace {stage.namespace}")
    return plan


def _run_cluster_steps(plan: DeployPlan, begin, done) -> None:
    # 6. dependencies
    step = plan.step("dependencies")
    t0 = begin(step.name, step.summary)
    if step.command:
        code, output = run_forwarding_signals(step.command, timeout=600)
        if code != 0:
            raise DeployError(plan.target, step.name, last_line(output))
    done(t0)
    # 7. crds
    step = plan.step("crds")
    t0 = begin(step.name, step.summary)
    try:
        extract_crds(subchart_archive(plan.paths), Path(step.command[-1]))
    except (ToolError, tarfile.TarError) as exc:
        raise DeployError(plan.target, step.name, str(exc)) from None
    code, output = run_forwarding_signals(step.command, timeout=300)
    if code != 0:
        raise DeployError(plan.target, step.name, last_line(output))
    done(t0)
    # 8. upgrade
    step = plan.step("upgrade")
    t0 = begin(step.name, step.summary)
    code, output = run_forwarding_signals(step.command)
    if code != 0:
        raise DeployError(plan.target, step.name, last_line(output))
    done(t0)
