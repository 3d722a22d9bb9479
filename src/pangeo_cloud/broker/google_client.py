"""The user side of the GCS path: Google credentials files that refresh through the broker.

gcsfs, google-cloud-storage, zarr and xarray find credentials with
``google.auth.default()``, which first reads the file named by
``GOOGLE_APPLICATION_CREDENTIALS`` (gcsfs's default, ``token=None``, tries
that function first). We point that variable at a file whose
``token_url`` is the broker's GCS token endpoint (``<broker URL>`` +
:data:`TOKEN_ROUTE`). google-auth fetches a token there on first use and a new
one whenever the current one is within its refresh margin of expiry (3 min 45 s
for google-auth, 5 min for gcsfs), so a job that runs for many token lifetimes
keeps working, and user code changes not at all. Two file types work:

1. **Static, recommended** (:func:`external_account_info`): type
   ``external_account`` with an *executable* credential source, the command
   ``python3 -I -S <this file> subject-token`` (isolated, no site-packages: it
   needs only the standard library and starts fastest so). The file holds no secret (it can be a
   ConfigMap shared by every server and Dask worker); the command prints the
   token of the process's environment (``PANGEO_SCRATCH_BROKER_TOKEN``, the
   workers' broker-only token, else ``JUPYTERHUB_API_TOKEN``) in the executable
   response format, and google-auth exchanges it at the broker (RFC 8693)::

       POST <token_url>   (application/x-www-form-urlencoded)
       grant_type=urn:ietf:params:oauth:grant-type:token-exchange
       &subject_token=<JupyterHub token>&subject_token_type=<SUBJECT_TOKEN_TYPE>
       &audience=<AUDIENCE>&requested_token_type=...access_token&scope=...

   google-auth runs executables only with ``GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1``
   in the environment (set it next to ``GOOGLE_APPLICATION_CREDENTIALS``).
2. **Per server** (:func:`authorized_user_info`, ``write-authorized-user``):
   type ``external_account_authorized_user``, the JupyterHub token as its
   refresh token, written 0600 at server start; google-auth refreshes with::

       POST <token_url>   Authorization: Basic base64("scratch-credentials:public")
       grant_type=refresh_token&refresh_token=<JupyterHub token>

   (google-auth needs a client id and secret to refresh; they are fixed public
   values, the token alone authenticates the caller).

Both get ``200 {"access_token", "expires_in", "token_type": "Bearer"}`` (plus
``issued_token_type`` for the exchange) or ``4xx/5xx {"error",
"error_description"}`` with one line saying why, which google-auth raises as
``OAuthError("Error code <error>: <description>")``. The token the broker
returns is downscoped to the user's own scratch prefix (:mod:`.gcs`).

Bring your own credentials: explicit credentials win because they never reach
``google.auth.default()``: ``gcsfs.GCSFileSystem(token=...)``,
``storage.Client(credentials=...)``, or pointing ``GOOGLE_APPLICATION_CREDENTIALS``
at one's own key file before first use. (``gcloud auth application-default
login`` alone does not win: google-auth prefers the variable over gcloud's
file; ``unset GOOGLE_APPLICATION_CREDENTIALS`` to use it.)

Standard library only and importing nothing of pangeo-cloud: like
:mod:`.client`, this file can be shipped into user servers and Dask workers and
run with ``python3`` where our package is not installed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "AUDIENCE",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "SUBJECT_TOKEN_TYPE",
    "TOKEN_ROUTE",
    "authorized_user_info",
    "external_account_info",
    "subject_token_response",
    "write_file",
]

# The token endpoint, relative to the broker's URL (.../services/scratch-credentials/).
TOKEN_ROUTE = "api/token/gcs"
# What the static file declares and the broker checks: our audience, and the type
# google-auth requires an executable's token to have (the JupyterHub token is opaque).
AUDIENCE = "//pangeo-cloud/services/scratch-credentials"
SUBJECT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
# Required by google-auth to refresh authorized-user credentials; public by design.
CLIENT_ID = "scratch-credentials"
CLIENT_SECRET = "public"
# The executable response format google-auth's pluggable credentials read.
_EXECUTABLE_VERSION = 1
_EXECUTABLE_TIMEOUT_MS = 10_000


def token_url_from(broker_url: str) -> str:
    """The GCS token endpoint of the broker at ``broker_url``."""
    if not broker_url.startswith(("https://", "http://")):
        raise ValueError(f"the broker URL must be http(s), got {broker_url!r}")
    return broker_url.rstrip("/") + "/" + TOKEN_ROUTE


def external_account_info(token_url: str, command: str) -> dict[str, Any]:
    """The static credentials file: ``command`` prints the environment's JupyterHub token."""
    token_url_from(token_url)  # same URL check
    if not command.strip():
        raise ValueError("the subject-token command is empty")
    return {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": SUBJECT_TOKEN_TYPE,
        "token_url": token_url,
        "credential_source": {
            # google-auth splits the command with shlex.split: quote paths with spaces.
            "executable": {"command": command, "timeout_millis": _EXECUTABLE_TIMEOUT_MS}
        },
    }


