"""Fixtures for the hub unit tests (helpers live in hub_unit_support)."""

from __future__ import annotations

from typing import Any

import pytest
from hub_unit_support import DUMMY_KUBECONFIG, FAKE_HUB, fake_user
from traitlets.config import Config


@pytest.fixture(autouse=True)
def broker_health_standin(monkeypatch):
    """No scratch-credentials broker runs in hub unit tests: its health check passes.

    The real check is tested in tests/unit/broker (against a real HTTP server)
    and end to end in tests/integration/scratch.
    """
    calls: list[dict[str, Any]] = []

    async def check_broker(settings: dict[str, Any]) -> None:
        calls.append(settings)

    monkeypatch.setattr("pangeo_cloud.hub.spawn.check_broker", check_broker)
    return calls


@pytest.fixture
def offline_kubeconfig(tmp_path, monkeypatch):
    path = tmp_path / "kubeconfig"
    path.write_text(DUMMY_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    # KubeSpawner loads the client configuration once per process (lru_cache):
    # forget whatever an earlier test loaded, so this kubeconfig is the one used.
    # kubernetes_asyncio reads $KUBECONFIG once, at import: point it here too.
    from kubernetes_asyncio.config import kube_config
    from kubespawner.clients import load_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    load_config.cache_clear()
    yield path
    load_config.cache_clear()


@pytest.fixture
def make_kubespawner(offline_kubeconfig):
    """Create a real KubeSpawner from a config, for a fake user (call in async tests)."""
    from kubespawner import KubeSpawner

    def make(c: Config, name: str = "alice", groups: tuple[str, ...] = ()) -> Any:
        spawner = KubeSpawner(config=c, user=fake_user(name, groups), hub=FAKE_HUB)
        spawner.api_token = "offline-token"
        return spawner

    return make
