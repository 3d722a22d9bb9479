"""PangeoKubeBackend against a real Kubernetes API: per-user limits on DaskCluster objects.

The gateway server runs as in the chart (``configure(..., backend="kubernetes")``,
our ``PangeoKubeBackend``) against the loopback control plane with the real
dask-gateway CRD, with simple auth instead of a hub (authentication is tested
elsewhere). No dask-gateway controller runs, so clusters stay Pending: what is
tested is that the limit counts clusters the informer has not reported yet, so
concurrent requests cannot pass the last slot, and that each DaskCluster
carries its owner's limits.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from k8s_support import get_json, tool_env, wait_for

from pangeo_cloud.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.timeout(300)]

CRD = "dask-gateway-2026.3.0/crds/daskclusters.yaml"
SETTINGS = {
    "scratch": {"url": "gs://pangeo-scratch"},
    "gateway": {"userMaxClusters": 2, "stopClustersWithServer": False},
}


@pytest.fixture
def kube_gateway(k8s_cluster, namespace, tmp_path, upstream_dir: Path):
    crd = upstream_dir / CRD
    if not crd.is_file():
        pytest.skip(f"the dask-gateway CRD is not at {crd}")
    k8s_cluster.kubectl("apply", "--server-side", "-f", str(crd))
    # A created or changed CRD is served a moment after the apply (Established may
    # already be true from an earlier test): wait until the list the backend's
    # informer makes answers. (Asked of the API server itself: kubectl's cached
    # discovery may name a version an earlier test added and removed.)
    path = f"/apis/gateway.dask.org/v1alpha1/namespaces/{namespace}/daskclusters"
    wait_for(
        "daskclusters to be served",
        lambda: k8s_cluster.request("GET", path)[0] == 200,
        120,
    )
    api, proxy = free_ports(2)
    config = textwrap.dedent(
        f"""
        import json
        from pangeo_cloud.gateway.config import configure

        c.KubeClusterConfig.namespace = {namespace!r}
        configure(c, json.loads({json.dumps(json.dumps(SETTINGS))}), backend="kubernetes")
        c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
        c.KubeBackend.gateway_instance = "pangeo-test"
        c.DaskGateway.address = "127.0.0.1:{api}"
        c.Proxy.address = "127.0.0.1:{proxy}"
        """
    )
    (tmp_path / "dask_gateway_config.py").write_text(config)
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "-f", "dask_gateway_config.py"],
            cwd=tmp_path,
            env=tool_env(k8s_cluster),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        import urllib.request

        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{api}/api/health", timeout=2).close()
                return True
            except OSError:
                return False

        wait_for("the gateway to answer", healthy, timeout=60)
        yield f"http://127.0.0.1:{api}", log
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Gateway.__del__:pytest.PytestUnraisableExceptionWarning"
)
def test_concurrent_requests_cannot_pass_the_last_slot_on_kubernetes(
    k8s_cluster, namespace, kube_gateway
):
    from dask_gateway import Gateway
    from dask_gateway.auth import BasicAuth

    address, log = kube_gateway
    gateways = [Gateway(address=address, auth=BasicAuth(username="kate")) for _ in range(4)]
    other = results = refusals = None

    def submit(gateway):
        try:
            return gateway.submit()
        except ValueError as exc:
            return exc

    try:
        with ThreadPoolExecutor(len(gateways)) as pool:
            results = list(pool.map(submit, gateways))
        names = [r for r in results if isinstance(r, str)]
        refusals = [str(r) for r in results if isinstance(r, ValueError)]
        assert len(names) == 2, (results, log.read_text()[-3000:])
        assert len(refusals) == 2
        assert all("your limit of 2 running clusters" in m for m in refusals), refusals

        items = get_json(k8s_cluster, "daskclusters", "-n", namespace)["items"]
        assert sorted(f"{namespace}.{o['metadata']['name']}" for o in items) == sorted(names)
        for obj in items:
            assert obj["spec"]["username"] == "kate"
            assert obj["spec"]["config"]["user_max_clusters"] == 2

        # Another user has their own budget.
        other = Gateway(address=address, auth=BasicAuth(username="lena"))
        gateways.append(other)
        assert other.submit().startswith(f"{namespace}.")

        gateways[0].stop_cluster(names[0])
        name = names[0].split(".", 1)[1]
        wait_for(
            "the DaskCluster to be deactivated",
            lambda: (
                get_json(k8s_cluster, "daskcluster", name, "-n", namespace)["spec"].get("active")
                is False
            ),
            timeout=30,
        )
    finally:
        for gateway in gateways:
            gateway.close()
        # The refusals' tracebacks hold clients too.
        gateways = other = results = refusals = None
        gc.collect()  # collect the closed clients here, under this test's warning filter
