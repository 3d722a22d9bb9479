"""The usage report: who used what, and what it cost, from Prometheus.

Shared by ``pangeo-cloud usage`` and the hub's usage page (:mod:`.usage_page`);
standard library only. It reads the series of the metrics contract (hub:
``pangeo_server_*``, ``pangeo_user_group``; gateway: ``pangeo_dask_*``;
broker: ``pangeo_scratch_bytes``) of one deployment and stage.

Exactness: a gauge's integral over the range comes from its raw samples and
their timestamps: each sample holds until the next one, and the last for one
scrape interval (read from Prometheus' running configuration). A scrape that
failed (a busy hub answering late: Prometheus then stores no sample) leaves a
longer gap, which still counts, up to ``MAX_MISSED_SCRAPES`` in a row; a longer
gap (the target was down) counts one interval. So a server's seconds are right
to within one scrape interval at each end of its life, also under load.

Cost: ``costs`` (``jupyterhub.custom.pangeo.costs``, generated from the
deployment's ``prices`` and node pools) gives, per profile and for Dask
workers, the node type, its hourly price and its allocatable CPU and memory.
A server or worker costs the share of its node it reserves (the larger of its
CPU and memory shares) times the node's price, over the time it ran. Scratch
storage is reported in bytes, not priced. Dask schedulers are not counted.

Nudge: a user whose running cluster was idle (no task processing, the
gateway's ``pangeo_dask_cluster_idle``) for more than ``IDLE_NUDGE`` of the
samples of its life is named in ``Report.nudges``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from pangeo_cloud.hub.promql import PrometheusError, query, query_range, scrape_intervals

BY = ("user", "group", "profile")
IDLE_NUDGE = 0.5
GB = 1e9
HUB_JOB, GATEWAY_JOB, BROKER_JOB = "jupyterhub", "dask-gateway", "scratch-broker"
PLOT_POINTS = 120  # points per series in the usage-over-time plot
DASK_ROW = "(dask workers)"  # --by profile: Dask usage has no server profile
SCRATCH_ROW = "(scratch)"


class UsageError(ValueError):
    """The report cannot be made (bad input, no data, no price); one line."""


@dataclass
class Row:
    """Usage of one user, group or profile over the range."""

    key: str
    server_hours: float = 0.0
    cpu_hours: float = 0.0  # servers' guaranteed cores plus Dask workers' cores
    memory_gb_hours: float = 0.0
    dask_worker_hours: float = 0.0
    dask_cpu_hours: float = 0.0
    scratch_bytes: float = 0.0
    cost: float = 0.0
    idle_fraction: float | None = None  # of its Dask clusters' samples

    def add(self, other: Row) -> None:
        for name in (
            "server_hours",
            "cpu_hours",
            "memory_gb_hours",
            "dask_worker_hours",
            "dask_cpu_hours",
            "scratch_bytes",
            "cost",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Report:
    """The report of one deployment and stage over ``since`` seconds before ``end``."""

    deployment: str
    stage: str
    prometheus: str
    since_s: float
    end: float
    by: str
    currency: str
    rows: list[Row] = field(default_factory=list)
    nudges: list[str] = field(default_factory=list)
    # Per user (plot): (times, CPU cores in use: servers' guarantees plus Dask workers)
    over_time: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "stage": self.stage,
            "prometheus": self.prometheus,
            "since_seconds": self.since_s,
            "end": self.end,
            "by": self.by,
            "currency": self.currency,
            "rows": [asdict(r) for r in self.rows],
            "total": asdict(self.total()),
            "nudges": list(self.nudges),
        }

    def total(self) -> Row:
        out = Row("total")
        # Group rows count a user once per group: the total is over users' usage.
        for row in self.rows:
            out.add(row)
        return out


# --- costs -----------------------------------------------------------------------------


def _price(entry: dict[str, Any] | None, what: str) -> tuple[float, float, float]:
    """(price per hour, node CPU, node memory) of a costs entry, or UsageError."""
    if not entry:
        raise UsageError(f"{what} is not in the deployment's price table (deployment.yaml prices)")
    price = entry.get("pricePerHour")
    if price is None:
        raise UsageError(
            f"node type {entry.get('nodeType')!r} of {what} has no price: add it under "
            "prices.perHour in deployment.yaml"
        )
    return float(price), float(entry["nodeCpu"]), float(entry["nodeMemory"])


def share_cost(
    entry: dict[str, Any] | None, what: str, core_seconds: float, byte_seconds: float
) -> float:
    """The cost of reserving these core- and byte-seconds of a node of ``entry``'s type."""
    if core_seconds == 0 and byte_seconds == 0:
        return 0.0
    price, cpu, memory = _price(entry, what)
    return price * max(core_seconds / cpu, byte_seconds / memory) / 3600


