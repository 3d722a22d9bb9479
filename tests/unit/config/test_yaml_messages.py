"""YAML mistakes: each is one line saying where and what to do, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pangeo_cloud.cli import main
from pangeo_cloud.config import ConfigError, load_deployment
from pangeo_cloud.config.yamlpos import MAX_FILE_BYTES, load_yaml


def _validate(paths, capsys, target: str) -> tuple[int, list[str]]:
    code = main(["--root", str(paths.root), "validate", target])
    out = capsys.readouterr().out
    return code, [line.strip() for line in out.splitlines() if line.startswith("       ")]


def _stage_file(paths, name="gcp-us-central1-b", stage="prod") -> Path:
    return paths.deployments / name / "values" / f"{stage}.yaml"


def test_tab_indentation_says_to_use_spaces(repo_copy, capsys):
    file = _stage_file(repo_copy)
    file.write_text(file.read_text() + "jupyterhub:\n\tcull:\n\t\ttimeout: 60\n")
    code, errors = _validate(repo_copy, capsys, "gcp-us-central1-b/prod")
    assert code == 1
    assert any(e.startswith(f"{file}:") and "indent with spaces, not tabs" in e for e in errors), (
        errors
    )


def test_duplicate_key_is_one_line_with_key_path_and_first_line(repo_copy, capsys):
    file = _stage_file(repo_copy)
    text = file.read_text()
    first = text.splitlines().index("jupyterhub:") + 1
    file.write_text(text + "jupyterhub:\n  cull:\n    timeout: 60\n")
    _, errors = _validate(repo_copy, capsys, "gcp-us-central1-b/prod")
    (error,) = [e for e in errors if "duplicate key" in e]
    line = len(text.splitlines()) + 1
    assert error == f"{file}:{line}: jupyterhub: duplicate key, first defined at line {first}"
    with pytest.raises(ConfigError) as info:
        load_yaml("x.yaml", text="a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert str(info.value) == "x.yaml:4: a.b: duplicate key, first defined at line 2"


def test_duplicate_key_message_never_quotes_values():
    with pytest.raises(ConfigError) as info:
        load_yaml("s.yaml", text="client_secret: hunter2\nclient_secret: hunter3\n")
    assert "hunter" not in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n"])
def test_empty_values_file_says_what_it_should_contain(repo_copy, capsys, text):
    file = _stage_file(repo_copy)
    file.write_text(text)
    code, errors = _validate(repo_copy, capsys, "gcp-us-central1-b/prod")
    assert code == 1
    (error,) = [e for e in errors if "empty values file" in e]
    assert error.startswith(f"{file}:") and "mapping of chart values" in error and "{}" in error


def test_empty_deployment_yaml_says_what_it_should_contain(repo_copy):
    (repo_copy.deployments / "local" / "deployment.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty deployment.yaml: it should name the deployment"):
        load_deployment("local", repo_copy)


def test_non_utf8_file_is_located_and_other_stages_still_run(repo_copy, capsys):
    file = _stage_file(repo_copy)
    file.write_bytes(file.read_bytes() + b"jupyterhub:\n  cull:\n    timeout: \xff\xfe\n")
    code, errors = _validate(repo_copy, capsys, "gcp-us-central1-b")
    assert code == 1
    lines = len(file.read_bytes().splitlines())
    assert f"{file}:{lines}: not UTF-8 text (byte 0xff" in errors[0], errors
    # the other stage of the run does not read prod.yaml: all its checks ran
    code, _ = _validate(repo_copy, capsys, "gcp-us-central1-b/staging")
    assert code == 0


def test_very_large_file_is_refused_without_parsing(repo_copy, capsys):
    file = _stage_file(repo_copy)
    with file.open("a") as out:
        out.write("# padding\n" * (50 * 2**20 // 10))  # 50 MB of comments
    assert file.stat().st_size > MAX_FILE_BYTES
    code, errors = _validate(repo_copy, capsys, "gcp-us-central1-b/prod")
    assert code == 1
    assert any(e.startswith(f"{file}: file is 50.0 MiB") and "1 MiB" in e for e in errors), errors


def test_alias_bomb_is_refused(tmp_path):
    rows = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    file = tmp_path / "bomb.yaml"
    file.write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match="aliases expanding"):
        load_yaml(file)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("a: 1\n b: 2\n", "check this line's indentation"),
        ("a: x\n---\nb: y\n", "one YAML document"),
        ("a: !secret x\n", "unsupported YAML tag '!secret'"),
        ("a: 2026-01-01\n", "quote it to pass a string"),
        ("a: 1\nb: \x00\n", "v.yaml:2: invalid YAML: control character #x0000"),
    ],
)
def test_other_yaml_mistakes_say_what_to_do(text, needle):
    with pytest.raises(ConfigError) as info:
        load_yaml("v.yaml", text=text)
    assert needle in str(info.value) and str(info.value).startswith("v.yaml:")
