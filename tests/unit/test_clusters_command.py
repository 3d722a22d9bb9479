"""`pangeo-cloud clusters`: the table operators read (the API calls run in integration)."""

from __future__ import annotations

from pangeo_cloud.commands.clusters import format_table

GIB = 2**30
NOW = 1_800_000_000.0


def cluster(name: str, user: str, minutes: int, workers: int, kept: bool = False) -> dict:
    return {
        "name": name,
        "username": user,
        "status": "RUNNING",
        "start_time": int((NOW - minutes * 60) * 1000),
        "workers": workers,
        "cores": 1.0 + 2 * workers,
        "memory": (2 + 8 * workers) * GIB,
        "kept": kept,
    }


def test_table_groups_by_user_with_totals_and_ages():
    text = format_table(
        [
            cluster("c1", "alice", 5, 2),
            cluster("c2", "alice", 125, 0, kept=True),
            cluster("c3", "bob", 61, 10),
        ],
        now=NOW,
    )
    rows = [line.split() for line in text.splitlines()]
    assert rows[0] == ["USER", "CLUSTER", "STATUS", "WORKERS", "CORES", "MEMORY", "AGE", "KEPT"]
    assert rows[1] == ["alice", "c1", "RUNNING", "2", "5", "18.0G", "0h05m"]
    assert rows[2] == ["alice", "c2", "RUNNING", "0", "1", "2.0G", "2h05m", "yes"]
    assert rows[3] == ["alice", "(total", "of", "2)", "2", "6", "20.0G"]
    assert rows[4] == ["bob", "c3", "RUNNING", "10", "21", "82.0G", "1h01m"]
    assert rows[5] == ["3", "cluster(s)", "of", "2", "user(s)"]


def test_empty_table():
    assert format_table([], now=NOW).splitlines()[-1] == "0 cluster(s) of 0 user(s)"
