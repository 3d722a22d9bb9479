"""`pangeo-cloud health DEPLOYMENT STAGE`: a test user's server, scratch and Dask, for real."""

from __future__ import annotations

import argparse
import os

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
    p.add_argument(
        "--token",
        help=f"an admin service token (default: ${TOKEN_ENV}, else the "
        f"`{SERVICE}` service token from the stage's decrypted secrets)",
    )
    p.add_argument("--user", help="name of the test user (default: health-check-<random>)")
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
    token = args.token or os.environ.get(TOKEN_ENV) or _token_from_secrets(deployment, stage)
    if not token:
        raise ConfigError(
            f"no hub token: pass --token, set ${TOKEN_ENV}, or add "
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
    return 0
