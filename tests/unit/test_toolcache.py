"""The tool cache: one place for its directories and for finding a tool in it."""

from __future__ import annotations

from pathlib import Path

from pangeo_cloud import toolcache


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_directories_follow_the_cache_and_tools_variables(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PANGEO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PANGEO_TOOLS_DIR", raising=False)
    monkeypatch.delenv("PANGEO_K8S_STATE", raising=False)
    assert toolcache.tools_dir() == tmp_path / "cache" / "bin"
    assert toolcache.node_dir() == tmp_path / "cache" / "node"
    assert toolcache.k8s_state_dir() == tmp_path / "cache" / "k8s"
    monkeypatch.setenv("PANGEO_TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setenv("PANGEO_K8S_STATE", str(tmp_path / "state"))
    assert toolcache.tools_dir() == tmp_path / "tools"
    assert toolcache.k8s_state_dir() == tmp_path / "state"


def test_path_wins_then_the_cache_then_nothing(tmp_path, monkeypatch) -> None:
    cached = _executable(tmp_path / "tools" / "pc-tool")
    monkeypatch.setenv("PANGEO_TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert toolcache.find("pc-tool") == str(cached)
    on_path = _executable(tmp_path / "path" / "pc-tool")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert toolcache.find("pc-tool") == str(on_path)
    assert toolcache.find("pc-absent") is None


def test_a_cached_file_that_cannot_run_is_not_a_tool(tmp_path, monkeypatch) -> None:
    plain = tmp_path / "tools" / "pc-tool"
    plain.parent.mkdir()
    plain.write_text("not executable")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert toolcache.find("pc-tool", plain.parent) is None
