"""`pangeo-cloud health` failures that need no hub: one line naming the step."""

from __future__ import annotations

import contextlib
import http.server
import threading
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


# --- where the admin token goes (issue 14) -------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request's path and Authorization header; answers as configured."""

    seen: list[tuple[str, str | None]]
    redirect_to: str | None = None

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.end_headers()
            return
        self.send_response(401)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _server(redirect_to: str | None = None):
    handler = type("Handler", (_Recorder,), {"seen": [], "redirect_to": redirect_to})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler.seen
    finally:
        server.shutdown()
        server.server_close()


def _health(repo_paths, *args: str) -> int:
    import pangeo_cloud.cli as cli

    return cli.main(["--root", str(repo_paths.root), "health", *args, "--attempts", "1"])


def test_token_is_not_sent_to_another_host(repo_paths, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PANGEO_HEALTH_TOKEN", "admin-token")
    with _server() as (url, seen):
        # gcp-us-central1-b/prod's own host is its domain, not this loopback server.
        assert _health(repo_paths, "gcp-us-central1-b", "prod", "--hub-url", url) == 1
        err = capsys.readouterr().err
        assert "refusing to send the admin token to '127.0.0.1'" in err
        assert "us-central1-b.gcp.pangeo.io" in err and "--allow-other-host" in err
        assert len(err.strip().splitlines()) == 1
        assert seen == []
        # Told so, it goes there (and the hub there rejects it).
        code = _health(
            repo_paths, "gcp-us-central1-b", "prod", "--hub-url", url, "--allow-other-host"
        )
        assert code == 1
        assert seen and seen[0] == ("/hub/api/", "token admin-token")


def test_token_file(repo_paths, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PANGEO_HEALTH_TOKEN", "from-the-environment")
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    with _server() as (url, seen):
        assert (
            _health(repo_paths, "local", "dev", "--hub-url", url, "--token-file", str(token_file))
            == 1
        )
        assert seen[0][1] == "token from-the-file"
        seen.clear()
        assert _health(repo_paths, "local", "dev", "--hub-url", url) == 1
        assert seen[0][1] == "token from-the-environment"
    missing = tmp_path / "missing"
    assert _health(repo_paths, "local", "dev", "--hub-url", url, "--token-file", str(missing)) == 1
    assert f"--token-file {missing}: cannot read it" in capsys.readouterr().err


def test_redirect_to_another_host_does_not_carry_the_token() -> None:
    with _server() as (other, other_seen), _server(redirect_to=other.rstrip("/")) as (url, seen):
        with pytest.raises(HealthError, match="step 'hub'.*refusing to follow a redirect"):
            run_health(HealthOptions(url, "admin-token", retry=Retry(attempts=1)), out=print)
        assert seen == [("/hub/api/", "token admin-token")]
        assert other_seen == []