# --- queries -----------------------------------------------------------------------------


def _selector(deployment: str, stage: str) -> str:
    return f'deployment="{deployment}",stage="{stage}"'


MAX_MISSED_SCRAPES = 2  # gaps of up to this many failed scrapes in a row still count


def _integral(
    base: str, metric: str, sel: str, by: str, window: str, end: float, step: float
) -> list:
    """Per ``by`` group, the integral of ``metric`` over the window, in units of
    ``step`` (the job's scrape interval), as instant-vector samples (module docstring)."""
    keys = [k.strip() for k in by.split(",")]
    totals: dict[tuple[str, ...], float] = defaultdict(float)
    for series in query(base, f"{metric}{{{sel}}}[{window}]", at=end):
        key = tuple(series["metric"].get(k, "") for k in keys)
        totals[key] += _series_integral(series.get("values") or [], step) / step
    return [
        {"metric": dict(zip(keys, key, strict=True)), "value": [end, repr(total)]}
        for key, total in totals.items()
    ]


def _series_integral(values: list[list[Any]], step: float) -> float:
    """Value-seconds of one series' raw samples ([time, "value"] pairs, oldest first)."""
    cap = step * (MAX_MISSED_SCRAPES + 1)
    total = 0.0
    for (t, v), (t_next, _) in zip(values, values[1:], strict=False):
        gap = float(t_next) - float(t)
        total += float(v) * (gap if gap <= cap * 1.01 else step)
    if values:
        total += float(values[-1][1]) * step
    return total


