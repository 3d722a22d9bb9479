"""The repository stays lint-clean: ruff for Python, yamllint for operator YAML."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo_support import REPO_ROOT

REPO = REPO_ROOT
PYTHON_DIRS = ["src", "tests", "scripts", "benchmarks"]


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not Path(found).exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


def test_ruff_check():
    dirs = [d for d in PYTHON_DIRS if (REPO / d).is_dir()]
    result = _run([_tool("ruff"), "check", *dirs])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    dirs = [d for d in PYTHON_DIRS if (REPO / d).is_dir()]
    result = _run([_tool("ruff"), "format", "--check", *dirs])
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint():
    targets = [
        "deployments",
        "helm-chart/pangeo-cloud/values.yaml",
        "helm-chart/support/values.yaml",
        ".github",
        ".sops.yaml",
    ]
    result = _run([_tool("yamllint"), "-s", *[t for t in targets if (REPO / t).exists()]])
    assert result.returncode == 0, result.stdout + result.stderr
