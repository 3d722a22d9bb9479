"""Fixtures for deploy tests: real sops with the test age keys, real helm, git repos."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from deploy_support import MONITORING_SECRETS, SECRET_REGEX, TEST_KEY, age_recipient

from pangeo_cloud.deploy.tools import ToolError, find_tool


@pytest.fixture(scope="session")
def sops_bin() -> str:
    try:
        return find_tool("sops")
    except ToolError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def sops_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sops_bin: str) -> dict[str, str]:
    """An environment where sops finds only the test key (not a user's own keys)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(TEST_KEY))
    for name in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    # The tool cache is found through $PANGEO_TOOLS_DIR, independent of $HOME.
    monkeypatch.setenv("PANGEO_TOOLS_DIR", str(Path(sops_bin).parent))
    return dict(os.environ)


@pytest.fixture
def encrypt(tmp_path: Path, sops_bin: str):
    """Encrypt YAML text to the test key with the real sops; returns the file."""
    config = tmp_path / "test.sops.yaml"
    config.write_text(
        "creation_rules:\n"
        f"  - age: {age_recipient(TEST_KEY)}\n"
        f"    encrypted_regex: '{SECRET_REGEX}'\n"
    )

    def _encrypt(text: str, dest: Path) -> Path:
        _write(text, dest)
        # A stage's secrets are <stage>.enc.yaml and <stage>-monitoring.enc.yaml (the hub
        # services' tokens for the support release); one key must open both, so the
        # monitoring file of a repository copy is re-encrypted to the test key too.
        monitoring = dest.with_name(dest.name.replace(".enc.yaml", "-monitoring.enc.yaml"))
        if dest.parent.name == "secrets" and monitoring.is_file():
            _write(MONITORING_SECRETS, monitoring)
        return dest

    def _write(text: str, dest: Path) -> Path:
        plain = tmp_path / "plain-input.yaml"
        plain.write_text(text)
        result = subprocess.run(
            [
                sops_bin,
                "--config",
                str(config),
                "encrypt",
                "--input-type",
                "yaml",
                "--output-type",
                "yaml",
                str(plain),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        plain.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(result.stdout)
        return dest

    return _encrypt


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def git_repo(repo_copy, monkeypatch: pytest.MonkeyPatch):
    """`repo_copy` as a git repository with one commit; returns (paths, git)."""
    root = repo_copy.root
    for name, value in {
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@localhost",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@localhost",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(name, value)
    (root / "docs").mkdir()
    (root / "docs" / "index.md").write_text("# docs\n")
    _git(root, "init", "-q", "-b", "staging")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "initial")

    def git(*args: str) -> str:
        return _git(root, *args)

    return repo_copy, git
