"""The `pangeo-cloud` command line: one subcommand per operator task.

Each subcommand lives in the module that owns its work and registers itself
with `register(subparsers)`; this module only assembles them and turns the
project's errors (:class:`pangeo_cloud.errors.PangeoError`) into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from pangeo_cloud import __version__
from pangeo_cloud.errors import PangeoError

# Modules providing `register(subparsers)`, in the order `--help` lists them.
COMMAND_MODULES = [
    "pangeo_cloud.commands.validate",
    "pangeo_cloud.commands.render",
    "pangeo_cloud.commands.diff",
    "pangeo_cloud.commands.plan",
    "pangeo_cloud.commands.deploy",
    "pangeo_cloud.commands.health",
    "pangeo_cloud.commands.clusters",
    "pangeo_cloud.commands.up",
    "pangeo_cloud.commands.usage",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pangeo-cloud",
        description="Validate, render, deploy and run the Pangeo Cloud federation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--root", help="repository root (default: found from the current directory)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (PangeoError, FileNotFoundError) as exc:
        print(f"pangeo-cloud {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pangeo-cloud {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if os.environ.get("PANGEO_CLOUD_DEBUG"):
            raise
        print(
            f"pangeo-cloud {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(set PANGEO_CLOUD_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
