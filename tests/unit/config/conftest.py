"""Fixtures for config tests."""

from __future__ import annotations

import pytest
from config_support import sops_block


@pytest.fixture
def fake_sops():
    """Build the text of a well-formed sops file from its (already encrypted) body."""

    def build(body: str, **kwargs: str) -> str:
        return body + sops_block(**kwargs)

    return build
