"""configure() and the generated extraConfig that runs it inside the gateway pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from dask_gateway_server.auth import JupyterHubAuthenticator
from dask_gateway_server.backends.local import UnsafeLocalBackend
from dask_gateway_server.options import Options
from traitlets.config import Config
from traitlets.utils.importstring import import_item

import pangeo_cloud
from pangeo_cloud.config.hooks import gateway_extra_config, gateway_module_sources
from pangeo_cloud.gateway.config import SERVICE_NAME, configure, dask_commands
from pangeo_cloud.gateway.heartbeat import HeartbeatProbeMixin
from pangeo_cloud.gateway.policy import GatewaySettingsError

KUBE_WORKER_CMD = ["dask", "worker", "--worker-port", "8789", "--nanny-port", "8790"]

SETTINGS = {
    "scratch": {"url": "gs://pangeo-scratch", "project": "pangeo"},
    "gateway": {
        "idleTimeout": 1200,
        "clusterMaxCores": 40,
        "clusterMaxMemoryGiB": 160,
        "clusterMaxWorkers": 20,
        "workerCores": {"min": 1, "max": 4, "default": 2},
        "workerMemoryGiB": {"min": 2, "max": 16, "default": 8},
        "groupLimits": {"pangeo-data:power-users": {"clusterMaxWorkers": 100}},
    },
}
GATEWAY_DIR = Path(pangeo_cloud.__file__).parent / "gateway"


def test_kubernetes():
    c = Config()
    c.KubeClusterConfig.image = "pangeo/pangeo-notebook:2026.11.18"  # from the chart
    configure(c, SETTINGS, backend="kubernetes")
    assert isinstance(c.Backend.cluster_options, Options)
    assert c.KubeClusterConfig == {
        "image": "pangeo/pangeo-notebook:2026.11.18",
        "scheduler_cmd": ["dask", "scheduler"],
        "worker_cmd": KUBE_WORKER_CMD,
        "idle_timeout": 1200.0,
    }
    assert c.JupyterHubAuthenticator == {
        "jupyterhub_service_name": SERVICE_NAME,
        "use_service_access_scopes": True,
    }
    # Our subclass of the chart's KubeBackend (per-user limits, clusters stopped with
    # their server), reading the same settings; the chart chooses the authenticator.
    assert c.DaskGateway.backend_class == "pangeo_cloud.gateway.kube.PangeoKubeBackend"
    assert c.PangeoBackendMixin.settings == SETTINGS
    assert "authenticator_class" not in c.DaskGateway


def test_service_name_from_chart_is_kept():
    c = Config()
    c.JupyterHubAuthenticator.jupyterhub_service_name = "gateway"
    configure(c, SETTINGS, backend="kubernetes")
    assert c.JupyterHubAuthenticator.jupyterhub_service_name == "gateway"
    assert c.JupyterHubAuthenticator.use_service_access_scopes is True


def test_authenticator_requires_the_service_access_scope(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_NAME", raising=False)
    c = Config()
    configure(c, SETTINGS, backend="local")
    auth = JupyterHubAuthenticator(
        config=c, jupyterhub_api_token="t", jupyterhub_api_url="http://hub/hub/api"
    )
    assert auth.jupyterhub_service_name == "dask-gateway"
    assert auth.use_service_access_scopes is True


def test_local():
    c = Config()
    configure(c, SETTINGS, backend="local")
    # The upstream local backend, failing clusters only for unresponsive schedulers.
    backend = import_item(c.DaskGateway.backend_class)
    assert issubclass(backend, UnsafeLocalBackend)
    assert issubclass(backend, HeartbeatProbeMixin)
    assert c.DaskGateway.authenticator_class.endswith(".JupyterHubAuthenticator")
    assert c.LocalClusterConfig.scheduler_cmd[1:] == ["scheduler"]
    assert c.LocalClusterConfig.worker_cmd[1:] == ["worker"]
    assert c.LocalClusterConfig.idle_timeout == 1200


def test_local_dask_command_beside_interpreter(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    scheduler, worker = dask_commands("local")
    beside = os.path.join(os.path.dirname(sys.executable), "dask")
    assert scheduler == [beside, "scheduler"] and worker == [beside, "worker"]
    # In the pod, the image's PATH decides.
    # In a pod, fixed ports: the Dask NetworkPolicy admits exactly these.
    assert dask_commands("kubernetes") == (["dask", "scheduler"], KUBE_WORKER_CMD)


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="backend must be one of"):
        configure(Config(), SETTINGS, backend="yarn")
    with pytest.raises(GatewaySettingsError, match="no scratch bucket configured"):
        configure(Config(), {"gateway": {}}, backend="kubernetes")


# What gateway modules may import: tests/unit/test_import_rules.py.


def test_bundle_ships_every_gateway_module():
    sources = gateway_module_sources()
    for path in GATEWAY_DIR.glob("*.py"):
        name = "pangeo_cloud.gateway." + path.stem
        assert sources[name] == path.read_text()
    assert "pangeo_cloud.scratch" in sources and "pangeo_cloud.bundle" in sources


FRESH_INTERPRETER = textwrap.dedent(
    """
    import importlib.util, json, sys
    # Only the gateway's dependencies: no .pth files, so no editable pangeo_cloud.
    sys.path.append(sys.argv[1])
    assert importlib.util.find_spec("pangeo_cloud") is None, "pangeo_cloud is importable"

    from traitlets.config import Config
    c = Config()
    c.KubeClusterConfig.image = "pangeo/pangeo-notebook:2026.11.18"
    c.KubeClusterConfig.worker_cores_limit = 2
    c.KubeClusterConfig.worker_memory_limit = "8G"
    exec(compile(open(sys.argv[2]).read(), "dask_gateway_config.py", "exec"), {"c": c})

    import pangeo_cloud.gateway.config as config
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
    from dask_gateway_server.models import User

    from traitlets.utils.importstring import import_item
    from dask_gateway_server.backends.kubernetes.backend import KubeBackend
    backend = import_item(c.DaskGateway.backend_class)  # as DaskGateway resolves it

    options = c.Backend.cluster_options
    requested = options.parse_options({"worker_cores": 4, "environment": {"A": "1"}})
    user = User("Ann", groups=["pangeo-data:power-users"])
    overrides = options.get_configuration(requested, user)
    cluster = KubeClusterConfig(config=c, **overrides)
    section = {k: v for k, v in c.KubeClusterConfig.items()}
    auth = dict(c.JupyterHubAuthenticator)
    try:
        options.parse_options({"worker_cores": 5})
    except ValueError as exc:
        error = str(exc)
    print(json.dumps({
        "module_file": config.__file__,
        "backend_file": sys.modules[backend.__module__].__file__,
        "backend_is_kube": issubclass(backend, KubeBackend),
        "section": section,
        "auth": auth,
        "cluster": {k: cluster.to_dict()[k] for k in (
            "image", "worker_cores", "worker_cores_limit", "worker_memory",
            "worker_memory_limit", "environment", "idle_timeout", "cluster_max_cores",
            "cluster_max_memory", "cluster_max_workers", "scheduler_cmd", "worker_cmd")},
        "error": error,
    }))
    """
)


def test_extra_config_runs_in_a_fresh_interpreter(tmp_path):
    code = gateway_extra_config(SETTINGS)
    (tmp_path / "extra.py").write_text(code)
    (tmp_path / "check.py").write_text(FRESH_INTERPRETER)
    purelib = sysconfig.get_paths()["purelib"]
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(tmp_path / "check.py"),
            purelib,
            str(tmp_path / "extra.py"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["module_file"] == "<pangeo-cloud-bundle>/pangeo_cloud/gateway/config.py"
    assert out["backend_file"] == "<pangeo-cloud-bundle>/pangeo_cloud/gateway/kube.py"
    assert out["backend_is_kube"] is True
    assert out["section"] == {
        "image": "pangeo/pangeo-notebook:2026.11.18",
        "worker_cores_limit": 2,
        "worker_memory_limit": "8G",
        "scheduler_cmd": ["dask", "scheduler"],
        "worker_cmd": KUBE_WORKER_CMD,
        "idle_timeout": 1200.0,
    }
    assert out["auth"] == {
        "jupyterhub_service_name": "dask-gateway",
        "use_service_access_scopes": True,
    }
    assert out["cluster"] == {
        "image": "pangeo/pangeo-notebook:2026.11.18",
        "worker_cores": 4.0,
        "worker_cores_limit": 4.0,
        "worker_memory": 8 * 2**30,
        "worker_memory_limit": 8 * 2**30,
        "environment": {
            "A": "1",
            "PANGEO_SCRATCH": "gs://pangeo-scratch/-41nn/",
            "GOOGLE_CLOUD_PROJECT": "pangeo",
        },
        "idle_timeout": 1200.0,
        "cluster_max_cores": 40.0,
        "cluster_max_memory": 160 * 2**30,
        # The group allows 100; 40 cores (1 for the scheduler) allow 9 workers of 4.
        "cluster_max_workers": 9,
        "scheduler_cmd": ["dask", "scheduler"],
        "worker_cmd": KUBE_WORKER_CMD,
    }
    assert out["error"] == "worker_cores must be <= 4, got 5"
