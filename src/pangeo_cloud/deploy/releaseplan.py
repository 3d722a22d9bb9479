"""The plan of one stage's deploy: its steps, their commands and the helm values files.

Built from the stage and its values layers without touching a cluster or a key,
so ``pangeo-cloud deploy --dry-run`` prints exactly what
:func:`pangeo_cloud.deploy.release.deploy` then runs. The values files passed
to helm follow the layer order of :mod:`pangeo_cloud.config.layering` exactly
(after the chart's own values.yaml): the generated stage wiring, the stage's
values files, its decrypted secrets files, then the generated gateway-hooks
layer. Generated and decrypted layers are written to a private temporary
directory (shown as ``<tmp>`` in printed plans).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pangeo_cloud.config import Deployment, Paths, Target
from pangeo_cloud.config.layering import Layer
from pangeo_cloud.config.model import Stage
from pangeo_cloud.deploy import cluster
from pangeo_cloud.deploy.sops import temp_name
from pangeo_cloud.deploy.tools import ToolError, find_tool

DEFAULT_TIMEOUT = "10m"


TMP = "<tmp>"  # the private temporary directory, in printed plans


STEPS = ("validate", "promotion", "tools", "decrypt", "cluster", "dependencies", "crds", "upgrade")


@dataclass
class ValuesFile:
    """One `-f` file of the upgrade, in order."""

    label: str
    kind: str  # the layer's kind: "generated" | "values" | "secrets"
    source: Path | None = None  # the repository file (secrets: the encrypted one)
    path: Path | None = None  # what helm reads (None in a dry run for temp files)
    data: dict[str, Any] | None = None  # generated layers only
    short: str = ""  # generated layers: their short name, for the temp file


@dataclass
class Step:
    name: str
    summary: str
    command: list[str] | None = None


@dataclass
class DeployPlan:
    """The steps and values files of one stage's deploy."""

    deployment: Deployment
    stage: Stage
    paths: Paths
    values: list[ValuesFile]
    steps: list[Step] = field(default_factory=list)
    tmp: Path | None = None

    @property
    def target(self) -> str:
        return f"{self.deployment.name}/{self.stage.name}"

    def show(self, arg: str) -> str:
        """An argument for people: repository paths relative, the temp dir as <tmp>."""
        if self.tmp is not None and arg.startswith(str(self.tmp)):
            arg = TMP + arg[len(str(self.tmp)) :]
        root = str(self.paths.root) + os.sep
        if arg.startswith(root):
            arg = arg[len(root) :]
        return arg

    def show_command(self, command: list[str]) -> str:
        return shlex.join([Path(command[0]).name, *(self.show(a) for a in command[1:])])

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def format(self) -> str:
        st = self.stage
        lines = [
            f"Deploy plan for {self.target}: release {st.release}, namespace {st.namespace}, "
            f"kube context {st.kube_context or '(current)'}",
            "",
            "Steps:",
        ]
        for index, step in enumerate(self.steps, 1):
            lines.append(f"  {index}. {step.name:<12} {step.summary}")
            if step.command:
                lines.append(f"     $ {self.show_command(step.command)}")
        lines += ["", "Values files, lowest first (after the chart's own values.yaml):"]
        for index, vf in enumerate(self.values, 1):
            where = self.show(str(vf.path)) if vf.path else f"{TMP}/{self._temp_name(vf)}"
            origin = (
                f" (decrypted from {self.show(str(vf.source))})" if vf.kind == "secrets" else ""
            )
            lines.append(f"  {index}. {where}  [{vf.label}]{origin}")
        lines.append(
            f"\n{TMP}: a private (0700) temporary directory, removed when the "
            "deploy ends; decrypted files in it are 0600."
        )
        return "\n".join(lines)

    def place_values(self, tmp: Path | None) -> list[str]:
        """The `-f` arguments in order; generated and decrypted files go into `tmp`
        (shown as <tmp>/... in a dry run, where there is none)."""
        if tmp is not None:
            for vf in self.values:
                if vf.kind != "values":
                    vf.path = tmp / self._temp_name(vf)
        return [str(vf.path or Path(TMP) / self._temp_name(vf)) for vf in self.values]

    def _temp_name(self, vf: ValuesFile) -> str:
        index = self.values.index(vf)
        if vf.kind == "secrets" and vf.source is not None:
            return f"{index:02d}-{temp_name(vf.source)}"
        return f"{index:02d}-generated-{vf.short or 'layer'}.yaml"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "release": self.stage.release,
            "namespace": self.stage.namespace,
            "steps": [
                {
                    "name": s.name,
                    "summary": s.summary,
                    "command": [self.show(a) for a in s.command] if s.command else None,
                }
                for s in self.steps
            ],
            "values": [
                {
                    "label": v.label,
                    "kind": v.kind,
                    "file": self.show(str(v.path)) if v.path else f"{TMP}/{self._temp_name(v)}",
                    "source": self.show(str(v.source)) if v.source else None,
                }
                for v in self.values
            ],
        }


