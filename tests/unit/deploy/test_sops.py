"""sops decryption with the real sops and the test age keys; plaintext cleanup."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from deploy_support import TEST_KEY, WRONG_KEY, age_recipient
from repo_support import REPO_ROOT

from pangeo_cloud.config import ConfigError, Paths, load_deployment
from pangeo_cloud.config.layering import SOPS_MASK, merge_all, values_layers
from pangeo_cloud.deploy.sops import (
    SopsDecryptor,
    SopsError,
    decrypted_files,
    recipients,
)
from pangeo_cloud.deploy.tools import ToolError

SECRETS = textwrap.dedent(
    """\
    jupyterhub:
      hub:
        config:
          GitHubOAuthenticator:
            client_id: REPLACE-ME-client-id
            client_secret: REPLACE-ME-client-secret
    """
)


@pytest.fixture
def secret_file(tmp_path: Path, encrypt, sops_env) -> Path:
    return encrypt(SECRETS, tmp_path / "gcp" / "secrets" / "staging.enc.yaml")


def test_encrypted_file_holds_no_plaintext(secret_file: Path) -> None:
    text = secret_file.read_text()
    assert "REPLACE-ME" not in text
    assert "sops:" in text
    assert recipients(secret_file) == [f"age:{age_recipient(TEST_KEY)}"]


def test_decrypts_in_memory_with_the_test_key(secret_file: Path) -> None:
    decrypt = SopsDecryptor()
    data = yaml.safe_load(decrypt(secret_file))
    oauth = data["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert oauth == {
        "client_id": "REPLACE-ME-client-id",
        "client_secret": "REPLACE-ME-client-secret",
    }
    decrypt.clear()


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message, message
    return message


def test_missing_key_is_one_clear_line(secret_file: Path, monkeypatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    with pytest.raises(SopsError) as info:
        SopsDecryptor()(secret_file)
    message = _one_line(info.value)
    assert "no decryption key found" in message and "SOPS_AGE_KEY_FILE" in message


def test_wrong_key_is_one_clear_line(secret_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(WRONG_KEY))
    with pytest.raises(SopsError) as info:
        SopsDecryptor()(secret_file)
    message = _one_line(info.value)
    assert "is not one of its recipients" in message
    assert age_recipient(TEST_KEY) in message


def test_key_file_that_does_not_exist(secret_file: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(tmp_path / "nope.txt"))
    with pytest.raises(SopsError, match="does not exist"):
        SopsDecryptor()(secret_file)


def test_missing_sops_is_one_clear_line(secret_file: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PANGEO_TOOLS_DIR", str(tmp_path / "empty-tools"))
    with pytest.raises(ToolError) as info:
        SopsDecryptor()(secret_file)
    assert "`sops` not found" in _one_line(info.value)


def test_unencrypted_file_is_refused_by_the_decryptor(tmp_path: Path, sops_env) -> None:
    plain = tmp_path / "plain.enc.yaml"
    plain.write_text(SECRETS)
    with pytest.raises(SopsError, match="not sops-encrypted"):
        SopsDecryptor()(plain)


# --- plaintext on disk: 0600, removed on every exit path ------------------------


def test_decrypted_files_are_private_and_removed_on_success(secret_file: Path) -> None:
    with decrypted_files([secret_file]) as files:
        (file,) = files
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert stat.S_IMODE(file.parent.stat().st_mode) == 0o700
        assert "REPLACE-ME-client-secret" in file.read_text()
        directory = file.parent
    assert not directory.exists()


def test_decrypted_files_are_removed_on_exception(secret_file: Path) -> None:
    seen: list[Path] = []
    with pytest.raises(RuntimeError, match="boom"), decrypted_files([secret_file]) as files:
        seen.extend(files)
        raise RuntimeError("boom")
    assert seen and not seen[0].exists() and not seen[0].parent.exists()


def test_failed_decryption_leaves_nothing(secret_file: Path, monkeypatch, tmp_path) -> None:
    other = tmp_path / "other.enc.yaml"
    other.write_text(SECRETS)  # not encrypted: fails after the first file was written
    before = set(Path("/dev/shm").glob("pangeo-secrets-*")) | set(
        Path(os.environ.get("TMPDIR", "/tmp")).glob("pangeo-secrets-*")
    )
    with pytest.raises(SopsError), decrypted_files([secret_file, other]):
        pass
    after = set(Path("/dev/shm").glob("pangeo-secrets-*")) | set(
        Path(os.environ.get("TMPDIR", "/tmp")).glob("pangeo-secrets-*")
    )
    assert after <= before


_CHILD = textwrap.dedent(
    """\
    import sys, time
    from pathlib import Path
    from pangeo_cloud.deploy.sops import decrypted_files
    with decrypted_files([Path(sys.argv[1])]) as files:
        print(files[0], flush=True)
        time.sleep(120)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_decrypted_files_are_removed_on_signal(secret_file: Path, signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(secret_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background jobs start with SIGINT ignored, and Python then
        # installs no KeyboardInterrupt handler: give the child the default.
        preexec_fn=_default_sigint,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line, proc.stderr.read()
        file = Path(line)
        assert file.is_file() and "REPLACE-ME-client-secret" in file.read_text()
        proc.send_signal(signum)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert not file.exists() and not file.parent.exists()


# --- the repository's secrets and `validate` -------------------------------------


def test_repository_secrets_are_encrypted_and_not_for_test_keys() -> None:
    files = sorted((REPO_ROOT / "deployments").glob("*/secrets/*"))
    assert files, "no secrets files in deployments/*/secrets/"
    test_recipients = {f"age:{age_recipient(TEST_KEY)}", f"age:{age_recipient(WRONG_KEY)}"}
    for file in files:
        assert file.name.endswith(".enc.yaml"), file
        text = file.read_text()
        assert "sops:" in text and "REPLACE-ME" not in text, file
        assert recipients(file), file
        assert not test_recipients & set(recipients(file)), f"{file} is encrypted to a test key"
    sops_config = (REPO_ROOT / ".sops.yaml").read_text()
    assert not any(r.split(":", 1)[1] in sops_config for r in test_recipients)


def test_every_cloud_stage_has_encrypted_secrets(repo_paths: Paths) -> None:
    for name in ("gcp-us-central1-b", "aws-us-west-2"):
        deployment = load_deployment(name, repo_paths)
        for stage in deployment.stages.values():
            assert stage.secrets_files, f"{name}/{stage.name} has no secretsFiles"


def test_without_keys_sops_values_are_masked(repo_paths: Paths) -> None:
    deployment = load_deployment("gcp-us-central1-b", repo_paths)
    values = merge_all(values_layers(deployment, "staging", paths=repo_paths))
    oauth = values["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert oauth["client_secret"] == SOPS_MASK
    assert "sops" not in values


def test_unencrypted_secrets_file_is_refused_by_validate(repo_copy: Paths) -> None:
    secrets = repo_copy.deployments / "gcp-us-central1-b" / "secrets" / "staging.enc.yaml"
    secrets.write_text(SECRETS)
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    with pytest.raises(ConfigError, match="not sops-encrypted") as info:
        values_layers(deployment, "staging", paths=repo_copy)
    assert str(secrets) in str(info.value)
    from pangeo_cloud.cli import main

    assert main(["--root", str(repo_copy.root), "validate", "gcp-us-central1-b/staging"]) == 1


def test_decrypted_layer_replaces_the_mask(repo_copy: Paths, encrypt, sops_env) -> None:
    secrets = repo_copy.deployments / "gcp-us-central1-b" / "secrets" / "staging.enc.yaml"
    encrypt(SECRETS, secrets)
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    values = merge_all(
        values_layers(deployment, "staging", paths=repo_copy, decrypt=SopsDecryptor())
    )
    oauth = values["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert oauth["client_secret"] == "REPLACE-ME-client-secret"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --- `validate` with a key: real sops decrypts and verifies the MAC ----------------

SECRETS_WITH_PLAIN = SECRETS + "        scope: [read:org]\n"


def _validate_output(paths: Paths, capsys, *extra: str) -> tuple[int, str]:
    from pangeo_cloud.cli import main

    code = main(["--root", str(paths.root), "validate", *extra, "gcp-us-central1-b/staging"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_validate_decrypts_with_the_key_in_the_environment(repo_copy, encrypt, sops_env, capsys):
    secrets = repo_copy.deployments / "gcp-us-central1-b" / "secrets" / "staging.enc.yaml"
    encrypt(SECRETS_WITH_PLAIN, secrets)
    code, out = _validate_output(repo_copy, capsys)
    assert "secrets: staging.enc.yaml (decrypted)" in out, out
    assert "REPLACE-ME" not in out
    assert code == 0, out


def test_tampered_file_is_a_clear_mac_error_not_a_traceback(repo_copy, encrypt, sops_env, capsys):
    secrets = repo_copy.deployments / "gcp-us-central1-b" / "secrets" / "staging.enc.yaml"
    encrypt(SECRETS_WITH_PLAIN, secrets)
    # A reviewer-visible value changed by hand: only the MAC can tell.
    secrets.write_text(secrets.read_text().replace("- read:org", "- user"))
    offline, out = _validate_output(repo_copy, capsys, "--decrypt", "never")
    assert offline == 0, out
    code, out = _validate_output(repo_copy, capsys)
    assert code == 1
    assert f"{secrets}: sops MAC mismatch: the file was changed without sops" in out, out
    assert "Traceback" not in out and "internal error" not in out


def test_swapped_ciphertexts_are_refused_in_one_line(repo_copy, encrypt, sops_env, capsys):
    secrets = repo_copy.deployments / "gcp-us-central1-b" / "secrets" / "staging.enc.yaml"
    encrypt(SECRETS, secrets)
    lines = secrets.read_text().splitlines(keepends=True)
    ids = [i for i, line in enumerate(lines) if "client_id:" in line or "client_secret:" in line]
    first, second = (lines[i].split(": ", 1) for i in ids)
    lines[ids[0]], lines[ids[1]] = f"{first[0]}: {second[1]}", f"{second[0]}: {first[1]}"
    secrets.write_text("".join(lines))
    code, out = _validate_output(repo_copy, capsys)
    assert code == 1
    failures = [line for line in out.splitlines() if str(secrets) in line]
    assert len(failures) == 1 and "cannot decrypt" in failures[0], out
    assert "Traceback" not in out and "REPLACE-ME" not in out


def test_decrypted_values_never_appear_in_messages(repo_copy, encrypt, sops_env, capsys):
    secrets = repo_copy.deployments / "gcp-us-central1-b" / "secrets" / "staging.enc.yaml"
    # An int where the hub wants a string: the trait's message would quote it.
    encrypt(SECRETS.replace("REPLACE-ME-client-id", "9876543210"), secrets)
    code, out = _validate_output(repo_copy, capsys)
    assert code == 1
    assert "GitHubOAuthenticator.client_id: The 'client_id' trait expected a unicode string" in out
    assert "9876543210" not in out and "<secret>" in out


def test_render_never_prints_decryptable_secrets(repo_copy, encrypt, sops_env, capsys):
    from pangeo_cloud.cli import main

    secrets = repo_copy.deployments / "gcp-us-central1-b" / "secrets" / "staging.enc.yaml"
    encrypt(SECRETS, secrets)
    root = ["--root", str(repo_copy.root), "render", "gcp-us-central1-b", "staging"]
    for extra in (["--values"], ["--layers"], []):
        assert main([*root, *extra]) == 0
        out = capsys.readouterr()
        assert "REPLACE-ME" not in out.out + out.err, extra
