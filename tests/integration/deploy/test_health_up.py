"""`pangeo-cloud health` against `pangeo-cloud up` (the local runtime), end to end.

Runs when `pangeo-cloud up` exists and registers an admin service for the check:
its data directory's secrets.json must hold `health_check_token`, the token of a
hub service with the role the clusters pin for `health-check` (its own
throw-away users only: pangeo_cloud.hub.service_users.ISSUER_SCOPES). Otherwise
it skips, saying which part is missing.
"""

from __future__ import annotations

import pytest

from pangeo_cloud.deploy.health import HealthOptions, run_health
from pangeo_cloud.testing.harness import UpProcess

pytestmark = pytest.mark.integration


def test_health_against_pangeo_cloud_up(tmp_path) -> None:
    up = UpProcess(tmp_path / "up").start()
    try:
        token = up.secrets.get("health_check_token")
        if not token:
            pytest.skip(
                "pangeo-cloud up registers no health-check admin service: its "
                "secrets.json has no `health_check_token` (see this module's docstring)"
            )
        done = run_health(
            HealthOptions(up.url, token, start_timeout=240, exec_timeout=300), out=print
        )
        steps = [line.split()[1] for line in done]
        assert steps[1] == "scratch-broker"
        assert steps[-3:] == ["scratch", "scratch-isolation", "dask-gateway"]
        isolation = next(line for line in done if line.split()[1] == "scratch-isolation")
        assert "refused outside s3://pangeo-scratch/health-2dcheck-" in isolation
    finally:
        up.stop(check=False)
