"""`pangeo-cloud diff DEPLOYMENT STAGE`: what a deploy would change, secrets masked."""

from __future__ import annotations

import argparse
import sys

from pangeo_cloud.config import Paths, resolve_target
from pangeo_cloud.deploy.diff import diff_stage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff",
        help="unified diff of the rendered manifests against the live release",
        description=__doc__ + " Needs the stage's cluster (KUBECONFIG, kubeContext) and "
        "the keys of its secrets files; Secret data and sops values are masked.",
    )
    p.add_argument("deployment")
    p.add_argument("stage")
    p.add_argument(
        "--no-decrypt",
        action="store_true",
        help="render without decrypting secrets (objects holding them then differ)",
    )
    p.add_argument(
        "--exit-code", action="store_true", help="exit with 2 when there are differences"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = resolve_target(args.deployment, args.stage, Paths.discover(args.root))
    result = diff_stage(target, decrypt=not args.no_decrypt)
    if result.note:
        print(f"# note: {result.note}", file=sys.stderr)
    sys.stdout.write(result.text)
    summary = f"{len(result.changed)} object(s) differ" if result.changed else "no differences"
    print(f"# {target.name}: {summary}", file=sys.stderr)
    return 2 if args.exit_code and result.changed else 0
