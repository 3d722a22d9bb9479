"""The usage page: the usage report in the browser, for hub admins only.

A JupyterHub service (``usage``, under ``/services/usage/``) that logs people
in with JupyterHub OAuth (:class:`jupyterhub.services.auth.HubOAuthenticated`)
and shows the report of :mod:`.usage_report` (``?since=7d&by=group``) to
admins; anyone else gets 403. Run as ``python -m pangeo_cloud.hub.usage_page``
with the usual service variables (``JUPYTERHUB_API_TOKEN``,
``JUPYTERHUB_SERVICE_PREFIX``, ``JUPYTERHUB_SERVICE_URL`` ...) plus:

- ``PANGEO_PROMETHEUS_URL``: the Prometheus to read;
- ``PANGEO_USAGE_DEPLOYMENT`` / ``PANGEO_USAGE_STAGE``: the series' labels;
- ``PANGEO_USAGE_COSTS``: ``custom.pangeo.costs`` as JSON (the price table);
- or ``PANGEO_USAGE_VALUES``: a file of the jupyterhub values, whose
  ``custom.pangeo.usage`` (``prometheusUrl``, ``deployment``, ``stage``) and
  ``custom.pangeo.costs`` fill in what the variables above leave unset (z2jh's
  ``/usr/local/etc/jupyterhub/secret/values.yaml`` in the hub pod).

In the clusters the hub runs it in its own pod (``hub.services.usage`` in the
chart's values) and the service URL names the hub Service, so it listens on
all of the pod's addresses; locally it listens on the loopback address given.
A missing setting does not stop the page: it says what to set.

Standard library, tornado and JupyterHub only (it runs next to the hub).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import sys
from typing import Any
from urllib.parse import urlparse

from pangeo_cloud.hub.promql import PrometheusError, duration_seconds
from pangeo_cloud.hub.usage_report import BY, Report, UsageError, build_report
from pangeo_cloud.hub.usage_table import COLUMNS, cell, idle_text

SERVICE_NAME = "usage"


def report_html(report: Report) -> str:
    """The report as an HTML table (escaped), with the total and the idle-cluster notes."""
    head = "".join(
        f"<th>{html.escape(h if a != 'cost' else f'Cost ({report.currency})')}</th>"
        for a, h, _ in COLUMNS
    )
    rows = []
    for row in [*report.rows, report.total()]:
        cells = "".join(f"<td>{html.escape(cell(row, a, f))}</td>" for a, _, f in COLUMNS)
        idle = html.escape(idle_text(row)) if row.key != "total" else ""
        rows.append(
            f'<tr class="usage-row" data-key="{html.escape(row.key, quote=True)}">'
            f"<th>{html.escape(row.key)}</th>{cells}<td>{idle}</td></tr>"
        )
    nudges = "".join(f'<li class="usage-nudge">{html.escape(n)}</li>' for n in report.nudges)
    return (
        f'<table class="usage" border="1" cellpadding="4"><thead><tr>'
        f"<th>{html.escape(report.by.capitalize())}</th>{head}<th>Dask idle</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        + (f"<h2>Idle Dask clusters</h2><ul>{nudges}</ul>" if nudges else "")
    )


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def make_app(settings: dict[str, Any], prefix: str) -> Any:
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web

    class UsageHandler(HubOAuthenticated, web.RequestHandler):
        @web.authenticated
        async def get(self) -> None:
            user = self.get_current_user()
            if not user.get("admin"):
                raise web.HTTPError(403, "the usage page is for the hub's admins")
            if settings.get("problem"):
                self.finish(
                    page("Usage", f'<p class="usage-error">{html.escape(settings["problem"])}</p>')
                )
                return
            since = self.get_argument("since", "30d")
            by = self.get_argument("by", "user")
            title = f"Usage of {settings['deployment']}/{settings['stage']}"
            try:
                report = await asyncio.to_thread(
                    build_report,
                    settings["prometheus"],
                    settings["deployment"],
                    settings["stage"],
                    duration_seconds(since),
                    by,
                    settings["costs"],
                )
            except (UsageError, PrometheusError, ValueError) as exc:
                self.set_status(200 if isinstance(exc, UsageError) else 502)
                self.finish(page(title, f'<p class="usage-error">{html.escape(str(exc))}</p>'))
                return
            links = " ".join(
                f'<a href="?since={html.escape(since, quote=True)}&by={b}">by {b}</a>' for b in BY
            )
            body = (
                f"<p>Last {html.escape(since)}, by {html.escape(by)} ({links}). Cost is an "
                "estimate: each server's and worker's share of its node times the node's "
                "hourly price.</p>" + report_html(report)
            )
            self.finish(page(title, body))

    return web.Application(
        [
            (prefix, UsageHandler),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
    )


def _values_pangeo() -> dict[str, Any]:
    """``custom.pangeo`` of the values file named by PANGEO_USAGE_VALUES ({} if none)."""
    path = os.environ.get("PANGEO_USAGE_VALUES")
    if not path:
        return {}
    import yaml

    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    return (values.get("custom") or {}).get("pangeo") or {}


def settings_from_env() -> dict[str, Any]:
    """The page's settings; ``problem`` says what is missing (shown to admins)."""
    problem = ""
    try:
        pangeo = _values_pangeo()
        costs = (
            json.loads(os.environ["PANGEO_USAGE_COSTS"])
            if os.environ.get("PANGEO_USAGE_COSTS")
            else pangeo.get("costs") or {}
        )
    except (OSError, ValueError) as exc:
        pangeo, costs = {}, {}
        problem = f"the settings cannot be read: {exc}"
    usage = pangeo.get("usage") or {}
    settings: dict[str, Any] = {
        "prometheus": os.environ.get("PANGEO_PROMETHEUS_URL") or usage.get("prometheusUrl", ""),
        "deployment": os.environ.get("PANGEO_USAGE_DEPLOYMENT") or usage.get("deployment", ""),
        "stage": os.environ.get("PANGEO_USAGE_STAGE") or usage.get("stage", ""),
        "costs": costs,
        "problem": problem,
    }
    missing = [
        name
        for name, key in (
            ("PANGEO_PROMETHEUS_URL", "prometheus"),
            ("PANGEO_USAGE_DEPLOYMENT", "deployment"),
            ("PANGEO_USAGE_STAGE", "stage"),
        )
        if not settings[key]
    ]
    if missing and not settings["problem"]:
        settings["problem"] = (
            f"the usage page is not configured: set {', '.join(missing)} (or "
            "jupyterhub.custom.pangeo.usage.prometheusUrl in the deployment's values)"
        )
    return settings


def listen_address(url: Any) -> str:
    """Loopback addresses as given; a Service name (in the hub pod): every address."""
    import ipaddress

    try:
        ipaddress.ip_address(url.hostname or "")
    except ValueError:
        return ""
    return url.hostname


def main() -> int:
    settings = settings_from_env()
    if settings["problem"]:
        print(f"usage page: {settings['problem']}", file=sys.stderr, flush=True)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    app = make_app(settings, prefix)

    async def serve() -> None:
        app.listen(url.port or 10101, listen_address(url), xheaders=True)
        print(f"usage page listening on {url.geturl()}{prefix}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
