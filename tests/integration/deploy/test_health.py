"""`pangeo-cloud health` against a real JupyterHub, Dask Gateway and S3 store on loopback."""

from __future__ import annotations

import json
import urllib.request

import pytest

from pangeo_cloud.deploy.health import HealthError, HealthOptions, Retry, run_health

pytestmark = pytest.mark.integration


def _users(hub) -> list[str]:
    req = urllib.request.Request(
        hub.url + "hub/api/users", headers={"Authorization": f"token {hub.token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return [u["name"] for u in json.load(resp)]


def test_every_step_passes_and_nothing_is_left(loopback_hub) -> None:
    lines: list[str] = []
    done = run_health(
        # This hub has no scratch broker and moto does not enforce prefixes:
        # isolation is checked against `pangeo-cloud up` (test_health_up.py).
        HealthOptions(
            loopback_hub.url,
            loopback_hub.token,
            exec_timeout=300,
            start_timeout=180,
            isolation=False,
        ),
        out=lines.append,
    )
    steps = [line.split()[1] for line in done]
    assert steps == [
        "hub",
        "create-user",
        "start-server",
        "server-ready",
        "user-token",
        "kernel",
        "scratch",
        "dask-gateway",
    ], lines
    scratch = next(line for line in done if line.split()[1] == "scratch")
    assert "s3://pangeo-scratch/health-2dcheck-" in scratch  # escaped name
    dask = next(line for line in done if line.split()[1] == "dask-gateway")
    assert "worker PANGEO_SCRATCH=s3://pangeo-scratch/health-2dcheck-" in dask
    assert lines[-1].startswith("ok   cleanup")
    assert not [u for u in _users(loopback_hub) if u.startswith("health-check-")]


def test_failing_step_is_named_and_cleaned_up(loopback_hub) -> None:
    lines: list[str] = []
    with pytest.raises(HealthError) as info:
        run_health(
            HealthOptions(
                loopback_hub.url,
                loopback_hub.token,
                user="health-check-noscratch",
                dask=False,
                isolation=False,
                start_timeout=180,
            ),
            out=lines.append,
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("health check failed at step 'scratch'")
    assert "PANGEO_SCRATCH is not set" in message
    assert lines[-1].startswith("ok   cleanup")
    assert "health-check-noscratch" not in _users(loopback_hub)


def test_bad_token_fails_at_the_first_step(loopback_hub) -> None:
    with pytest.raises(HealthError, match="step 'hub'.*rejected the token"):
        run_health(
            HealthOptions(loopback_hub.url, "not-a-token", retry=Retry(attempts=1)),
            out=lambda _: None,
        )


def test_cli(loopback_hub, repo_paths, capsys, monkeypatch) -> None:
    import pangeo_cloud.cli as cli

    monkeypatch.setenv("PANGEO_HEALTH_TOKEN", loopback_hub.token)
    code = cli.main(
        [
            "--root",
            str(repo_paths.root),
            "health",
            "local",
            "dev",
            "--hub-url",
            loopback_hub.url,
            "--skip-dask",
            "--skip-isolation",
            "--start-timeout",
            "180",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "healthy: local/dev" in out and "ok   scratch" in out
