"""The usage report as text: the table `pangeo-cloud usage` prints and the page shows."""

from __future__ import annotations

from pangeo_cloud.hub.usage_report import GB, Report, Row

COLUMNS = (
    ("server_hours", "Server-h", "{:.2f}"),
    ("cpu_hours", "CPU-h", "{:.2f}"),
    ("memory_gb_hours", "Mem GB-h", "{:.2f}"),
    ("dask_worker_hours", "Worker-h", "{:.2f}"),
    ("scratch_bytes", "Scratch GB", "SCRATCH"),
    ("cost", "Cost", "{:.2f}"),
)


def cell(row: Row, attr: str, fmt: str) -> str:
    value = getattr(row, attr)
    if fmt == "SCRATCH":
        return f"{value / GB:.3f}"
    if 0 < abs(value) < 1:
        return f"{value:.3g}"  # short sessions: keep three significant digits
    return fmt.format(value)


def idle_text(row: Row) -> str:
    return "" if row.idle_fraction is None else f"{row.idle_fraction:.0%}"


def describe_span(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds / size
            return f"{count:.3g} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def format_table(report: Report) -> str:
    """The report as aligned text: a header, one line per row, the total, the nudges."""
    headers = [report.by.capitalize()] + [h for _, h, _ in COLUMNS] + ["Dask idle"]
    headers[-2] = f"Cost ({report.currency})"
    lines = [[r.key] + [cell(r, a, f) for a, _, f in COLUMNS] + [idle_text(r)] for r in report.rows]
    total = report.total()
    lines.append(["total"] + [cell(total, a, f) for a, _, f in COLUMNS] + [""])
    widths = [max(len(str(x[i])) for x in [headers, *lines]) for i in range(len(headers))]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    span = describe_span(report.since_s)
    out = [
        f"Usage of {report.deployment}/{report.stage} over the last {span} "
        f"(Prometheus {report.prometheus}), by {report.by}:",
        fmt(headers),
    ]
    out += [fmt(cells) for cells in lines[:-1]]
    out.append(fmt(["-" * widths[0]] + ["-" * w for w in widths[1:-1]] + [""]))
    out.append(fmt(lines[-1]))
    if report.by == "group":
        out.append("(a user in several groups counts in each)")
    for nudge in report.nudges:
        out.append(f"Idle cluster: {nudge}")
    return "\n".join(out)
