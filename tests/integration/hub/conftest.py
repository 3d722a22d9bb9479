"""Fixtures for the hub integration tests: real hubs that are always stopped.

The helpers (config file, ports, HTML parsing) live in hub_process_support.
"""

from __future__ import annotations

import pytest
from hub_process_support import Hub, launch_hub


@pytest.fixture(scope="module")
def launch():
    """``launch(directory, values, **kwargs) -> Hub``; every hub is stopped afterwards."""
    hubs: list[Hub] = []

    def start(*args, **kwargs) -> Hub:
        hub = launch_hub(*args, **kwargs)
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.stop()
