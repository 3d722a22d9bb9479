"""A stand-in for the GKE metadata server's service-account token, on loopback.

In GKE the broker's own Google identity comes from the metadata server
(Workload Identity): ``google.auth.default()`` pings it and then fetches the
bound service account's access token. A broker *process* under test gets its
source token the same way, from this stand-in, by running with
:meth:`GoogleMetadataStandIn.environment` (google-auth's ``GCE_METADATA_HOST``
and ``GCE_METADATA_IP``). Served, as google-auth's ``compute_engine`` module
asks for them, each only with the header ``Metadata-Flavor: Google``:

- ``GET /`` (the ping): 200 with ``Metadata-Flavor: Google``;
- ``GET /computeMetadata/v1/instance/service-accounts/default/?recursive=true``:
  ``{"email", "aliases", "scopes"}``;
- ``GET /computeMetadata/v1/instance/service-accounts/default/token``:
  ``{"access_token", "expires_in", "token_type": "Bearer"}`` with the fixed
  ``token`` (register it with the STS stand-in as a source token).

Anything else is 404, as the real server answers unknown keys
(google-auth then uses its defaults, e.g. for the universe domain).
"""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

from pangeo_cloud.testing.google_sts import JSONHandler, serve_on_loopback, stop_server

__all__ = ["GoogleMetadataStandIn"]

_ACCOUNT = "/computeMetadata/v1/instance/service-accounts/default/"
_FLAVOR = {"Metadata-Flavor": "Google"}


class GoogleMetadataStandIn:
    """Serves one service account's token (see the module docstring)."""

    def __init__(self, token: str, email: str = "scratch-broker@project.iam.gserviceaccount.com"):
        self.token = token
        self.email = email
        self.token_requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        assert self._server is not None, "not started"
        return f"127.0.0.1:{self._server.server_address[1]}"

    def environment(self) -> dict[str, str]:
        """The variables that point google-auth at this stand-in instead of 169.254.169.254."""
        return {"GCE_METADATA_HOST": self.host, "GCE_METADATA_IP": self.host}

    def answer(self, path: str) -> tuple[int, object]:
        """(status, JSON body) for one GET."""
        if path == "/":
            return 200, {}
        if path == _ACCOUNT:
            return 200, {"email": self.email, "aliases": ["default"], "scopes": []}
        if path == _ACCOUNT + "token":
            self.token_requests += 1
            return 200, {"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"}
        return 404, {"error": f"no metadata at {path}"}

    def start(self) -> GoogleMetadataStandIn:
        standin = self

        class Handler(JSONHandler):
            def do_GET(self) -> None:  # http.server's naming
                if self.headers.get("Metadata-Flavor") != "Google":
                    # As the real server: refuse requests that could come from a browser.
                    self.send_json(403, {"error": "Missing Metadata-Flavor: Google header"})
                    return
                status, body = standin.answer(self.path.split("?")[0])
                self.send_bytes(status, json.dumps(body).encode(), "application/json", _FLAVOR)

        self._server, self._thread = serve_on_loopback(Handler, "google-metadata-standin")
        return self

    def stop(self) -> None:
        stop_server(self._server, self._thread)
        self._server = None

    def __enter__(self) -> GoogleMetadataStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
