"""Where the repository's parts live: the chart, deployments, images, upstream data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _find_root(start: Path) -> Path:
    for candidate in [start, *start.parents]:
        if (candidate / "helm-chart" / "pangeo-cloud" / "Chart.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        "cannot find the pangeo-cloud repository (helm-chart/pangeo-cloud/Chart.yaml) "
        f"from {start}; run inside the repository or set PANGEO_CLOUD_ROOT"
    )


@dataclass(frozen=True)
class Paths:
    """The repository layout, resolved once from its root."""

    root: Path

    @classmethod
    def discover(cls, root: Path | str | None = None) -> Paths:
        if root is None:
            root = os.environ.get("PANGEO_CLOUD_ROOT")
        if root is not None:
            return cls(Path(root).resolve())
        here = Path(__file__).resolve()
        try:
            return cls(_find_root(Path.cwd().resolve()))
        except FileNotFoundError:
            return cls(_find_root(here.parent))

    @property
    def chart(self) -> Path:
        return self.root / "helm-chart" / "pangeo-cloud"

    @property
    def support_chart(self) -> Path:
        """The chart of each cluster's monitoring release (Prometheus, Grafana)."""
        return self.root / "helm-chart" / "support"

    @property
    def deployments(self) -> Path:
        return self.root / "deployments"

    @property
    def images(self) -> Path:
        return self.root / "images"

    def upstream_dirs(self, explicit: str | Path | None = None) -> list[Path]:
        """Candidate directories holding the upstream charts' values and schemas.

        Order: an explicit option, $PANGEO_UPSTREAM_DIR, the subcharts that
        `helm dependency build` unpacked, then ../shared/upstream beside the repo.
        """
        out: list[Path] = []
        if explicit:
            out.append(Path(explicit))
        if os.environ.get("PANGEO_UPSTREAM_DIR"):
            out.append(Path(os.environ["PANGEO_UPSTREAM_DIR"]))
        out.append(self.chart / "charts")
        out.append(self.root.parent / "shared" / "upstream")
        return out
