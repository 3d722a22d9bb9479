"""Fetch this user's scratch credentials from the broker and print them for a client library.

Standard library only, and importing nothing of pangeo-cloud: the chart ships
this very file in a ConfigMap mounted into user servers and Dask workers, where
our package is not installed, and runs it with ``python3``. Locally it runs as
``python -m pangeo_cloud.broker.client``.

``aws``: the output format of AWS ``credential_process``, so an AWS config file
with ``credential_process = python3 <this file> aws`` makes botocore (boto3,
s3fs, zarr, xarray...) call it whenever credentials are missing or close to
their ``Expiration``.

Environment:

- ``PANGEO_SCRATCH_BROKER_URL``: the broker's base URL (ending in
  ``/services/scratch-credentials/``);
- ``PANGEO_SCRATCH_BROKER_TOKEN`` (Dask workers: a token whose only scope is
  the broker's) or else ``JUPYTERHUB_API_TOKEN`` (user servers).

Failure: one line on stderr and exit status 1 (botocore shows that line in its
``CredentialRetrievalError``); nothing is ever printed on stdout then.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

TIMEOUT = 10.0
ATTEMPTS = 3  # transient failures (connection refused, 5xx) are retried


class BrokerError(RuntimeError):
    """Why no credentials could be fetched (one line, no secrets)."""


def _settings(env: dict[str, str]) -> tuple[str, str]:
    url = env.get("PANGEO_SCRATCH_BROKER_URL", "").strip()
    token = (
        env.get("PANGEO_SCRATCH_BROKER_TOKEN") or env.get("JUPYTERHUB_API_TOKEN") or ""
    ).strip()
    if not url:
        raise BrokerError("PANGEO_SCRATCH_BROKER_URL is not set: is this a pangeo-cloud server?")
    if not token:
        raise BrokerError(
            "no token: neither PANGEO_SCRATCH_BROKER_TOKEN nor JUPYTERHUB_API_TOKEN is set"
        )
    return url.rstrip("/") + "/api/credentials", token


def _error_line(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read().decode("utf-8", "replace"))["error"])
    except Exception:
        return exc.reason or "no details"


def fetch(env: dict[str, str] | None = None, sleep: Callable[[float], None] = time.sleep) -> dict:
    """The broker's JSON answer for this token, or BrokerError."""
    url, token = _settings(dict(os.environ if env is None else env))
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    last = ""
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            last = f"refused (HTTP {exc.code}: {_error_line(exc)})"
            if exc.code < 500:
                break  # refused: retrying will not change the answer
        except urllib.error.URLError as exc:
            last = f"did not answer ({exc.reason})"
        except (OSError, ValueError) as exc:
            last = f"failed ({type(exc).__name__}: {exc})"
        if attempt + 1 < ATTEMPTS:
            sleep(0.5 * 2**attempt)
    raise BrokerError(f"the scratch-credentials broker at {url} {last}")


def aws(answer: dict) -> dict:
    """The credential_process JSON (checked, so botocore never sees a partial answer)."""
    keys = ("Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
    missing = [key for key in keys if key not in answer]
    if missing:
        raise BrokerError(f"the broker's answer is not S3 credentials (missing {missing})")
    return {key: answer[key] for key in keys}


# Output formats by name; each turns the broker's answer into what its client reads.
MODES: dict[str, Callable[[dict], dict]] = {"aws": aws}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in MODES:
        print(f"usage: client.py {{{','.join(sorted(MODES))}}}", file=sys.stderr)
        return 2
    try:
        out = MODES[args[0]](fetch())
    except BrokerError as exc:
        print(f"scratch credentials: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
