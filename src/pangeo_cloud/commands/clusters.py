"""`pangeo-cloud clusters list|stop DEPLOYMENT STAGE`: every user's Dask clusters, for admins.

Talks to the gateway's admin API (``/services/dask-gateway/api/v1/admin/clusters``
behind the hub's proxy, served by :mod:`pangeo_cloud.gateway.backend`), which
accepts tokens that may stop any user's server (scope ``admin:servers``): a hub
admin's token (from the hub's token page, with that scope). The ``health-check``
service's token no longer does: it reaches only its own throw-away users.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import time
import urllib.parse
from typing import Any

from pangeo_cloud.config import ConfigError, Paths, load_deployment
from pangeo_cloud.deploy.hubapi import Api, HttpError, Retry
from pangeo_cloud.deploy.tools import ToolError

GATEWAY_PATH = "services/dask-gateway/"  # the gateway behind the hub's proxy
ADMIN_PATH = "api/v1/admin/clusters/"
GIB = 2**30
ADMIN_TOKEN_ENV = "PANGEO_ADMIN_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "clusters",
        help="list or stop users' Dask Gateway clusters (admin token)",
        description=__doc__,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="running clusters per user: workers, cores, age")
    _common(listing)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    stop = actions.add_parser("stop", help="stop clusters by name, by user, or all")
    _common(stop)
    stop.add_argument("names", nargs="*", metavar="NAME", help="cluster names to stop")
    stop.add_argument("--user", action="append", default=[], help="stop all of USER's clusters")
    stop.add_argument("--all", action="store_true", help="stop every running cluster")
    p.set_defaults(func=run)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("deployment")
    p.add_argument("stage")
    p.add_argument("--hub-url", help="the hub's address (default: https://<stage domain>/)")
    p.add_argument(
        "--gateway-url",
        help=f"the gateway's address, e.g. through a port-forward (default: <hub>/{GATEWAY_PATH})",
    )
    p.add_argument(
        "--token",
        help=f"a hub admin's token with admin:servers (default: ${ADMIN_TOKEN_ENV})",
    )
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")


def admin_api(gateway_url: str, token: str, insecure: bool = False) -> Api:
    """The admin API of the gateway at `gateway_url` (e.g. <hub>/services/dask-gateway/)."""
    context = ssl._create_unverified_context() if insecure else None
    base = gateway_url.rstrip("/") + "/" + ADMIN_PATH
    return Api(base, token, Retry(attempts=3), context=context)


def list_clusters(api: Api) -> list[dict[str, Any]]:
    """Every active cluster: name, username, status, start_time (ms), workers, cores, memory."""
    _, body = api.request("GET", "")
    return sorted(body["clusters"], key=lambda c: (c["username"], c["start_time"]))


def stop_cluster(api: Api, name: str) -> None:
    api.request("DELETE", urllib.parse.quote(name, safe=""))


def _age(start_ms: int, now: float) -> str:
    minutes = max(0, int(now - start_ms / 1000) // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_table(clusters: list[dict[str, Any]], now: float | None = None) -> str:
    """One line per cluster, grouped by user with the user's totals."""
    now = time.time() if now is None else now
    header = ("USER", "CLUSTER", "STATUS", "WORKERS", "CORES", "MEMORY", "AGE", "KEPT")
    rows = [header]
    users: dict[str, list[dict[str, Any]]] = {}
    for c in clusters:
        users.setdefault(c["username"], []).append(c)
    for user, own in users.items():
        for c in own:
            rows.append(
                (
                    user,
                    c["name"],
                    c["status"],
                    str(c["workers"]),
                    f"{c['cores']:g}",
                    f"{c['memory'] / GIB:.1f}G",
                    _age(c["start_time"], now),
                    "yes" if c["kept"] else "",
                )
            )
        if len(own) > 1:
            rows.append(
                (
                    user,
                    f"(total of {len(own)})",
                    "",
                    str(sum(c["workers"] for c in own)),
                    f"{sum(c['cores'] for c in own):g}",
                    f"{sum(c['memory'] for c in own) / GIB:.1f}G",
                    "",
                    "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(f"{len(clusters)} cluster(s) of {len(users)} user(s)")
    return "\n".join(line.rstrip() for line in lines)


def _targets(args: argparse.Namespace, clusters: list[dict[str, Any]]) -> list[str]:
    if not (args.names or args.user or args.all):
        raise ConfigError("name the clusters to stop, or pass --user USER or --all")
    if args.all:
        return [c["name"] for c in clusters]
    known = {c["name"] for c in clusters}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise ConfigError(f"no running cluster named {', '.join(unknown)} (see `clusters list`)")
    return list(args.names) + [c["name"] for c in clusters if c["username"] in args.user]


def run(args: argparse.Namespace) -> int:
    paths = Paths.discover(args.root)
    deployment = load_deployment(args.deployment, paths)
    stage = deployment.stage(args.stage)
    hub_url = args.hub_url or (f"https://{stage.domain}/" if stage.domain else None)
    if not (hub_url or args.gateway_url):
        raise ConfigError(f"{deployment.name}/{stage.name} has no `domain`; pass --hub-url")
    gateway_url = args.gateway_url or hub_url.rstrip("/") + "/" + GATEWAY_PATH
    token = args.token or os.environ.get(ADMIN_TOKEN_ENV)
    if not token:
        raise ConfigError(
            f"no admin token: pass --token or set ${ADMIN_TOKEN_ENV} (a hub admin's token "
            "with admin:servers, from the hub's token page)"
        )
    api = admin_api(gateway_url, token, args.insecure)
    try:
        clusters = list_clusters(api)
        if args.action == "list":
            if args.format == "json":
                print(json.dumps(clusters, indent=2))
            else:
                print(format_table(clusters))
            return 0
        for name in _targets(args, clusters):
            stop_cluster(api, name)
            print(f"stopping {name}")
    except HttpError as exc:
        raise ToolError(f"the gateway's admin API refused or failed: {exc}") from None
    return 0