def _values_files(layers: list[Layer]) -> list[ValuesFile]:
    """The layers after the chart's values.yaml, as helm -f files (see module docs)."""
    out = []
    for layer in layers:
        if layer.kind == "chart":
            continue  # helm reads the chart's own values.yaml
        if layer.kind == "generated":
            out.append(ValuesFile(layer.name, "generated", data=layer.data, short=layer.short))
        elif layer.kind == "secrets":
            out.append(ValuesFile(layer.name, "secrets", source=layer.path))
        else:
            out.append(ValuesFile(layer.name, "values", source=layer.path, path=layer.path))
    return out


def tool_or_name(name: str) -> str:
    """The tool's path, or its bare name: a dry run needs no tools (the `tools` step
    of a deploy reports a missing one)."""
    try:
        return find_tool(name)
    except ToolError:
        return name


def subchart_archive(paths: Paths, name: str = "dask-gateway") -> Path:
    """charts/<name>-<version>.tgz as `helm dependency build` writes it."""
    meta = yaml.safe_load((paths.chart / "Chart.yaml").read_text())
    for dep in meta.get("dependencies") or []:
        if dep["name"] == name:
            return paths.chart / "charts" / f"{name}-{dep['version']}.tgz"
    raise ToolError(f"{paths.chart / 'Chart.yaml'} has no dependency {name!r}")


def build_plan(
    target: Target,
    layers: list[Layer],
    *,
    tmp: Path | None = None,
    timeout: str = DEFAULT_TIMEOUT,
    dependency_build: bool = True,
    extra_values: tuple[Path, ...] = (),
) -> DeployPlan:
    """The plan; with `tmp` None, temp files are placeholders (a dry run).

    `extra_values` go last and are not validated: for throw-away test clusters
    (CI's kind cluster), never for a stage's real values.
    """
    deployment, stage, paths = target.deployment, target.stage, target.paths
    plan = DeployPlan(deployment, stage, paths, _values_files(layers), tmp=tmp)
    for extra in extra_values:
        extra = Path(extra).resolve()
        plan.values.append(
            ValuesFile(f"extra: {extra.name} (not validated)", "values", extra, extra)
        )
    base = tmp or Path(TMP)
    files = plan.place_values(tmp)
    helm, kubectl = tool_or_name("helm"), tool_or_name("kubectl")
    chart = str(paths.chart)
    archive = subchart_archive(paths)
    crds = base / "crds"
    needed = ["helm", "kubectl"] + (["sops"] if stage.secrets_files else [])
    plan.steps = [
        Step("validate", f"every check of `pangeo-cloud validate {plan.target}`"),
        Step(
            "promotion",
            f"the commit passed {stage.requires}"
            if stage.requires
            else "no `requires:` for this stage",
        ),
        Step("tools", ", ".join(needed) + " present"),
        Step(
            "decrypt",
            f"sops decrypts {len(stage.secrets_files)} secrets file(s) in memory"
            if stage.secrets_files
            else "no secrets files",
        ),
        Step(
            "cluster",
            "the cluster answers (read-only)",
            [
                kubectl,
                "version",
                "--output=json",
                *cluster.kubectl_context_args(stage.kube_context),
            ],
        ),
        Step(
            "dependencies",
            "fetch the pinned subcharts into charts/",
            [helm, "dependency", "build", chart] if dependency_build else None,
        ),
        Step(
            "crds",
            f"apply the dask-gateway CRDs from {plan.show(str(archive))}",
            [
                kubectl,
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=pangeo-cloud",
                *cluster.kubectl_context_args(stage.kube_context),
                "-f",
                f"{crds}/",
            ],
        ),
        Step(
            "upgrade",
            "install or upgrade the release; roll back on failure",
            [
                helm,
                "upgrade",
                "--install",
                stage.release,
                chart,
                "--namespace",
                stage.namespace,
                "--create-namespace",
                *[arg for file in files for arg in ("-f", file)],
                "--atomic",
                "--wait",
                "--timeout",
                timeout,
                *cluster.helm_context_args(stage.kube_context),
            ],
        ),
    ]
    if not dependency_build:
        plan.step("dependencies").summary = "skipped: use the subcharts already in charts/"
    return plan
