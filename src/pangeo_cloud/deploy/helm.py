"""Helm: lint and template the umbrella chart with the real `helm` binary.

Without network the upstream subcharts cannot be downloaded. When they are
present (after `helm dependency build`) the full chart is used; otherwise a
copy of the chart with its dependencies removed renders our own templates
only, and callers say so (`ChartView.full` is False).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pangeo_cloud.config.layering import merge
from pangeo_cloud.config.model import Stage
from pangeo_cloud.deploy.sops import plaintext_dir
from pangeo_cloud.deploy.tools import ToolError, find_tool, run

# Values that z2jh would otherwise generate with `lookup` + random (or read
# from the live Secret): pinned so that `render` output is deterministic.
# Used for rendering only, never for deploying.
RENDER_PINNED_VALUES: dict[str, Any] = {
    "jupyterhub": {
        "hub": {
            "config": {
                "JupyterHub": {"cookie_secret": "0" * 64},
                "CryptKeeper": {"keys": ["1" * 64]},
                "ConfigurableHTTPProxy": {"auth_token": "render-pinned-proxy-token"},
            },
            "services": {
                "dask-gateway": {"apiToken": "render-pinned-dask-gateway-token"},
                "scratch-credentials": {"apiToken": "render-pinned-scratch-credentials-token"},
            },
        }
    }
}


# Services that exist only in some stages (the usage page: config/costs.py), pinned
# only where they are defined (a pinned token alone would define the service).
RENDER_PINNED_OPTIONAL_TOKENS: dict[str, str] = {"usage": "render-pinned-usage-token"}


@dataclass(frozen=True)
class ChartView:
    """A chart directory to hand to helm, and whether it includes the subcharts."""

    path: Path
    full: bool
    missing: tuple[str, ...] = ()


def missing_subcharts(chart: Path) -> list[str]:
    """Dependencies of Chart.yaml with no archive or directory under charts/."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    missing = []
    for dep in meta.get("dependencies") or []:
        name, version = dep["name"], str(dep["version"])
        archive = chart / "charts" / f"{name}-{version}.tgz"
        unpacked = chart / "charts" / name / "Chart.yaml"
        if not archive.is_file() and not unpacked.is_file():
            missing.append(f"{name}-{version}")
    return missing


@contextmanager
def chart_view(chart: Path) -> Iterator[ChartView]:
    """The full chart when its subcharts are present, else an umbrella-only copy."""
    missing = missing_subcharts(chart)
    if not missing:
        yield ChartView(chart, True)
        return
    with tempfile.TemporaryDirectory(prefix="pangeo-chart-") as tmp:
        copy = Path(tmp) / chart.name
        # symlinks=False: files/ links into src/, and the copy must hold the code.
        try:
            shutil.copytree(chart, copy, symlinks=False, ignore=shutil.ignore_patterns("charts"))
        except shutil.Error as exc:
            source, _, reason = exc.args[0][0]
            raise ToolError(f"cannot read chart file {source}: {reason}") from None
        meta = yaml.safe_load((copy / "Chart.yaml").read_text())
        meta.pop("dependencies", None)
        (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        (copy / "Chart.lock").unlink(missing_ok=True)
        yield ChartView(copy, False, tuple(missing))


@contextmanager
def _values_file(values: dict[str, Any]) -> Iterator[Path]:
    """The values as a 0600 file in a private directory removed on every exit path
    (they may hold decrypted secrets)."""
    with plaintext_dir("pangeo-values-") as tmp:
        yield tmp.write("values.yaml", yaml.safe_dump(values, sort_keys=True))


def lint(chart: ChartView, values: dict[str, Any], kube_version: str) -> str:
    """`helm lint --strict` with the merged values; raises ToolError on failure."""
    with _values_file(values) as file:
        result = run(
            [
                find_tool("helm"),
                "lint",
                "--strict",
                str(chart.path),
                "-f",
                str(file),
                "--kube-version",
                f"{kube_version}.0",
            ]
        )
    return result.stdout


def template(
    chart: ChartView,
    values: dict[str, Any],
    *,
    release: str,
    namespace: str,
    kube_version: str | None,
    include_crds: bool = True,
    extra_args: Sequence[str] = (),
) -> str:
    """`helm template` with the merged values: the manifests as one YAML stream.

    `kube_version` None leaves the API version to `extra_args` (e.g.
    `--dry-run=server`, which asks the live cluster).
    """
    args = [find_tool("helm"), "template", release, str(chart.path), "--namespace", namespace]
    if kube_version is not None:
        args += ["--kube-version", f"{kube_version}.0"]
    if include_crds:
        args.append("--include-crds")
    with _values_file(values) as file:
        result = run([*args, "-f", str(file), *extra_args], timeout=300)
    return result.stdout


def split_manifests(stream: str) -> list[dict[str, Any]]:
    """The non-empty documents of a rendered YAML stream."""
    return [doc for doc in yaml.safe_load_all(stream) if doc]


def subchart_note(view: ChartView, what: str, build: str = "helm dependency build") -> str:
    """How much of the chart a check saw: all of it, or `what` (its own templates) only."""
    if view.full:
        return "full chart with subcharts"
    return (
        f"{what} only: subcharts "
        + ", ".join(view.missing)
        + f" not downloaded (run `{build}` with network)"
    )


def render_values(values: dict[str, Any]) -> dict[str, Any]:
    """Merged values plus the pinned generated secrets (rendering only, never deploying).

    Optional services (:data:`RENDER_PINNED_OPTIONAL_TOKENS`) get a pinned token
    only where the values register them.
    """
    pinned = RENDER_PINNED_VALUES
    services = ((values.get("jupyterhub") or {}).get("hub") or {}).get("services") or {}
    optional = {
        name: {"apiToken": token}
        for name, token in RENDER_PINNED_OPTIONAL_TOKENS.items()
        if name in services
    }
    if optional:
        pinned = merge(pinned, {"jupyterhub": {"hub": {"services": optional}}})
    return merge(values, pinned)


def render(
    chart: Path, stage: Stage, kube_version: str, values: dict[str, Any]
) -> tuple[str, ChartView]:
    """The offline `helm template` of one stage; returns the stream and the chart view used."""
    with chart_view(chart) as view:
        stream = template(
            view,
            render_values(values),
            release=stage.release,
            namespace=stage.namespace,
            kube_version=kube_version,
        )
    return stream, view
