"""Reading `jupyterhub.custom.pangeo.gateway` into the gateway policy."""

from __future__ import annotations

import pytest
import yaml
from repo_support import REPO_ROOT

from pangeo_cloud.gateway.policy import GIB, GatewaySettingsError, Limits, Policy, UserLimits

VALUES = REPO_ROOT / "helm-chart" / "pangeo-cloud" / "values.yaml"
SCRATCH = {"url": "gs://pangeo-scratch"}


def settings(**gateway):
    return {"scratch": dict(SCRATCH), "gateway": gateway}


def test_chart_defaults_parse():
    pangeo = yaml.safe_load(VALUES.read_text())["jupyterhub"]["custom"]["pangeo"]
    pangeo["scratch"]["url"] = "s3://bucket"  # every deployment sets it
    policy = Policy.from_settings(pangeo)
    assert policy.idle_timeout == 3600
    assert (policy.worker_cores.min, policy.worker_cores.max, policy.worker_cores.default) == (
        1,
        8,
        2,
    )
    assert policy.worker_memory_gib.default == 8
    assert policy.limits == Limits(cores=80, memory_gib=320, workers=40)
    assert policy.group_limits == {}
    assert policy.user_limits == UserLimits(clusters=4, cores=100, memory_gib=400, workers=50)
    assert policy.stop_with_server is True and policy.server_check_seconds == 30
    # The code's defaults for missing keys are the chart's.
    assert Policy.from_settings({"scratch": SCRATCH}) == Policy.from_settings(
        {**pangeo, "scratch": SCRATCH}
    )


def test_limits_in_cluster_config_units():
    assert Limits(cores=4, memory_gib=1.5, workers=None).cluster_config() == {
        "cluster_max_cores": 4.0,
        "cluster_max_memory": int(1.5 * GIB),
        "cluster_max_workers": None,
    }


@pytest.mark.parametrize(
    ("pangeo", "message"),
    [
        ({"gateway": {}}, "no scratch bucket configured"),
        ({"scratch": {"url": "http://x"}}, "scratch.url must be gs://BUCKET"),
        (
            settings(workerCores={"min": 1, "max": 4, "default": 6}),
            "gateway.workerCores: need min <= default <= max, got min=1, default=6, max=4",
        ),
        (
            settings(workerCores={"max": 2.5}),
            "jupyterhub.custom.pangeo.gateway.workerCores.max must be an integer, got 2.5",
        ),
        (settings(workerCores={"maximum": 2}), "gateway.workerCores: unknown key(s) ['maximum']"),
        (settings(userMaxClusters=1.5), "gateway.userMaxClusters must be an integer, got 1.5"),
        (settings(userMaxCores="many"), "gateway.userMaxCores must be a number, got 'many'"),
        (
            settings(stopClustersWithServer="yes"),
            "gateway.stopClustersWithServer must be true or false, got 'yes'",
        ),
        (settings(serverCheckSeconds=0), "gateway.serverCheckSeconds must be >= 1, got 0"),
        (settings(workerMemoryGiB={"min": 0}), "gateway.workerMemoryGiB.min must be > 0"),
        (settings(idleTimeout=-1), "gateway.idleTimeout must be >= 0, got -1"),
        (settings(idleTimeout="1h"), "gateway.idleTimeout must be a number, got '1h'"),
        (settings(clusterMaxCores=True), "gateway.clusterMaxCores must be a number"),
        (settings(clusterMaxWorkers=2.5), "gateway.clusterMaxWorkers must be an integer"),
        (settings(groupLimits=["a"]), "gateway.groupLimits must be a mapping, got list"),
        (
            settings(groupLimits={"org:team": {"clusterMaxCPUs": 2}}),
            "gateway.groupLimits.org:team: unknown key(s) ['clusterMaxCPUs']",
        ),
        (settings(image=3), "gateway.image must be a string"),
    ],
)
def test_bad_settings_name_their_key(pangeo, message):
    with pytest.raises(GatewaySettingsError) as info:
        Policy.from_settings(pangeo)
    assert message in str(info.value)


def test_group_limits_replace_defaults_and_most_generous_wins():
    policy = Policy.from_settings(
        settings(
            clusterMaxCores=10,
            clusterMaxMemoryGiB=40,
            clusterMaxWorkers=5,
            groupLimits={
                "org:power": {"clusterMaxCores": 100, "clusterMaxWorkers": 50},
                "org:bigmem": {"clusterMaxMemoryGiB": 400, "clusterMaxWorkers": 20},
                "org:students": {"clusterMaxCores": 4, "clusterMaxWorkers": 2},
                "org:unlimited": {"clusterMaxWorkers": None},
            },
        )
    )
    assert policy.limits_for([]) == Limits(cores=10, memory_gib=40, workers=5)
    assert policy.limits_for({"org:other"}) == Limits(cores=10, memory_gib=40, workers=5)
    # A group's caps replace the defaults, even downwards.
    assert policy.limits_for({"org:students"}) == Limits(cores=4, memory_gib=40, workers=2)
    # Per cap, the most generous of the user's groups.
    assert policy.limits_for({"org:power", "org:bigmem", "org:students"}) == Limits(
        cores=100, memory_gib=400, workers=50
    )
    # Unlimited (null) beats any number.
    assert policy.limits_for({"org:power", "org:unlimited"}).workers is None


def test_idle_timeout_zero_means_none():
    assert Policy.from_settings(settings(idleTimeout=0)).idle_timeout == 0


def test_user_limits_per_group_most_generous_wins():
    policy = Policy.from_settings(
        settings(
            userMaxClusters=2,
            userMaxCores=20,
            userMaxMemoryGiB=None,
            userMaxWorkers=10,
            groupLimits={
                "org:power": {"userMaxClusters": 5, "userMaxWorkers": 40, "clusterMaxWorkers": 9},
                "org:more-clusters": {"userMaxClusters": 8},
                "org:unlimited": {"userMaxCores": None},
            },
        )
    )
    assert policy.user_limits_for([]) == UserLimits(
        clusters=2, cores=20, memory_gib=None, workers=10
    )
    assert policy.user_limits_for({"org:power", "org:more-clusters"}) == UserLimits(
        clusters=8, cores=20, memory_gib=None, workers=40
    )
    assert policy.user_limits_for({"org:unlimited"}).cores is None
    # Cluster and user keys in one group entry are independent.
    assert policy.limits_for({"org:power"}).workers == 9
    assert not policy.user_limits_for([]).unlimited
    assert UserLimits(None, None, None, None).unlimited
