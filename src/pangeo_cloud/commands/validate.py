"""`pangeo-cloud validate [DEPLOYMENT[/STAGE] ...]`: a line per check, a summary."""

from __future__ import annotations

import argparse
import json
import sys

from pangeo_cloud.config import Paths
from pangeo_cloud.validate import CheckResult, validate_all


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate", help="check deployments before anything touches a cluster", description=__doc__
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="DEPLOYMENT[/STAGE]",
        help="what to check (default: every deployment and stage)",
    )
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument(
        "--upstream-dir",
        default=None,
        help="directory with the upstream charts' values and schemas "
        "(default: the chart's charts/, $PANGEO_UPSTREAM_DIR, ../shared/upstream)",
    )
    p.set_defaults(func=run)


def _print_text(result: CheckResult) -> None:
    mark = "ok  " if result.ok else "FAIL"
    note = f"  ({result.note})" if result.note and result.ok else ""
    print(f"{mark} {result.target:<28} {result.check}{note}", flush=True)
    for error in result.errors:
        print(f"       {error}", flush=True)


def run(args: argparse.Namespace) -> int:
    paths = Paths.discover(args.root)
    text = args.format == "text"
    results = validate_all(
        args.targets, paths, upstream_dir=args.upstream_dir, on_result=_print_text if text else None
    )
    failed = [r for r in results if not r.ok]
    targets = sorted({r.target for r in results})
    if text:
        bad = sorted({r.target for r in failed})
        print(
            f"\n{len(targets)} stage(s) checked, {len(results)} checks, "
            f"{len(failed)} failed" + (f": {', '.join(bad)}" if bad else "")
        )
    else:
        json.dump(
            {"ok": not failed, "results": [r.as_dict() for r in results]}, sys.stdout, indent=2
        )
        print()
    return 1 if failed else 0
