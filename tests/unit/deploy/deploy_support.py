"""Constants and helpers shared by the deploy tests (imported by name, not a fixture)."""

from __future__ import annotations

from pathlib import Path

from repo_support import FIXTURES

TEST_KEY = FIXTURES / "age" / "test-key.txt"
WRONG_KEY = FIXTURES / "age" / "wrong-key.txt"
SECRET_REGEX = "^(client_id|client_secret|apiToken|.*[Tt]oken|.*[Ss]ecret)$"


def age_recipient(key_file: Path) -> str:
    for line in key_file.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.split(": ", 1)[1].strip()
    raise AssertionError(f"no public key comment in {key_file}")
