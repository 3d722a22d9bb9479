"""`pangeo-cloud plan`: which deployments and stages a change requires redeploying."""

from __future__ import annotations

import argparse
import json
import sys

from pangeo_cloud.config import Paths
from pangeo_cloud.deploy.plan import changed_files, format_text, plan_changes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="list the releases that changed files require redeploying",
        description=__doc__ + " The chart, server-side code, images and shared files "
        "affect every release; deployments/<name>/... that deployment; a stage's own "
        "values or secrets file only that stage; docs, tests and CI files nothing.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--files", nargs="+", metavar="FILE", help="changed paths, relative to the repository root"
    )
    what.add_argument(
        "--git-range",
        metavar="A..B",
        help="the files changed between two commits (A all zeros: all files)",
    )
    what.add_argument("--all", action="store_true", help="every release")
    p.add_argument("--stage", help="only stages with this name (e.g. staging)")
    p.add_argument(
        "--include-local",
        action="store_true",
        help="include deployments with `cloud: local` (not deployed by CI)",
    )
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="json has `matrix` ready for a GitHub Actions matrix",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = Paths.discover(args.root)
    if args.all:
        files = ["helm-chart/pangeo-cloud/Chart.yaml"]
    elif args.git_range:
        files = changed_files(args.git_range, paths.root)
    else:
        files = args.files
    plan = plan_changes(files, paths, stage=args.stage, include_local=args.include_local)
    if args.format == "json":
        json.dump(plan.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(format_text(plan))
    return 0
