"""The traefik stand-in's routing decisions, as traefik documents them for its CRDs."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

from pangeo_cloud.testing.traefik import Routes, _sni, _terms, parse_args

PREFIX = "/services/dask-gateway"


def routes() -> Routes:
    table = Routes()
    table.middlewares = {
        ("prod", "api-prefix"): {"stripPrefix": {"prefixes": [PREFIX]}},
        ("prod", "clusters-prefix"): {
            "stripPrefixRegex": {"regex": [PREFIX + "/clusters/[a-zA-Z0-9.-]+"]}
        },
    }
    api = f"PathPrefix(`{PREFIX}`)"
    cluster = f"PathPrefix(`{PREFIX}/clusters/prod.abc/`)"
    table.http = [
        {
            "entrypoints": ["web"],
            "priority": len(rule),
            "terms": _terms(rule),
            "namespace": "prod",
            "services": [{"name": name, "port": port}],
            "middlewares": [{"name": mw}],
        }
        for rule, name, port, mw in [
            (cluster, "dask-abc", 8787, "clusters-prefix"),
            (api, "api", 8000, "api-prefix"),
        ]
    ]
    table.tcp = [
        {
            "entrypoints": ["web"],
            "sni": ["daskgateway-prod.abc"],
            "namespace": "prod",
            "services": [{"name": "dask-abc", "port": 8786}],
        }
    ]
    return table


def test_longest_path_prefix_wins_and_its_middleware_strips() -> None:
    table = routes()
    route = table.match_http("web", "h", f"{PREFIX}/clusters/prod.abc/status")
    assert route is not None and route["services"][0]["name"] == "dask-abc"
    assert table.strip(route, f"{PREFIX}/clusters/prod.abc/status") == (
        "/status",
        f"{PREFIX}/clusters/prod.abc",
    )
    api = table.match_http("web", "h", f"{PREFIX}/api/v1/clusters/")
    assert api is not None and api["services"][0]["name"] == "api"
    assert table.strip(api, f"{PREFIX}/api/v1/clusters/")[0] == "/api/v1/clusters/"
    assert table.match_http("web", "h", "/hub/api") is None
    assert table.match_http("other", "h", f"{PREFIX}/api") is None  # not its entrypoint


def test_rules_outside_the_model_are_refused() -> None:
    assert _terms("PathPrefix(`/a`) && Host(`x`)") == [("PathPrefix", "/a"), ("Host", "x")]
    assert _terms("PathRegexp(`^/a`)") is None
    assert _terms("PathPrefix(`/a`) || Host(`x`)") is None


def test_sni_is_read_from_a_real_client_hello() -> None:
    """The ClientHello Python's TLS client sends (what dask's TLS comm sends)."""
    a, b = socket.socketpair()
    context = ssl.create_default_context()

    def hello() -> None:
        # The handshake fails once the peer closes: only its first record matters.
        with contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(a, server_hostname="daskgateway-prod.abc")
        a.close()

    thread = threading.Thread(target=hello, daemon=True)
    thread.start()
    record = b.recv(16384)
    b.close()
    thread.join(10)
    assert _sni(record) == "daskgateway-prod.abc"
    assert routes().match_sni("web", _sni(record) or "") is not None
    assert routes().match_sni("web", "daskgateway-prod.other") is None
    assert _sni(b"\x16\x03\x01\x00\x05garbage") is None


def test_flags_as_the_chart_passes_them() -> None:
    opts = parse_args(
        [
            "--ping=true",
            "--providers.kubernetescrd",
            "--providers.kubernetescrd.labelselector=gateway.dask.org/instance=prod-dask-gateway",
            "--entrypoints.traefik.address=:9000",
            "--entrypoints.web.address=:8000",
        ]
    )
    assert opts["entrypoints"] == {"traefik": ":9000", "web": ":8000"}
    assert opts["ping"] is True
    assert opts["selector"] == "gateway.dask.org/instance=prod-dask-gateway"
