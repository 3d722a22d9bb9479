"""The real Prometheus that `up` and the usage report use: config, scrape, query errors."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from wait_support import wait_for

from pangeo_cloud.local.prometheus import (
    PrometheusError,
    PrometheusServer,
    ScrapeTarget,
    find_prometheus,
)
from pangeo_cloud.ports import free_ports

pytestmark = pytest.mark.skipif(
    find_prometheus() is None, reason="prometheus not installed (make system installs it)"
)

TOKEN = "scrape-token-for-test"


class _Metrics(http.server.BaseHTTPRequestHandler):
    """A metrics endpoint that, like the hub's, answers only with the right token."""

    seen_auth: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        auth = self.headers.get("Authorization", "")
        self.seen_auth.append(auth)
        if auth != f"Bearer {TOKEN}":
            self.send_response(403)
            self.end_headers()
            return
        body = b"# TYPE test_things gauge\ntest_things 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hub/metrics"
    server.shutdown()


def test_scrapes_with_bearer_token_and_answers_queries(tmp_path: Path, metrics_endpoint) -> None:
    (port,) = free_ports(1)
    target = ScrapeTarget("hub", metrics_endpoint, bearer_token=TOKEN, labels={"stage": "t"})
    server = PrometheusServer(tmp_path / "prom", port, [target], interval_s=1)
    server.start()
    try:
        # The token is in a private file, not in the configuration.
        assert TOKEN not in (tmp_path / "prom" / "prometheus.yml").read_text()
        result = wait_for("a scraped sample", lambda: server.query("test_things"), 60)
        assert result[0]["metric"]["job"] == "hub"
        assert result[0]["metric"]["stage"] == "t"
        assert result[0]["value"][1] == "42"
        assert f"Bearer {TOKEN}" in _Metrics.seen_auth
        with pytest.raises(PrometheusError, match="refused the query"):
            server.query("sum(")
    finally:
        server.stop()


def test_unreachable_prometheus_is_one_clear_error() -> None:
    from pangeo_cloud.local.prometheus import query

    (port,) = free_ports(1)
    with pytest.raises(PrometheusError, match="cannot be reached"):
        query(f"http://127.0.0.1:{port}", "up")