def authorized_user_info(token_url: str, hub_token: str) -> dict[str, Any]:
    """The per-server credentials file carrying ``hub_token`` as its refresh token."""
    token_url_from(token_url)
    if not hub_token:
        raise ValueError("the JupyterHub token is empty")
    # No quota project: it would need serviceusage permission the downscoped token lacks.
    return {
        "type": "external_account_authorized_user",
        "token_url": token_url,
        "refresh_token": hub_token,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


def environment_token(env: Mapping[str, str]) -> str:
    """The token this process may use at the broker (workers' broker-only token first)."""
    return (env.get("PANGEO_SCRATCH_BROKER_TOKEN") or env.get("JUPYTERHUB_API_TOKEN") or "").strip()


def subject_token_response(env: Mapping[str, str]) -> tuple[dict[str, Any], int]:
    """(executable response, exit status) for ``subject-token``."""
    token = environment_token(env)
    if not token:
        return {
            "version": _EXECUTABLE_VERSION,
            "success": False,
            "code": "NO_TOKEN",
            "message": "neither PANGEO_SCRATCH_BROKER_TOKEN nor JUPYTERHUB_API_TOKEN is set",
        }, 1
    # No expiration_time: the JupyterHub token outlives any one exchange; the
    # broker says when the Google token expires.
    return {
        "version": _EXECUTABLE_VERSION,
        "success": True,
        "token_type": SUBJECT_TOKEN_TYPE,
        "id_token": token,
    }, 0


def write_file(path: str | os.PathLike[str], info: Mapping[str, Any]) -> Path:
    """Write ``info`` to ``path`` atomically, readable only by its owner (0600)."""
    import tempfile
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 by mkstemp, so a token is never readable by others, even briefly.
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
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["subject-token"]:
        # google-auth runs this at every refresh: answer before importing anything more.
        response, status = subject_token_response(os.environ)
        print(json.dumps(response))
        return status
    import argparse

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("subject-token", help="print the token for google-auth (executable source)")
    write = sub.add_parser("write-authorized-user", help="write the per-server credentials file")
    write.add_argument("path", help="where to write it (GOOGLE_APPLICATION_CREDENTIALS)")
    write.add_argument(
        "--token-url",
        help="the broker's GCS token endpoint (default: from PANGEO_SCRATCH_BROKER_URL)",
    )
    args = parser.parse_args(argv)
    try:
        url = args.token_url or token_url_from(os.environ.get("PANGEO_SCRATCH_BROKER_URL", ""))
        info = authorized_user_info(url, environment_token(os.environ))
    except ValueError as exc:
        print(f"google_client: {exc}", file=sys.stderr)
        return 2
    write_file(args.path, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
