"""`pangeo-cloud health DEPLOYMENT STAGE`: a test user's server, scratch and Dask, for real.

The token is an admin service's: it is read from a file (``--token-file``), the
environment (``$PANGEO_HEALTH_TOKEN``) or the stage's decrypted secrets, so it
need not appear in a command line (``--token`` still works, but every local
user can read a command line), and it is sent only to the stage's own host
(its ``domain``; loopback for a stage without one) unless
``--allow-other-host`` says otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import urllib.parse
from pathlib import Path

import yaml

from pangeo_cloud.config import ConfigError, Paths, load_deployment
from pangeo_cloud.deploy.health import HealthOptions, Retry, run_health
from pangeo_cloud.deploy.promotion import record_pass
from pangeo_cloud.deploy.sops import SopsDecryptor

TOKEN_ENV = "PANGEO_HEALTH_TOKEN"
SERVICE = "health-check"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="end-to-end check of a running hub: user server, scratch, Dask Gateway",
        description=__doc__ + " Creates a throw-away user through the hub's REST API, "
        "starts its server, checks $PANGEO_SCRATCH and a one-worker Dask Gateway cluster "
        "inside it, then removes everything. Exit 1 names the failing step.",
    )
    p.add_argument("deployment")
    p.add_argument("stage")
    p.add_argument("--hub-url", help="the hub's address (default: https://<stage domain>/)")
    token = p.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        help=f"an admin service token (default: ${TOKEN_ENV}, else the "
        f"`{SERVICE}` service token from the stage's decrypted secrets); prefer "
        "--token-file or the variable, which do not show in the process list",
    )
    token.add_argument("--token-file", type=Path, help="read the token from this file")
    p.add_argument(
        "--allow-other-host",
        action="store_true",
        help="send the token to --hub-url even when its host is not the stage's domain",
    )
    p.add_argument(
        "--user",
        help="name of the throw-away test user, which must not exist (default: "
        "health-check-<random>); an existing user is refused, never deleted",
    )
    p.add_argument("--profile", help="profile slug to start the server with")
    p.add_argument(
        "--start-timeout",
        type=float,
        default=600,
        help="seconds to wait for the server (default: %(default)s)",
    )
    p.add_argument(
        "--exec-timeout",
        type=float,
        default=600,
        help="seconds for each check inside the server (default: %(default)s)",
    )
    p.add_argument(
        "--attempts",
        type=int,
        default=5,
        help="attempts per HTTP request on transient errors (default: %(default)s)",
    )
    p.add_argument("--skip-dask", action="store_true", help="skip the Dask Gateway check")
    p.add_argument("--skip-scratch", action="store_true", help="skip the scratch check")
    p.add_argument(
        "--skip-isolation",
        action="store_true",
        help="skip the scratch-credentials broker and prefix isolation checks",
    )
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument(
        "--record-pass",
        action="store_true",
        help="on success, tag the current commit passed/<deployment>/<stage>/<sha>",
    )
    p.set_defaults(func=run)


def _token_from_secrets(deployment, stage) -> str | None:
    with SopsDecryptor() as decrypt:
        for file in stage.secrets_files:
            data = yaml.safe_load(decrypt(file)) or {}
            service = (((data.get("jupyterhub") or {}).get("hub") or {}).get("services") or {}).get(
                SERVICE
            ) or {}
            if service.get("apiToken"):
                return str(service["apiToken"])
    return None


def run(args: argparse.Namespace) -> int:
    paths = Paths.discover(args.root)
    deployment = load_deployment(args.deployment, paths)
    stage = deployment.stage(args.stage)
    hub_url = args.hub_url or (f"https://{stage.domain}/" if stage.domain else None)
    if not hub_url:
        raise ConfigError(f"{deployment.name}/{stage.name} has no `domain`; pass --hub-url")
    check_token_host(hub_url, stage.domain, allow_other=args.allow_other_host)
    token = (
        read_token_file(args.token_file)
        or args.token
        or os.environ.get(TOKEN_ENV)
        or _token_from_secrets(deployment, stage)
    )
    if not token:
        raise ConfigError(
            f"no hub token: pass --token-file or --token, set ${TOKEN_ENV}, or add "
            f"jupyterhub.hub.services.{SERVICE}.apiToken to the stage's secrets"
        )
    opts = HealthOptions(
        hub_url=hub_url,
        token=token,
        user=args.user,
        profile=args.profile,
        start_timeout=args.start_timeout,
        exec_timeout=args.exec_timeout,
        dask=not args.skip_dask,
        scratch=not args.skip_scratch,
        isolation=not args.skip_isolation,
        retry=Retry(attempts=max(1, args.attempts)),
        insecure=args.insecure,
    )
    run_health(opts, out=lambda line: print(line, flush=True))
    print(f"healthy: {deployment.name}/{stage.name} at {hub_url}")
    if args.record_pass:
        tag = record_pass(
            paths.root, deployment.name, stage.name, note=f"health: all steps ok at {hub_url}"
        )
        print(f"recorded pass: {tag}")
        from pangeo_cloud.deploy.pass_tags import pass_problem
        from pangeo_cloud.deploy.promotion import resolve

        problem = pass_problem(paths.root, tag, resolve(paths.root))
        if problem:
            # Recorded by hand: a record for people, not a pass promotion accepts.
            print(f"note: promotion will not accept it: {problem}")
    return 0


def read_token_file(path: Path | None) -> str | None:
    """The token in `path` (surrounding whitespace removed); None without a path."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--token-file {path}: cannot read it ({exc})") from None
    if not token or "\n" in token:
        raise ConfigError(f"--token-file {path}: must hold one token on one line")
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token_host(hub_url: str, domain: str | None, *, allow_other: bool) -> None:
    """Refuse to send the admin token anywhere but the stage's own host, unless allowed."""
    host = (urllib.parse.urlsplit(hub_url).hostname or "").lower().rstrip(".")
    own = domain.lower() if domain else None
    if allow_other or host == own or (own is None and _is_loopback(host)):
        return
    expected = f"the stage's domain {own}" if own else "loopback (the stage has no domain)"
    raise ConfigError(
        f"refusing to send the admin token to {host or hub_url!r}: it is not {expected}; "
        "pass --allow-other-host if this host is the stage's hub (e.g. a port-forward)"
    )
