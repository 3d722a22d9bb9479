"""The usage plot of ``pangeo-cloud usage --plot FILE``: CPU cores in use per user.

``FILE.png``: matplotlib with the Agg backend (no display needed).
``FILE.html``: one self-contained page (inline SVG, no script, no network).
Either is written to a temporary file in the same directory and renamed into
place, so a failure never leaves half a plot behind.
"""

from __future__ import annotations

import contextlib
import html
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pangeo_cloud.hub.usage_report import Report

SUFFIXES = (".png", ".html")
_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


class PlotError(ValueError):
    """The plot cannot be written; one line."""


def check_target(path: Path) -> None:
    """Refuse, before any query, a plot file we could not write."""
    if path.suffix.lower() not in SUFFIXES:
        raise PlotError(f"--plot {path}: the file must end in .png or .html")
    if not path.parent.resolve().is_dir():
        raise PlotError(f"--plot {path}: directory {path.parent} does not exist")


def _title(report: Report) -> str:
    return (
        f"{report.deployment}/{report.stage}: CPU cores reserved per user "
        "(servers' guarantees + Dask workers)"
    )


def _png(report: Report, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    users = list(report.over_time)
    unit, size = ("minutes", 60) if report.since_s <= 3 * 3600 else ("hours", 3600)
    if users:
        times = [(t - report.end) / size for t in report.over_time[users[0]][0]]
        # Each point is the average over the step before it.
        ax.stackplot(times, *[report.over_time[u][1] for u in users], labels=users, step="pre")
        ax.legend(loc="upper left", fontsize="small")
    end = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.end))
    ax.set_xlabel(f"{unit} before {end}")
    ax.set_ylabel("CPU cores")
    ax.set_title(_title(report), fontsize="medium")
    fig.tight_layout()
    fig.savefig(out, format="png")
    plt.close(fig)


def _svg(report: Report, width: int = 800, height: int = 320) -> str:
    users = list(report.over_time)
    left, bottom, top, right = 50, 30, 20, 150
    plot_w, plot_h = width - left - right, height - top - bottom
    if not users:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"/>'
    times = report.over_time[users[0]][0]
    stacks = [0.0] * len(times)
    peak = max(
        (sum(report.over_time[u][1][i] for u in users) for i in range(len(times))), default=0
    )
    peak = peak or 1.0
    span = (times[-1] - times[0]) or 1.0

    def x(t: float) -> float:
        return left + (t - times[0]) / span * plot_w

    def y(v: float) -> float:
        return top + plot_h - v / peak * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    for n, user in enumerate(users):
        values = report.over_time[user][1]
        lower = list(stacks)
        upper = [a + b for a, b in zip(lower, values, strict=True)]
        points = [f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, upper, strict=True)]
        points += [
            f"{x(t):.1f},{y(v):.1f}" for t, v in reversed(list(zip(times, lower, strict=True)))
        ]
        colour = _COLOURS[n % len(_COLOURS)]
        parts.append(f'<polygon points="{" ".join(points)}" fill="{colour}" opacity="0.8"/>')
        parts.append(
            f'<text x="{width - right + 10}" y="{top + 15 * (n + 1)}" fill="{colour}">'
            f"{html.escape(user)}</text>"
        )
        stacks = upper
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="black"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>'
        f'<text x="5" y="{top + 10}">{peak:g}</text><text x="5" y="{top + plot_h}">0</text>'
        f'<text x="{left}" y="{height - 8}">{span / 3600:.2g} h ago</text>'
        f'<text x="{left + plot_w - 30}" y="{height - 8}">now</text></svg>'
    )
    return "".join(parts)


def _html(report: Report, out: Path) -> None:
    from pangeo_cloud.hub.usage_page import report_html

    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(_title(report))}</title></head><body>"
        f"<h1>{html.escape(_title(report))}</h1>{_svg(report)}{report_html(report)}</body></html>"
    )
    out.write_text(page, encoding="utf-8")


def write_plot(report: Report, path: Path) -> Path:
    """Write the plot atomically (temporary file, then rename)."""
    check_target(path)
    writer: Callable[[Report, Path], None] = _png if path.suffix.lower() == ".png" else _html
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(report, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path
