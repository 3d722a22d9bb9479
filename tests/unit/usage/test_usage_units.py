"""Pure parts of the usage report: price table, metric texts, scratch sums, costs, nudges."""

from __future__ import annotations

import pytest

from pangeo_cloud.broker.usage import exposition, sizes_by_user
from pangeo_cloud.config import ConfigError, load_deployment, merged_values
from pangeo_cloud.config.costs import costs_for
from pangeo_cloud.gateway.metrics import ClusterSample, bearer_token, parse_scheduler, render
from pangeo_cloud.hub.costs import annotate_profiles, byte_spec
from pangeo_cloud.hub.promql import duration_seconds
from pangeo_cloud.hub.usage_report import Report, Row, UsageError, share_cost
from pangeo_cloud.hub.usage_table import format_table
from pangeo_cloud.scratch import escape_username


def test_every_deployment_prices_the_node_types_its_profiles_and_workers_use(repo_paths):
    for name, stage in (
        ("aws-us-west-2", "prod"),
        ("gcp-us-central1-b", "staging"),
        ("local", "dev"),
    ):
        deployment = load_deployment(name, repo_paths)
        costs = costs_for(deployment, merged_values(deployment, stage, paths=repo_paths))
        entries = [*costs["profiles"].values(), costs["daskWorkers"]]
        assert costs["profiles"] and all(e["pricePerHour"] > 0 for e in entries), name
    aws = merged_values("aws-us-west-2", "prod", paths=repo_paths)["jupyterhub"]["custom"]
    # Workers go to the tainted Spot pool their node selector names; servers to "user".
    assert aws["pangeo"]["costs"]["daskWorkers"]["nodeType"] == "r5.4xlarge-spot"
    assert aws["pangeo"]["costs"]["profiles"]["small"]["nodePool"] == "user"


def test_a_price_for_a_node_type_no_pool_has_names_the_key(repo_copy, edit_yaml):
    path = repo_copy.deployments / "local" / "deployment.yaml"
    edit_yaml(path, "    workstation: 0.10", "    workstaton: 0.10")
    with pytest.raises(ConfigError) as err:
        load_deployment("local", repo_copy)
    assert err.value.key_path == "prices.perHour.workstaton"
    assert "no node pool has nodeType 'workstaton'" in str(err.value)


def test_a_price_must_be_a_positive_number(repo_copy, edit_yaml):
    path = repo_copy.deployments / "local" / "deployment.yaml"
    edit_yaml(path, "    workstation: 0.10", "    workstation: free")
    with pytest.raises(ConfigError, match="positive number"):
        load_deployment("local", repo_copy)


def test_gateway_metrics_text_and_scheduler_parsing():
    text = render(
        [ClusterSample('a"b', "c1", 2, 1.5, 2e9, True), ClusterSample("x", "c2", 0, 1, 1, None)]
    )
    assert 'pangeo_dask_workers{user="a\\"b",cluster="c1"} 2' in text
    assert 'pangeo_dask_worker_cores{user="a\\"b",cluster="c1"} 3' in text
    assert 'pangeo_dask_cluster_idle{user="a\\"b",cluster="c1"} 1' in text
    assert 'pangeo_dask_cluster_idle{user="x"' not in text  # unknown: no sample
    scheduler = (
        'dask_scheduler_workers{state="idle"} 1.0\n'
        'dask_scheduler_workers{state="saturated"} 2.0\n'
        'dask_scheduler_tasks{state="processing"} 3.0\n'
    )
    state = parse_scheduler(scheduler)
    assert state.workers == 3 and state.idle is False
    assert parse_scheduler("").workers is None
    assert bearer_token("Bearer abc") == "abc" and bearer_token("Basic abc") is None


def test_scratch_bytes_per_user_under_the_bucket_path():
    weird = "ana.ß"
    objects = [
        ("base/alice/a", 10),
        ("base/alice/b/c", 5),
        (f"base/{escape_username(weird)}/x", 7),
        ("base/-broker-health/x", 99),  # not a user prefix
        ("other/alice/a", 1000),  # outside the bucket URL's path
        ("base/loose-file", 3),
    ]
    assert sizes_by_user(objects, "base") == {"alice": 15, weird: 7}
    assert 'pangeo_scratch_bytes{user="alice"} 15' in exposition({"alice": 15}, False)


