"""`pangeo-cloud health` failures that need no hub: one line naming the step."""

from __future__ import annotations

import time

import pytest

from pangeo_cloud.deploy.health import HealthError, HealthOptions, Retry, run_health


def test_unreachable_hub_retries_then_names_the_step() -> None:
    t0 = time.monotonic()
    with pytest.raises(HealthError) as info:
        run_health(
            HealthOptions("http://127.0.0.1:1/", "token", retry=Retry(attempts=3, base_delay=0.1)),
            out=lambda _: None,
        )
    message = str(info.value)
    assert "\n" not in message and message.startswith("health check failed at step 'hub'")
    assert "127.0.0.1:1" in message
    assert time.monotonic() - t0 >= 0.3  # 0.1 + 0.2 s of backoff


def test_cli_without_token_or_domain(repo_paths, capsys, monkeypatch) -> None:
    import pangeo_cloud.cli as cli

    monkeypatch.delenv("PANGEO_HEALTH_TOKEN", raising=False)
    assert cli.main(["--root", str(repo_paths.root), "health", "local", "dev"]) == 1
    assert "has no `domain`; pass --hub-url" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "--root",
                str(repo_paths.root),
                "health",
                "local",
                "dev",
                "--hub-url",
                "http://127.0.0.1:1/",
            ]
        )
        == 1
    )
    assert "no hub token" in capsys.readouterr().err


def test_a_kernel_error_without_message_says_where_it_was_raised() -> None:
    from pangeo_cloud.deploy.hubapi import kernel_error

    content = {
        "ename": "ValueError",
        "evalue": "",
        "traceback": ["\x1b[0;31mValueError\x1b[0m", 'File "/opt/dask_gateway/client.py", line 9'],
    }
    assert kernel_error(content) == (
        'ValueError with no message (raised at File "/opt/dask_gateway/client.py", line 9)'
    )
    assert kernel_error({"ename": "KeyError", "evalue": "'x'"}) == "KeyError: 'x'"