def _value(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


def _window(since_s: float) -> str:
    return f"{max(1, int(round(since_s)))}s"


def build_report(
    base_url: str,
    deployment: str,
    stage: str,
    since_s: float,
    by: str,
    costs: dict[str, Any],
    end: float | None = None,
    with_plot: bool = False,
) -> Report:
    """Query Prometheus and compute the report (raises UsageError or PrometheusError)."""
    if by not in BY:
        raise UsageError(f"--by must be one of {', '.join(BY)}, got {by!r}")
    if since_s <= 0:
        raise UsageError("the range is empty: --since must be longer than 0 s")
    end = time.time() if end is None else end
    intervals = scrape_intervals(base_url)
    hub_step = intervals.get(HUB_JOB)
    gw_step = intervals.get(GATEWAY_JOB)
    if hub_step is None:
        raise UsageError(
            f"prometheus at {base_url} has no {HUB_JOB!r} scrape job: it does not scrape the hub"
        )
    sel = _selector(deployment, stage)
    window = _window(since_s)
    report = Report(
        deployment, stage, base_url, since_s, end, by, str(costs.get("currency", "USD"))
    )
    users = _user_rows(base_url, sel, window, end, hub_step, gw_step, costs)
    if not users:
        raise UsageError(
            f"no usage recorded for {deployment}/{stage} in the last {window} at {base_url} "
            "(an empty range: no server, cluster or scratch data)"
        )
    report.nudges = _idle_nudges(base_url, sel, window, end)
    if by == "user":
        report.rows = sorted(users.values(), key=lambda r: (-r.cost, r.key))
    elif by == "group":
        report.rows = _group_rows(base_url, sel, window, end, users)
    else:
        report.rows = _profile_rows(base_url, sel, window, end, hub_step, gw_step, costs)
    if with_plot:
        steps = {HUB_JOB: hub_step} | ({GATEWAY_JOB: gw_step} if gw_step else {})
        report.over_time = _over_time(base_url, sel, since_s, end, steps)
    return report


def _user_rows(
    base: str,
    sel: str,
    window: str,
    end: float,
    hub_step: float,
    gw_step: float | None,
    costs: dict[str, Any],
) -> dict[str, Row]:
    rows: dict[str, Row] = {}

    def row(user: str) -> Row:
        return rows.setdefault(user, Row(user))

    profiles = costs.get("profiles") or {}
    cpu = {
        (s["metric"]["user"], s["metric"].get("profile", "")): _value(s) * hub_step
        for s in _integral(
            base, "pangeo_server_cpu_request", sel, "user, profile", window, end, hub_step
        )
    }
    mem = {
        (s["metric"]["user"], s["metric"].get("profile", "")): _value(s) * hub_step
        for s in _integral(
            base, "pangeo_server_memory_request_bytes", sel, "user, profile", window, end, hub_step
        )
    }
    for s in _integral(base, "pangeo_server_running", sel, "user, profile", window, end, hub_step):
        user, profile = s["metric"]["user"], s["metric"].get("profile", "")
        r = row(user)
        r.server_hours += _value(s) * hub_step / 3600
        core_s, byte_s = cpu.get((user, profile), 0.0), mem.get((user, profile), 0.0)
        r.cpu_hours += core_s / 3600
        r.memory_gb_hours += byte_s / GB / 3600
        r.cost += share_cost(profiles.get(profile), f"profile {profile!r}", core_s, byte_s)
    if gw_step is not None:
        workers = costs.get("daskWorkers")
        wcpu = {
            s["metric"]["user"]: _value(s) * gw_step
            for s in _integral(base, "pangeo_dask_worker_cores", sel, "user", window, end, gw_step)
        }
        wmem = {
            s["metric"]["user"]: _value(s) * gw_step
            for s in _integral(
                base, "pangeo_dask_worker_memory_bytes", sel, "user", window, end, gw_step
            )
        }
        for s in _integral(base, "pangeo_dask_workers", sel, "user", window, end, gw_step):
            user = s["metric"]["user"]
            r = row(user)
            r.dask_worker_hours += _value(s) * gw_step / 3600
            core_s, byte_s = wcpu.get(user, 0.0), wmem.get(user, 0.0)
            r.dask_cpu_hours += core_s / 3600
            r.cpu_hours += core_s / 3600
            r.memory_gb_hours += byte_s / GB / 3600
            r.cost += share_cost(workers, "Dask workers", core_s, byte_s)
        for s in query(
            base,
            f"sum by (user) (sum_over_time(pangeo_dask_cluster_idle{{{sel}}}[{window}])) / "
            f"sum by (user) (count_over_time(pangeo_dask_cluster_idle{{{sel}}}[{window}]))",
            at=end,
        ):
            row(s["metric"]["user"]).idle_fraction = _value(s)
    for s in query(
        base, f"max by (user) (last_over_time(pangeo_scratch_bytes{{{sel}}}[{window}]))", at=end
    ):
        if _value(s) > 0:
            row(s["metric"]["user"]).scratch_bytes = _value(s)
    return rows


def _group_rows(base: str, sel: str, window: str, end: float, users: dict[str, Row]) -> list[Row]:
    groups: dict[str, Row] = {}
    members: dict[str, set[str]] = defaultdict(set)
    for s in query(
        base, f"max by (user, group) (max_over_time(pangeo_user_group{{{sel}}}[{window}]))", at=end
    ):
        members[s["metric"]["group"]].add(s["metric"]["user"])
    grouped = set().union(*members.values()) if members else set()
    for group, names in sorted(members.items()):
        total = groups.setdefault(group, Row(group))
        for name in sorted(names & set(users)):
            total.add(users[name])
    rest = Row("(no group)")
    for name, r in users.items():
        if name not in grouped:
            rest.add(r)
    rows = [
        r
        for r in groups.values()
        if any(vars(r)[k] for k in ("server_hours", "dask_worker_hours", "scratch_bytes"))
    ]
    if rest.server_hours or rest.dask_worker_hours or rest.scratch_bytes:
        rows.append(rest)
    return sorted(rows, key=lambda r: (-r.cost, r.key))


def _profile_rows(
    base: str,
    sel: str,
    window: str,
    end: float,
    hub_step: float,
    gw_step: float | None,
    costs: dict[str, Any],
) -> list[Row]:
    rows: dict[str, Row] = {}
    profiles = costs.get("profiles") or {}
    for s in _integral(base, "pangeo_server_running", sel, "profile", window, end, hub_step):
        rows.setdefault(s["metric"].get("profile", ""), Row(s["metric"].get("profile", "")))
        rows[s["metric"].get("profile", "")].server_hours = _value(s) * hub_step / 3600
    for metric, attr in (
        ("pangeo_server_cpu_request", "cpu_hours"),
        ("pangeo_server_memory_request_bytes", "memory_gb_hours"),
    ):
        for s in _integral(base, metric, sel, "profile", window, end, hub_step):
            profile = s["metric"].get("profile", "")
            value = _value(s) * hub_step / 3600
            setattr(
                rows.setdefault(profile, Row(profile)),
                attr,
                value / (GB if "memory" in attr else 1),
            )
    for profile, r in rows.items():
        r.cost = share_cost(
            profiles.get(profile),
            f"profile {profile!r}",
            r.cpu_hours * 3600,
            r.memory_gb_hours * GB * 3600,
        )
    if gw_step is not None:
        dask = Row(DASK_ROW)
        for metric, attr in (
            ("pangeo_dask_workers", "dask_worker_hours"),
            ("pangeo_dask_worker_cores", "dask_cpu_hours"),
            ("pangeo_dask_worker_memory_bytes", "memory_gb_hours"),
        ):
            for s in query(base, f"sum(sum_over_time({metric}{{{sel}}}[{window}]))", at=end):
                value = _value(s) * gw_step / 3600
                setattr(dask, attr, value / (GB if "memory" in attr else 1))
        dask.cpu_hours = dask.dask_cpu_hours
        dask.cost = share_cost(
            costs.get("daskWorkers"),
            "Dask workers",
            dask.dask_cpu_hours * 3600,
            dask.memory_gb_hours * GB * 3600,
        )
        if dask.dask_worker_hours:
            rows[DASK_ROW] = dask
    scratch = query(
        base,
        f"sum(max by (user) (last_over_time(pangeo_scratch_bytes{{{sel}}}[{window}])))",
        at=end,
    )
    if scratch and _value(scratch[0]) > 0:
        rows[SCRATCH_ROW] = Row(SCRATCH_ROW, scratch_bytes=_value(scratch[0]))
    return sorted(rows.values(), key=lambda r: (-r.cost, r.key))


def _idle_nudges(base: str, sel: str, window: str, end: float) -> list[str]:
    """Users whose cluster, running now, was idle for most of its samples."""
    running = {
        (s["metric"]["user"], s["metric"]["cluster"])
        for s in query(base, f"pangeo_dask_cluster_running{{{sel}}}", at=end)
    }
    nudges = []
    for s in query(
        base,
        f"avg_over_time(pangeo_dask_cluster_idle{{{sel}}}[{window}])",
        at=end,
    ):
        key = (s["metric"]["user"], s["metric"]["cluster"])
        if key in running and _value(s) > IDLE_NUDGE:
            nudges.append(
                f"{key[0]}: Dask cluster {key[1]} is running and was idle (no task "
                f"processing) {_value(s):.0%} of its life; please stop it "
                "(cluster.close() or Gateway().stop_cluster(name))"
            )
    return sorted(nudges)


def _over_time(
    base: str, sel: str, since_s: float, end: float, steps: dict[str, float]
) -> dict[str, tuple[list[float], list[float]]]:
    """CPU cores reserved per user over the range: servers' guarantees plus Dask workers.

    Each point is the average over the step before it (samples times the scrape
    interval, divided by the step), so short sessions still show.
    """
    step = float(max(max(steps.values()), round(since_s / PLOT_POINTS)))
    start = end - since_s
    times = [start + i * step for i in range(int(since_s / step) + 1)]
    series: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for metric, job in (
        ("pangeo_server_cpu_request", HUB_JOB),
        ("pangeo_dask_worker_cores", GATEWAY_JOB),
    ):
        if job not in steps:
            continue
        promql = (
            f"sum by (user) (sum_over_time({metric}{{{sel}}}[{step:.0f}s])) "
            f"* {steps[job]:g} / {step:g}"
        )
        for s in query_range(base, promql, start, end, step):
            # Range query points lie on start + k * step: index them by k.
            for t, v in s["values"]:
                series[s["metric"]["user"]][round((float(t) - start) / step)] += float(v)
    return {
        user: (times, [points.get(k, 0.0) for k in range(len(times))])
        for user, points in sorted(series.items())
    }


__all__ = ["BY", "PrometheusError", "Report", "Row", "UsageError", "build_report", "share_cost"]


# --- presentation ------------------------------------------------------------------------