def test_costs_and_relative_sizes():
    entry = {"nodeType": "t", "pricePerHour": 1.0, "nodeCpu": 4, "nodeMemory": 16 * 2**30}
    # A quarter of the cores for an hour, less than a quarter of the memory: a quarter.
    assert share_cost(entry, "p", 3600, 3600 * 2**30) == pytest.approx(0.25)
    with pytest.raises(UsageError, match="node type 't' of profile 'p' has no price"):
        share_cost({**entry, "pricePerHour": None}, "profile 'p'", 1, 1)
    assert share_cost(None, "x", 0, 0) == 0
    assert byte_spec("2G") == 2 * 2**30 and byte_spec(5) == 5
    profiles = [
        {
            "slug": "s",
            "display_name": "S",
            "description": "small.",
            "kubespawner_override": {"cpu_guarantee": 1, "mem_guarantee": "1G"},
        },
        {
            "slug": "l",
            "display_name": "L",
            "description": "large.",
            "kubespawner_override": {"cpu_guarantee": 3, "mem_guarantee": "1G"},
        },
    ]
    out = annotate_profiles(profiles, {"currency": "EUR", "profiles": {"s": entry, "l": entry}})
    assert out[1]["description"] == "large. 3× the cost of S, about EUR 0.75/hour."
    assert profiles[1]["description"] == "large."  # the config's list is untouched


def test_table_shows_rows_total_and_nudges():
    report = Report("local", "dev", "http://p", 3600, 0, "user", "USD")
    report.rows = [Row("alice", server_hours=2, cpu_hours=1, cost=0.5, idle_fraction=0.9)]
    report.nudges = ["alice: Dask cluster c is running and was idle 90% of its life"]
    text = format_table(report)
    assert "over the last 1 hour " in text and "alice" in text and "90%" in text
    assert text.splitlines()[-1].startswith("Idle cluster: alice")
    assert duration_seconds("30d") == 30 * 86400
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("30 days")


def test_hub_collector_reports_ready_servers_with_their_profile_and_requests():
    from types import SimpleNamespace as NS

    from pangeo_cloud.hub.metrics import UsageCollector

    def spawner(ready: bool, profile: str | None, cpu: float, mem: int) -> NS:
        options = {"profile": [profile]} if profile else {}
        return NS(ready=ready, user_options=options, cpu_guarantee=cpu, mem_guarantee=mem)

    users = {
        "alice": NS(name="alice", spawners={"": spawner(True, "medium", 1.0, 2 * 2**30)}),
        "bob": NS(name="bob", spawners={"": spawner(False, "small", 0.5, 2**30)}),  # starting
        "carl": NS(name="carl", spawners={"gpu": spawner(True, None, 0.5, 2**30)}),
    }

    class Query(list):
        pass

    groups = [NS(name="operators", users=[NS(name="alice")])]
    app = NS(users=users, db=NS(query=lambda _model: Query(groups)))
    profiles = [{"slug": "small", "default": True}, {"slug": "medium"}]
    families = {f.name: f for f in UsageCollector(lambda: app, profiles).collect()}
    running = {tuple(s.labels.values()): s.value for s in families["pangeo_server_running"].samples}
    assert running == {("alice", "", "medium"): 1, ("carl", "gpu", "small"): 1}
    memory = families["pangeo_server_memory_request_bytes"].samples
    assert {s.labels["user"]: s.value for s in memory} == {"alice": 2 * 2**30, "carl": 2**30}
    group = families["pangeo_user_group"].samples
    assert [(s.labels["user"], s.labels["group"]) for s in group] == [("alice", "operators")]
    # Before the hub exists, a scrape yields the families without samples.
    assert all(not f.samples for f in UsageCollector(lambda: None, profiles).collect())


def test_a_missed_scrape_still_counts_and_a_long_outage_does_not():
    from pangeo_cloud.hub.usage_report import MAX_MISSED_SCRAPES, _series_integral

    step = 2.0
    steady = [[t, "1"] for t in (0, 2, 4, 6)]
    assert _series_integral(steady, step) == 8.0  # 4 samples, each holds one interval
    # The hub answered late at t=4 (no sample): the server still ran from 2 to 6.
    missed = [[0, "1"], [2, "1"], [6, "1"]]
    assert _series_integral(missed, step) == 8.0
    # A gap longer than MAX_MISSED_SCRAPES failed scrapes: the target was down;
    # only one interval counts for the sample before it.
    outage = step * (MAX_MISSED_SCRAPES + 2)
    down = [[0, "1"], [outage, "1"]]
    assert _series_integral(down, step) == 2 * step
    # Values weigh the time they hold (e.g. 2 cores requested).
    assert _series_integral([[0, "2"], [2, "2"]], step) == 8.0
