"""Upstream chart schemas are found in every layout helm accepts, at the pinned version only."""

from __future__ import annotations

import shutil

import pytest

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.schemas import find_upstream


def _unpacked(tmp_path, upstream_dir, version: str):
    chart = tmp_path / "charts" / "jupyterhub"
    shutil.copytree(upstream_dir / "jupyterhub-4.4.0", chart)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: jupyterhub\nversion: {version}\n")
    return tmp_path / "charts"


def test_an_unpacked_subchart_of_the_pinned_version_is_used(tmp_path, upstream_dir, repo_paths):
    charts = _unpacked(tmp_path, upstream_dir, "4.4.0")
    chart = find_upstream("jupyterhub", "4.4.0", repo_paths, explicit=charts)
    assert chart is not None


def test_an_unpacked_subchart_of_another_version_is_not(tmp_path, upstream_dir, repo_paths):
    charts = _unpacked(tmp_path, upstream_dir, "4.3.0")
    paths = type(repo_paths)(tmp_path / "repo")  # a root with no other upstream data
    with pytest.raises(ConfigError, match="no values schema for jupyterhub 4.4.0"):
        find_upstream("jupyterhub", "4.4.0", paths, explicit=charts)
