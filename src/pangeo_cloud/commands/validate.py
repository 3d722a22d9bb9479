"""`pangeo-cloud validate [DEPLOYMENT[/STAGE] ...]`: a line per check, a summary."""

from __future__ import annotations

import argparse
import json
import os
import sys

from pangeo_cloud.config import Paths
from pangeo_cloud.config.layering import Decryptor
from pangeo_cloud.deploy.sops import SopsDecryptor
from pangeo_cloud.deploy.validate import CheckResult, validate_all

# Where sops finds an age key without being told (besides the environment).
_KEY_VARIABLES = ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY")


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
    p.add_argument(
        "--decrypt",
        choices=["auto", "always", "never"],
        default="auto",
        help="decrypt the secrets files with sops, which verifies their MAC (auto: when "
        "SOPS_AGE_KEY_FILE or SOPS_AGE_KEY is set); without, they are checked offline",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="warnings fail too (e.g. a secrets file not encrypted for every recipient "
        "its .sops.yaml rule names)",
    )
    p.set_defaults(func=run)


def decryptor(mode: str) -> Decryptor | None:
    """The sops decryptor to use, or None to check secrets offline only."""
    if mode == "never" or (mode == "auto" and not any(os.environ.get(v) for v in _KEY_VARIABLES)):
        return None
    return SopsDecryptor()


def _print_text(result: CheckResult) -> None:
    mark = "ok  " if result.ok else "FAIL"
    note = f"  ({result.note})" if result.note and result.ok else ""
    print(f"{mark} {result.target:<28} {result.check}{note}", flush=True)
    for error in result.errors:
        print(f"       {error}", flush=True)
    for warning in result.warnings:
        print(f"  warn {warning}", flush=True)


def run(args: argparse.Namespace) -> int:
    paths = Paths.discover(args.root)
    text = args.format == "text"
    results = validate_all(
        args.targets,
        paths,
        upstream_dir=args.upstream_dir,
        decrypt=decryptor(getattr(args, "decrypt", "auto")),
        on_result=_print_text if text else None,
    )
    strict = getattr(args, "strict", False)
    failed = [r for r in results if not r.ok or (strict and r.warnings)]
    warned = sum(len(r.warnings) for r in results)
    targets = sorted({r.target for r in results})
    if text:
        bad = sorted({r.target for r in failed})
        summary = f"\n{len(targets)} stage(s) checked, {len(results)} checks, {len(failed)} failed"
        if bad:
            summary += f": {', '.join(bad)}"
        if warned:
            summary += f"; {warned} warning(s)" + (" (--strict: they fail)" if strict else "")
        print(summary)
    else:
        json.dump(
            {"ok": not failed, "results": [r.as_dict() for r in results]}, sys.stdout, indent=2
        )
        print()
    return 1 if failed else 0
