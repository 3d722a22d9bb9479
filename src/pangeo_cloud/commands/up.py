"""`pangeo-cloud up`: run the whole service on this machine, until Ctrl-C.

JupyterHub (with configurable-http-proxy), a local spawner offering the
deployment's profiles, Dask Gateway as a hub service, the idle culler and an
S3-compatible scratch store, as real processes on 127.0.0.1, from the same
merged values Helm receives. See pangeo_cloud.local.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from pangeo_cloud.local.errors import LocalRuntimeError
from pangeo_cloud.local.values import GitHubLogin


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "up",
        help="run the whole service on this machine (JupyterHub, Dask Gateway, scratch store)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--deployment", default="local", help="deployment to run (default: local)")
    p.add_argument("--stage", default="dev", help="stage of the deployment (default: dev)")
    p.add_argument(
        "--port", type=int, default=8000, help="port of the hub on 127.0.0.1 (default: 8000)"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where homes, scratch data, the hub database and logs are kept "
        "(default: .pangeo-local/ in the repository)",
    )
    p.add_argument("--github-client-id", help="log in with GitHub OAuth (this app's client id)")
    p.add_argument("--github-client-secret", help="the GitHub OAuth app's client secret")
    p.add_argument(
        "--github-url",
        default=None,
        help="GitHub's address (default https://github.com; a GitHub Enterprise server "
        "or the test stand-in)",
    )
    p.add_argument(
        "--github-allowed-team",
        action="append",
        default=[],
        metavar="ORG[:TEAM]",
        help="also let members of this GitHub org/team in (repeatable; added to "
        "GitHubOAuthenticator.allowed_organizations)",
    )
    p.add_argument(
        "--github-admin-team",
        action="append",
        default=[],
        metavar="ORG:TEAM",
        help="members of this GitHub team are hub admins (repeatable; added to "
        "custom.pangeo.auth.adminTeams)",
    )
    p.add_argument(
        "--store",
        choices=["auto", "minio", "moto"],
        default="auto",
        help="scratch store: MinIO from scripts/install-objectstore.sh, else moto (default: auto)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    p.set_defaults(func=run)


def _github(args: argparse.Namespace) -> GitHubLogin | None:

    given = [args.github_client_id, args.github_client_secret]
    if not any(given):
        if args.github_url or args.github_allowed_team or args.github_admin_team:
            raise LocalRuntimeError(
                "--github-url/--github-allowed-team need --github-client-id and "
                "--github-client-secret"
            )
        return None
    if not all(given):
        missing = "--github-client-secret" if args.github_client_id else "--github-client-id"
        raise LocalRuntimeError(f"GitHub login needs both client options: add {missing}")
    return GitHubLogin(
        client_id=args.github_client_id,
        client_secret=args.github_client_secret,
        url=args.github_url,
        allowed_organizations=list(args.github_allowed_team),
        admin_teams=list(args.github_admin_team),
    )


def run(args: argparse.Namespace) -> int:
    # Imported when `up` runs: the other commands start without the local runtime.
    from pangeo_cloud.local.runtime import LocalRuntime

    stop = threading.Event()
    received: list[str] = []
    running = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()
        if not running.is_set() and len(received) == 1:
            # Still starting: abandon the start (LocalRuntime.start stops what
            # started). A second Ctrl-C must not interrupt that cleanup.
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    runtime = None
    try:
        runtime = LocalRuntime(
            deployment=args.deployment,
            stage=args.stage,
            port=args.port,
            data_dir=args.data_dir,
            github=_github(args),
            root=args.root,
            store=args.store,
            log_level=args.log_level,
        )
        runtime.prepare()
        print(
            f"pangeo-cloud up: starting deployment {args.deployment}, stage {args.stage} "
            f"(data in {runtime.data_dir})",
            flush=True,
        )
        if runtime.store.kind == "moto" and args.store == "auto":
            print(
                "  note: MinIO is not built (scripts/install-objectstore.sh); the scratch store "
                "is moto's S3 server, which keeps objects in memory only",
                flush=True,
            )
        runtime.start()
        running.set()
        print(runtime.summary(), flush=True)
        while not stop.wait(1.0):
            problem = runtime.failed()
            if problem:
                print(f"pangeo-cloud up: error: {problem}", file=sys.stderr, flush=True)
                return 1
        print(f"\npangeo-cloud up: {received[0]} received, stopping ...", flush=True)
        return 0
    finally:
        if runtime is not None:
            runtime.stop()
            if stop.is_set():
                print("pangeo-cloud up: stopped; homes and scratch data are kept", flush=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
