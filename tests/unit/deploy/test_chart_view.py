"""helm.chart_view: the umbrella-only copy used when the subcharts are absent."""

from __future__ import annotations

import pytest
import yaml

from pangeo_cloud.deploy import helm
from pangeo_cloud.deploy.tools import ToolError


def _chart(tmp_path):
    chart = tmp_path / "c"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "c",
                "version": "0.1.0",
                "dependencies": [{"name": "jupyterhub", "version": "4.4.0", "repository": "x"}],
            }
        )
    )
    return chart


def test_missing_subcharts_give_an_umbrella_only_copy(tmp_path):
    chart = _chart(tmp_path)
    target = tmp_path / "code.py"
    target.write_text("x = 1\n")
    (chart / "files").mkdir()
    (chart / "files" / "code.py").symlink_to(target)
    with helm.chart_view(chart) as view:
        assert not view.full and view.missing == ("jupyterhub-4.4.0",)
        assert "dependencies" not in yaml.safe_load((view.path / "Chart.yaml").read_text())
        copied = view.path / "files" / "code.py"
        assert not copied.is_symlink() and copied.read_text() == "x = 1\n"
    assert not view.path.exists(), "the copy is removed afterwards"


def test_present_subcharts_use_the_chart_itself(tmp_path):
    chart = _chart(tmp_path)
    (chart / "charts" / "jupyterhub").mkdir(parents=True)
    (chart / "charts" / "jupyterhub" / "Chart.yaml").write_text("name: jupyterhub\n")
    with helm.chart_view(chart) as view:
        assert view.full and view.path == chart


def test_broken_link_is_one_clear_error(tmp_path):
    chart = _chart(tmp_path)
    (chart / "files").mkdir()
    (chart / "files" / "gone.py").symlink_to(tmp_path / "nowhere.py")
    with pytest.raises(ToolError, match="cannot read chart file .*gone.py"), helm.chart_view(chart):
        pass
