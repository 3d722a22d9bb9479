"""scripts/install-go-tools.sh checks every tool, built or reused, against its checksum.

A stand-in `go` on PATH (answering `go env` and writing a fixed binary for
`go install`) replaces the Go toolchain, so the script's own logic runs for real
in seconds: a recorded checksum accepts, a tampered cached binary is refused and
removed, a missing record is an error in strict mode, and switching off the
checksum database stops everything.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from repo_support import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "install-go-tools.sh"
FAKE_GO = """#!/usr/bin/env bash
# Stand-in for the Go toolchain (tests only).
if [ "$1" = env ]; then
  case "$2" in
    GOVERSION) echo "${FAKE_GOVERSION:-go1.99.0}" ;;
    GOOS) echo linux ;;
    GOARCH) echo amd64 ;;
    GOSUMDB) echo "${FAKE_GOSUMDB:-sum.golang.org}" ;;
    *) echo "" ;;
  esac
  exit 0
fi
if [ "$1" = install ]; then
  module="${@: -1}"; path="${module%@*}"
  printf 'binary of %s\\n' "$module" > "$GOBIN/${path##*/}"
  chmod +x "$GOBIN/${path##*/}"
  exit 0
fi
exit 2
"""


def _modules() -> list[tuple[str, str]]:
    text = SCRIPT.read_text()
    block = text.split("TOOLS=(", 1)[1].split(")", 1)[0]
    return [tuple(line.strip().strip('"').split()) for line in block.splitlines() if '"' in line]


def _fake_binary(module: str) -> bytes:
    return f"binary of {module}\n".encode()


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def sandbox(tmp_path: Path):
    """A copy of the script beside a checksums file of our own, and a fake `go`."""
    if shutil.which("bash") is None or shutil.which("sha256sum") is None:
        pytest.skip("needs bash and sha256sum")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(SCRIPT, scripts / SCRIPT.name)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "go").write_text(FAKE_GO)
    (fakebin / "go").chmod(0o755)
    tools = tmp_path / "tools"
    env = {
        "PATH": f"{fakebin}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PANGEO_TOOLS_DIR": str(tools),
    }
    records = [
        f"{name} {module} go1.99.0 linux/amd64 {_sha(_fake_binary(module))}"
        for name, module in _modules()
    ]

    def run(checksums: list[str], **extra: str) -> subprocess.CompletedProcess:
        (scripts / "tool-checksums.txt").write_text("# test\n" + "\n".join(checksums) + "\n")
        return subprocess.run(
            ["bash", str(scripts / SCRIPT.name)],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run, records, tools


def test_recorded_checksums_accept_the_build_and_the_cache(sandbox) -> None:
    run, records, tools = sandbox
    first = run(records, PANGEO_TOOLS_VERIFY="strict")
    assert first.returncode == 0, first.stderr
    assert "building helm" in first.stdout and "Go tools ready" in first.stdout
    again = run(records, PANGEO_TOOLS_VERIFY="strict")
    assert again.returncode == 0 and "building" not in again.stdout  # reused, and checked


def test_a_tampered_cached_tool_is_refused_and_removed(sandbox) -> None:
    run, records, tools = sandbox
    assert run(records).returncode == 0
    poisoned = b"#!/bin/sh\necho poisoned\n"
    (tools / "sops").write_bytes(poisoned)  # e.g. from a cache another job wrote
    result = run(records)
    assert result.returncode == 1
    assert f"{tools}/sops has sha256 {_sha(poisoned)}" in result.stderr
    assert "removed it" in result.stderr and not (tools / "sops").exists()
    assert run(records).returncode == 0  # rebuilt, and the rebuild matches


def test_without_a_record_strict_mode_fails(sandbox) -> None:
    run, records, _ = sandbox
    other_go = [r.replace("go1.99.0", "go1.98.0") for r in records]
    strict = run(other_go, PANGEO_TOOLS_VERIFY="strict")
    assert strict.returncode == 1
    assert "helm: no checksum recorded for helm.sh/helm/v3/cmd/helm@" in strict.stderr
    assert "with go1.99.0 on linux/amd64" in strict.stderr
    lenient = run(other_go)
    assert lenient.returncode == 0 and "checked against sum.golang.org only" in lenient.stdout


def test_checksum_database_switched_off_stops_the_build(sandbox) -> None:
    run, records, tools = sandbox
    result = run(records, FAKE_GOSUMDB="off")
    assert result.returncode == 1 and "refusing to build: GOSUMDB is off" in result.stderr
    assert not (tools / "helm").exists()


def test_the_repository_records_every_tool() -> None:
    lines = [
        line.split()
        for line in (REPO_ROOT / "scripts" / "tool-checksums.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(len(fields) == 5 and len(fields[4]) == 64 for fields in lines), lines
    recorded = {(fields[0], fields[1]) for fields in lines}
    for name, module in _modules():
        assert (name, module) in recorded, f"no checksum recorded for {name} {module}"
