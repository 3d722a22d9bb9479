"""The user guide's Dask flows, with real schedulers and workers behind a real hub.

Dask configuration through ``options.environment``, a package installed on the
workers by distributed's ``PipInstall`` plugin, and ``cluster.adapt`` within
the limits (conftest.py: 2 workers per cluster for ordinary users).
"""

from __future__ import annotations

import time
import urllib.request

import dask
import pytest
from distributed.diagnostics.plugin import PipInstall
from gateway_support import WAIT, cluster_of, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    # dask_gateway 2026.3.0: Gateway.__del__ re-closes an already closed client
    # and trips over its stopped loop (harmless; upstream).
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <function Gateway.__del__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

# A tiny pure-Python package that the test environment does not have.
PACKAGE = "termcolor"


def test_dask_config_through_environment_takes_effect_in_the_scheduler(federation):
    def scheduler_settings(dask_scheduler=None):  # local: cloudpickle ships it by value
        return {
            "stealing": "stealing" in dask_scheduler.extensions,
            "allowed_failures": dask_scheduler.allowed_failures,
        }

    gateway = federation.gateway(federation.token(federation.user("dora")))
    options = gateway.cluster_options()
    # As the user guide writes it: Python values, not strings.
    options.environment = {
        "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": False,
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": 5,
    }
    with cluster_of(gateway, cluster_options=options) as tuned, cluster_of(gateway) as plain:
        assert tuned.get_client().run_on_scheduler(scheduler_settings) == {
            "stealing": False,
            "allowed_failures": 5,
        }
        # The same settings differ without the variables: the environment did it.
        assert plain.get_client().run_on_scheduler(scheduler_settings) == {
            "stealing": True,
            "allowed_failures": dask.config.get("distributed.scheduler.allowed-failures"),
        }
        assert dask.config.get("distributed.scheduler.allowed-failures") != 5


def _pypi_reachable() -> bool:
    try:
        urllib.request.urlopen(f"https://pypi.org/simple/{PACKAGE}/", timeout=10).close()
        return True
    except OSError:
        return False


def test_pip_install_plugin_makes_a_package_importable_on_workers(federation, tmp_path):
    if not _pypi_reachable():
        pytest.skip("PyPI (https://pypi.org) is not reachable: PipInstall needs it")

    def where():  # local, so that cloudpickle ships it by value
        import termcolor

        return termcolor.__file__

    with pytest.raises(ImportError):
        __import__(PACKAGE)  # else the test could not tell the plugin did it
    # Locally every worker shares the gateway's Python environment: install into
    # a directory of this test instead, on the workers' PYTHONPATH (in a pod the
    # plugin would install into the image's environment).
    target = tmp_path / "site"
    target.mkdir()
    gateway = federation.gateway(federation.token(federation.user("pia")))
    with cluster_of(gateway, environment={"PYTHONPATH": str(target)}) as cluster:
        client = cluster.get_client()
        # Registered before scaling, as the user guide says.
        client.register_plugin(PipInstall([PACKAGE], pip_options=["--target", str(target)]))
        cluster.scale(2)
        client.wait_for_workers(2, timeout=WAIT)
        files = client.run(where)
        assert len(files) == 2
        assert all(path.startswith(str(target)) for path in files.values()), files


def test_adapt_respects_minimum_and_maximum(federation):
    gateway = federation.gateway(federation.token(federation.user("adam")))
    with cluster_of(gateway) as cluster:
        cluster.adapt(minimum=1, maximum=2)
        # The minimum without any work.
        wait_until(lambda: len(cluster.get_client().scheduler_info()["workers"]) == 1, "1 worker")
        client = cluster.get_client()
        tasks = client.map(time.sleep, [0.5] * 400, pure=False)
        wait_until(lambda: len(client.scheduler_info()["workers"]) == 2, "2 workers under load")
        # Much more work than 2 workers do, never more than the maximum.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert len(client.scheduler_info()["workers"]) <= 2
            time.sleep(0.5)
        client.cancel(tasks)
