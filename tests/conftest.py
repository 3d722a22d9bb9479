"""Fixtures shared by the whole suite: the repository, its upstream data, tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from repo_support import REPO_ROOT

from pangeo_cloud.config import Paths
from pangeo_cloud.deploy.tools import ToolError, find_tool


@pytest.fixture(scope="session")
def repo_paths() -> Paths:
    return Paths(REPO_ROOT)


@pytest.fixture(scope="session")
def upstream_dir(repo_paths: Paths) -> Path:
    """The upstream charts' values and schemas (see Paths.upstream_dirs)."""
    for candidate in repo_paths.upstream_dirs():
        if (candidate / "jupyterhub-4.4.0" / "values.schema.yaml").is_file() or any(
            candidate.glob("jupyterhub-4.4.0.tgz")
        ):
            return candidate
    pytest.skip(
        "upstream chart schemas not found: need ../shared/upstream beside the "
        "repository, $PANGEO_UPSTREAM_DIR, or `helm dependency build`"
    )


@pytest.fixture(scope="session")
def support_upstream_dir(repo_paths: Paths) -> Path:
    """The monitoring charts' values and schemas (the support release), found like
    upstream_dir: prometheus 29.27.0 and grafana 12.11.1 with their subcharts."""
    needed = ("prometheus-29.27.0", "grafana-12.11.1", "kube-state-metrics-8.4.0")
    for candidate in repo_paths.upstream_dirs():
        if all((candidate / name / "values.yaml").is_file() for name in needed):
            return candidate
    pytest.skip(
        "monitoring chart data not found (" + ", ".join(needed) + "): need "
        "../shared/upstream beside the repository or $PANGEO_UPSTREAM_DIR"
    )


@pytest.fixture(scope="session")
def helm_bin() -> str:
    try:
        return find_tool("helm")
    except ToolError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def repo_copy(tmp_path: Path, upstream_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A writable copy of the chart, deployments and images, for tests that edit them.

    The chart's files/ symlinks into src/ are materialised (symlinks=False).
    """
    root = tmp_path / "repo"
    for part in ("helm-chart", "deployments", "images"):
        shutil.copytree(REPO_ROOT / part, root / part, symlinks=False)
    monkeypatch.setenv("PANGEO_UPSTREAM_DIR", str(upstream_dir))
    return Paths(root)


@pytest.fixture
def edit_yaml():
    """Replace one exact snippet in a file (fails loudly if the snippet is absent)."""

    def edit(path: Path, old: str, new: str) -> None:
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new, 1))

    return edit
