"""The user side of the GCS path: a Google credentials file that refreshes through the broker.

gcsfs, google-cloud-storage, zarr and xarray find credentials with
``google.auth.default()``, which first reads the file named by
``GOOGLE_APPLICATION_CREDENTIALS``. We point that variable at a file of type
``external_account_authorized_user`` (google-auth >= 2.17; gcsfs's
``token="google_default"``, its default, goes through the same function) whose
``token_url`` is the broker's GCS token endpoint. google-auth then fetches a
token from the broker on first use and fetches a new one whenever the current
one is within its refresh margin of expiry (3 min 45 s for google-auth, 5 min
for gcsfs), so a job that runs for many token lifetimes keeps working and user
code changes not at all.

The protocol (OAuth 2.0 refresh, RFC 6749 section 6, as google-auth sends it)::

    POST <token_url>
    Authorization: Basic base64("scratch-credentials:public")   # ignored by the broker
    Content-Type: application/x-www-form-urlencoded

    grant_type=refresh_token&refresh_token=<the JupyterHub API token>

    200 {"access_token": "...", "expires_in": 3600, "token_type": "Bearer"}
    4xx/5xx {"error": "invalid_grant", "error_description": "one line saying why"}

The "refresh token" is the user's JupyterHub token (it must carry the broker's
access scope); the broker answers with a downscoped token for that user's
prefix only. google-auth requires a client id and secret to refresh; they are
the fixed public values below, because the token alone authenticates the
caller. The file holds that token, so it is written 0600 to a non-persistent
place (not the home directory).

Bring your own credentials: explicit credentials win because they never reach
``google.auth.default()``: ``gcsfs.GCSFileSystem(token=...)``,
``storage.Client(credentials=...)``, or setting ``GOOGLE_APPLICATION_CREDENTIALS``
to one's own key file before the first use. (``gcloud auth
application-default login`` alone does not win: google-auth prefers the
variable over gcloud's file; ``unset GOOGLE_APPLICATION_CREDENTIALS`` to use it.)

Standard library only: it can run in a user's server (``python -m
pangeo_cloud.broker.google_client PATH --token-url URL``) without the broker's
dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "CREDENTIALS_TYPE", "credentials_info", "write_file"]

CREDENTIALS_TYPE = "external_account_authorized_user"
# Required by google-auth to refresh; public by design (see the module docstring).
CLIENT_ID = "scratch-credentials"
CLIENT_SECRET = "public"


def credentials_info(token_url: str, hub_token: str, quota_project: str | None = None) -> dict:
    """The JSON content of the credentials file for one user's server."""
    if not token_url.startswith(("https://", "http://")):
        raise ValueError(f"token_url must be an http(s) URL, got {token_url!r}")
    if not hub_token:
        raise ValueError("the JupyterHub token is empty")
    info: dict[str, Any] = {
        "type": CREDENTIALS_TYPE,
        "token_url": token_url,
        "refresh_token": hub_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    if quota_project:
        info["quota_project_id"] = quota_project
    return info


def write_file(path: str | os.PathLike[str], info: dict) -> Path:
    """Write ``info`` to ``path`` atomically, readable only by its owner (0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 by mkstemp, so the token is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(info, out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    """Write the credentials file for this server from its environment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="where to write the file (GOOGLE_APPLICATION_CREDENTIALS)")
    parser.add_argument("--token-url", required=True, help="the broker's GCS token endpoint")
    parser.add_argument(
        "--token-env",
        default="JUPYTERHUB_API_TOKEN",
        help="environment variable holding the JupyterHub token (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    token = os.environ.get(args.token_env, "")
    if not token:
        print(f"google_client: ${args.token_env} is not set", file=sys.stderr)
        return 2
    try:
        # No quota project: it would need serviceusage permission the downscoped token lacks.
        info = credentials_info(args.token_url, token)
    except ValueError as exc:
        print(f"google_client: {exc}", file=sys.stderr)
        return 2
    write_file(args.path, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
