"""`pangeo-cloud usage DEPLOYMENT STAGE`: who used what, and what it cost.

Reads Prometheus (``--prometheus URL``; for the local deployment, the one the
running `pangeo-cloud up` started, found from ``--data-dir`` as `up` finds its
data) and prints CPU-hours, memory-GB-hours, Dask worker-hours, scratch bytes
and an estimated cost per user, group or profile (the price table of
deployment.yaml, see :mod:`pangeo_cloud.config.costs`; the figures, see
:mod:`pangeo_cloud.hub.usage_report`). ``--format json`` for scripts,
``--plot FILE.png|FILE.html`` for the usage over time.

Bad input (an unreachable Prometheus, an empty range, a node type without a
price, a plot file that cannot be written) is one line and exit status 1;
nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pangeo_cloud.commands.usage_plot import PlotError, check_target, write_plot
from pangeo_cloud.config import ConfigError, Paths, load_deployment
from pangeo_cloud.hub.promql import PrometheusError, duration_seconds
from pangeo_cloud.hub.usage_report import UsageError, build_report
from pangeo_cloud.hub.usage_table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "usage",
        help="CPU, memory, Dask and scratch usage and estimated cost per user/group/profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("deployment")
    p.add_argument("stage")
    p.add_argument("--since", default="30d", help="range ending now: 30d, 12h, 90m ... (30d)")
    p.add_argument("--by", choices=["user", "group", "profile"], default="user")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--plot", type=Path, metavar="FILE", help="also write FILE.png or FILE.html")
    p.add_argument("--prometheus", metavar="URL", help="Prometheus to read (default: see above)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory of the running `pangeo-cloud up` (default: as for `up`)",
    )
    p.set_defaults(func=run)


def prometheus_url(args: argparse.Namespace, deployment: Any, paths: Any) -> str:
    """--prometheus, else the running `up`'s (local deployment), else an error."""
    if args.prometheus:
        return args.prometheus
    if deployment.cloud != "local":
        raise ConfigError(
            f"{deployment.name} runs on a cluster: pass --prometheus URL (e.g. "
            "http://127.0.0.1:9090 after `kubectl port-forward` to the support release's "
            "Prometheus)"
        )
    from pangeo_cloud.local.runtime import default_data_dir

    data = (args.data_dir or default_data_dir(paths.root)).expanduser().absolute()
    runtime = data / "run" / "runtime.json"
    try:
        rt = json.loads(runtime.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no `pangeo-cloud up` has run with data directory {data} ({runtime} is missing); "
            "start it, or pass --data-dir or --prometheus"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {runtime}: {exc}") from None
    if not rt.get("prometheus"):
        raise ConfigError(f"{runtime} names no Prometheus: this `up` ran without one")
    return str(rt["prometheus"])


def load_costs(deployment: Any, stage: str, paths: Any) -> dict[str, Any]:
    from pangeo_cloud.config import merged_values

    values = merged_values(deployment, stage, paths=paths)
    costs = (((values.get("jupyterhub") or {}).get("custom") or {}).get("pangeo") or {}).get(
        "costs"
    )
    if not costs:
        raise ConfigError(
            "no price table: declare `prices` (currency, perHour per node type) and each node "
            "pool's `nodeType`",
            file=deployment.directory / "deployment.yaml",
        )
    return costs


def run(args: argparse.Namespace) -> int:
    try:
        try:
            since = duration_seconds(args.since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
        if args.plot is not None:
            check_target(args.plot)
        paths = Paths.discover(args.root)
        deployment = load_deployment(args.deployment, paths)
        deployment.stage(args.stage)
        costs = load_costs(deployment, args.stage, paths)
        url = prometheus_url(args, deployment, paths)
        report = build_report(
            url,
            deployment.name,
            args.stage,
            since,
            args.by,
            costs,
            with_plot=args.plot is not None,
        )
        if args.plot is not None:
            write_plot(report, args.plot)
    except (ValueError, UsageError, PlotError, PrometheusError) as exc:
        print(f"pangeo-cloud usage: error: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(format_table(report))
    if args.plot is not None:
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0
