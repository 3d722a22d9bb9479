"""`pangeo-cloud deploy DEPLOYMENT STAGE`: validate, decrypt, upgrade atomically."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pangeo_cloud.config import Deployment, Paths, load_deployment, resolve_target
from pangeo_cloud.config.support import SUPPORT_TARGET
from pangeo_cloud.deploy import release
from pangeo_cloud.deploy.support_deploy import deploy_support


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="deploy one stage of a deployment with helm (validated, atomic)",
        description=__doc__ + " Steps: " + ", ".join(release.STEPS) + ". Everything "
        "before `crds` is read-only; a failed upgrade is rolled back by helm (--atomic). "
        "A stage with `requires:` accepts only a commit that passed the required stage.",
    )
    p.add_argument("deployment")
    p.add_argument("stage", help=f"a stage, or `{SUPPORT_TARGET}` for the monitoring release")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print every step, command and values file; no keys, no cluster",
    )
    p.add_argument("--format", choices=["text", "json"], default="text", help="output of --dry-run")
    p.add_argument(
        "--timeout",
        default=release.DEFAULT_TIMEOUT,
        help="helm --timeout for the upgrade (default: %(default)s)",
    )
    p.add_argument(
        "--skip-dependency-build",
        action="store_true",
        help="use the subcharts already in the chart's charts/ directory",
    )
    p.add_argument(
        "--extra-values",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a values file applied last, not validated (test clusters only; repeatable)",
    )
    p.add_argument(
        "--upstream-dir",
        default=None,
        help="upstream charts' values and schemas for validation (as for validate)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = Paths.discover(args.root)
    deployment = load_deployment(args.deployment, paths)
    if args.stage == SUPPORT_TARGET and SUPPORT_TARGET not in deployment.stages:
        return _run_support(args, deployment, paths)
    # An unknown stage: one line, before anything else.
    target = resolve_target(deployment, args.stage, paths)
    options = dict(
        upstream_dir=args.upstream_dir,
        timeout=args.timeout,
        dependency_build=not args.skip_dependency_build,
        extra_values=tuple(args.extra_values),
    )
    if args.dry_run:
        if args.format == "json":
            plan = release.dry_run(target, out=lambda line: None, checks=False, **options)
            json.dump(plan.as_dict(), sys.stdout, indent=2)
            print()
            return 0
        release.dry_run(target, out=_print, **options)
        return 0
    release.deploy(target, out=_print, **options)
    return 0


def _run_support(args: argparse.Namespace, deployment: Deployment, paths: Paths) -> int:
    """`deploy DEPLOYMENT support`: the cluster's monitoring release (helm-chart/support)."""
    if args.extra_values:
        print("--extra-values is for stages only", file=sys.stderr)
        return 2
    plan = deploy_support(
        deployment,
        paths,
        out=(lambda line: None) if args.dry_run and args.format == "json" else _print,
        upstream_dir=args.upstream_dir,
        timeout=args.timeout,
        dependency_build=not args.skip_dependency_build,
        dry_run=args.dry_run,
    )
    if args.dry_run and args.format == "json":
        json.dump(plan.as_dict(), sys.stdout, indent=2)
        print()
    return 0


def _print(line: str) -> None:
    print(line, flush=True)
