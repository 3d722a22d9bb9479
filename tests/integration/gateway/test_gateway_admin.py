"""`pangeo-cloud clusters list|stop` against the real gateway's admin API.

The admin token is a hub service token with admin:servers (the hub harness's
admin service; in production an admin's token: the `health-check` service's role
reaches only its own throw-away users).
"""

from __future__ import annotations

import json

import pytest
from gateway_support import scheduler_size, wait_for_status, worker_size

from pangeo_cloud import cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    # dask_gateway 2026.3.0: Gateway.__del__ re-closes an already closed client
    # and trips over its stopped loop (harmless; upstream).
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function Gateway.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]


def clusters(federation, capsys, *args: str, token: str | None = None) -> tuple[int, str, str]:
    code = cli.main(
        [
            "clusters",
            *args[:1],
            "local",
            "dev",
            "--gateway-url",
            federation.gateway_address,
            "--token",
            token or federation.admin_token,
            *args[1:],
        ]
    )
    out = capsys.readouterr()
    return code, out.out, out.err


def test_admins_list_every_users_clusters_and_stop_them(federation, capsys):
    owners = {name: federation.user(name) for name in ("olga", "omar")}
    gateways = {name: federation.gateway(federation.token(user)) for name, user in owners.items()}
    kept = gateways["olga"].new_cluster(keep_after_server_stops=True, shutdown_on_close=False)
    kept.scale(1)
    plain = gateways["olga"].new_cluster(shutdown_on_close=False)
    other = gateways["omar"].new_cluster(shutdown_on_close=False)
    try:
        client = kept.get_client()
        client.wait_for_workers(1, timeout=60)
        client.close()

        code, out, _ = clusters(federation, capsys, "list", "--format", "json")
        assert code == 0
        listed = {c["name"]: c for c in json.loads(out)}
        assert {kept.name, plain.name, other.name} <= set(listed)
        # The scheduler and one worker of the deployment's default size.
        scheduler_cores, scheduler_gib = scheduler_size()
        worker_cores, worker_gib = worker_size(federation.settings)
        assert listed[kept.name] | {"start_time": 0} == {
            "name": kept.name,
            "username": "olga",
            "status": "RUNNING",
            "start_time": 0,
            "workers": 1,
            "cores": float(scheduler_cores + worker_cores),
            "memory": int((scheduler_gib + worker_gib) * 2**30),
            "kept": True,
        }
        assert listed[other.name]["username"] == "omar"

        code, out, _ = clusters(federation, capsys, "list")
        assert code == 0
        assert out.splitlines()[0].split() == [
            "USER", "CLUSTER", "STATUS", "WORKERS", "CORES", "MEMORY", "AGE", "KEPT",
        ]  # fmt: skip
        assert any(line.split()[:2] == ["olga", "(total"] for line in out.splitlines())

        code, out, _ = clusters(federation, capsys, "stop", "--user", "olga")
        assert code == 0
        assert sorted(out.split()[1::2]) == sorted([kept.name, plain.name])
        wait_for_status(gateways["olga"], kept.name, "STOPPED")
        wait_for_status(gateways["olga"], plain.name, "STOPPED")
        assert gateways["omar"].get_cluster(other.name).status.name == "RUNNING"
    finally:
        for cluster in (kept, plain, other):
            cluster.shutdown()


def test_users_cannot_use_the_admin_api(federation, capsys):
    user_token = federation.token(federation.user("uma", server=False))
    code, _, err = clusters(federation, capsys, "list", token=user_token)
    assert code == 1
    assert "HTTP 403" in err and "needs the admin:servers scope" in err
    code, _, err = clusters(federation, capsys, "list", token="not-a-token")
    assert code == 1 and "HTTP 401" in err
    code, _, err = clusters(federation, capsys, "stop", token=federation.admin_token)
    assert code == 1 and "name the clusters to stop, or pass --user USER or --all" in err
