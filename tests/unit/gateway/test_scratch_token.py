"""The gateway's broker-only worker token: what it asks the hub for, and its failures.

The hub is a loopback HTTP server recording the request (the real hub's answer
is exercised in tests/integration/scratch, where workers use the token).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pangeo_cloud.gateway.scratch_token import worker_scratch_env

SCRATCH = {"url": "s3://b", "broker": {"url": "http://broker/services/scratch-credentials/"}}


def hub_standin(status: int, answer: dict) -> tuple[ThreadingHTTPServer, list[dict]]:
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server API
            length = int(self.headers["Content-Length"])
            seen.append(
                {
                    "path": self.path,
                    "auth": self.headers["Authorization"],
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            self.send_response(status)
            self.end_headers()
            self.wfile.write(json.dumps(answer).encode())

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_no_broker_no_token():
    assert worker_scratch_env({"url": "s3://b"}, "alice") == {}


def test_token_of_the_owner_with_only_the_broker_scope(monkeypatch):
    server, seen = hub_standin(201, {"token": "worker-token"})
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{server.server_address[1]}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "gateway-token")
    try:
        env = worker_scratch_env(SCRATCH, "Jane.Doe")
    finally:
        server.shutdown()
    assert env == {"PANGEO_SCRATCH_BROKER_TOKEN": "worker-token"}
    assert seen == [
        {
            "path": "/hub/api/users/Jane.Doe/tokens",
            "auth": "token gateway-token",
            "body": {
                "scopes": ["access:services!service=scratch-credentials"],
                "expires_in": 604800,
                "note": "dask-gateway workers: scratch credentials only",
            },
        }
    ]


def test_a_refusal_reaches_the_user_as_one_clear_error(monkeypatch):
    server, _ = hub_standin(403, {"message": "no permission to generate tokens"})
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{server.server_address[1]}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "gateway-token")
    try:
        with pytest.raises(ValueError) as exc:
            worker_scratch_env(SCRATCH, "alice")
    finally:
        server.shutdown()
    assert "could not get scratch credentials for your workers (hub answered 403" in str(exc.value)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    with pytest.raises(ValueError, match="the gateway has no hub token"):
        worker_scratch_env(SCRATCH, "alice")
