"""The support release's generated scrape configuration, checked by Prometheus's own promtool.

`extraScrapeConfigs` (pangeo_cloud.config.support.scrape_configs) is a string
the prometheus chart pastes into prometheus.yml: a mistake there would only
show when the Prometheus pod fails to load its configuration. promtool (from
the same Debian package as the Prometheus the tests run) loads it here, with
the token files at a temporary path instead of the Secret's mount.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from repo_support import REPO_ROOT as REPO

from pangeo_cloud.config import Paths, load_deployment
from pangeo_cloud.config.layering import merge_all, support_layers
from pangeo_cloud.config.support import TOKEN_DIR

PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian's prometheus package, make system)"
)


@pytest.mark.parametrize("name", ["gcp-us-central1-b", "aws-us-west-2"])
def test_generated_scrape_configs_load_in_prometheus(name: str, tmp_path: Path) -> None:
    deployment = load_deployment(name, Paths.discover(REPO))
    values = merge_all(support_layers(deployment, paths=Paths.discover(REPO)))
    text = values["prometheus"]["extraScrapeConfigs"]
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    for stage in deployment.stages:
        (tokens / stage).write_text("token-of-" + stage)
    jobs = yaml.safe_load(text.replace(TOKEN_DIR, str(tokens)))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    # One scrape config per stage and component, the contract's job names after relabelling.
    assert len(jobs) == 2 * len(deployment.stages)


def test_promtool_refuses_a_broken_scrape_config(tmp_path: Path) -> None:
    """The check above can fail: two scrape configs with one job name are refused."""
    job = {"job_name": "jupyterhub", "static_configs": [{"targets": ["hub:8081"]}]}
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": [job, job]}))
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "jupyterhub" in result.stdout + result.stderr
