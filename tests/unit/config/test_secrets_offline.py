"""sops files checked without any key, and secrets kept out of every printed path."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml
from config_support import enc

from pangeo_cloud.cli import main
from pangeo_cloud.config import ConfigError, load_deployment, values_layers
from pangeo_cloud.config.secrets import SOPS_MASK, SopsRule, enc_problem, mask_secrets

REPO_SOPS = "gcp-us-central1-b/secrets/staging.enc.yaml"


@pytest.fixture
def secrets_copy(repo_copy, repo_paths):
    """The repository copy with its .sops.yaml (the creation rules apply to it)."""
    shutil.copy(repo_paths.root / ".sops.yaml", repo_copy.root / ".sops.yaml")
    return repo_copy


def _validate(paths, capsys, target="gcp-us-central1-b/staging") -> tuple[int, str]:
    code = main(["--root", str(paths.root), "validate", "--decrypt", "never", target])
    return code, capsys.readouterr().out


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_plaintext_under_an_encrypted_key_is_refused_offline(secrets_copy, capsys):
    file = secrets_copy.deployments / REPO_SOPS
    text = re.sub(r"client_secret: ENC\[[^\]]*\]", "client_secret: hunter2-plain", file.read_text())
    file.write_text(text)
    code, out = _validate(secrets_copy, capsys)
    assert code == 1
    where = f"{file}:{_line_of(text, 'client_secret')}: "
    key = "jupyterhub.hub.config.GitHubOAuthenticator.client_secret"
    assert f"{where}{key}: plaintext value in a sops file" in out, out
    assert ".sops.yaml creation_rules[0]" in out
    assert "hunter2" not in out
    # the file's layer is masked and the other checks still ran
    ran = {line.split()[2] for line in out.splitlines() if line.startswith(("ok ", "FAIL "))}
    assert {"values", "schemas", "promises", "traits", "helm-lint", "manifests"} <= ran, out


def test_the_sops_yaml_rule_applies_even_if_the_file_metadata_is_narrower(secrets_copy, capsys):
    file = secrets_copy.deployments / REPO_SOPS
    text = file.read_text()
    # An operator encrypted with a rule covering only client_secret: the token stayed plain.
    text = re.sub(r"apiToken: ENC\[[^\]]*\]", "apiToken: tok-plain", text)
    text = re.sub(r"(\n    encrypted_regex: ).*", r"\1^(client_id|client_secret)$", text)
    file.write_text(text)
    code, out = _validate(secrets_copy, capsys)
    assert code == 1
    assert "hub.services.health-check.apiToken: plaintext value" in out
    assert "creation_rules[0]" in out and "tok-plain" not in out


def test_without_regex_every_value_outside_the_sops_block_is_encrypted(repo_copy, fake_sops):
    secrets = repo_copy.deployments / REPO_SOPS
    body = f"jupyterhub:\n  cull:\n    timeout: 60\n    every: {enc('e', kind='int')}\n"
    secrets.write_text(fake_sops(body, rule="  unencrypted_suffix: _unencrypted\n"))
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    with pytest.raises(ConfigError) as info:
        values_layers(deployment, "staging", paths=repo_copy)
    assert str(info.value).startswith(f"{secrets}:3: jupyterhub.cull.timeout: plaintext value")
    assert "every value is encrypted" in str(info.value)
    rule = SopsRule("test")
    assert rule.encrypts(["jupyterhub", "cull", "timeout"])
    assert not rule.encrypts(["jupyterhub", "note_unencrypted"])
    regex = SopsRule("test", encrypted_regex="^(client_secret)$")
    assert regex.encrypts(["hub", "client_secret"]) and not regex.encrypts(["hub", "scope"])
    # a whole subtree under a matching key is encrypted
    assert SopsRule("t", encrypted_regex="^secrets$").encrypts(["secrets", "a", "b"])
    assert not SopsRule("t", unencrypted_regex="^public$").encrypts(["public", "x"])


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (enc("x")[:40], "expected ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]"),
        (enc("x").replace(",iv:", ",iv:!!"), "iv is not base64"),
        (re.sub(r"iv:[^,]*", "iv:AAAA", enc("x")), "iv has 3 bytes, sops writes 32"),
        (enc("x", kind="blob"), "type must be one of"),
        ("ENC[AES256_GCM,data:abc]", "expected ENC[AES256_GCM"),
    ],
)
def test_malformed_sops_values_are_located(repo_copy, edit_yaml, fake_sops, value, needle):
    assert enc_problem(enc("x")) is None
    secrets = repo_copy.deployments / REPO_SOPS
    body = (
        "jupyterhub:\n  hub:\n    config:\n      GitHubOAuthenticator:\n"
        f"        client_secret: {value}\n"
    )
    secrets.write_text(fake_sops(body))
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    with pytest.raises(ConfigError) as info:
        values_layers(deployment, "staging", paths=repo_copy)
    assert str(info.value).startswith(
        f"{secrets}:5: jupyterhub.hub.config.GitHubOAuthenticator.client_secret: malformed sops"
    )
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("mac", "needle"),
    [
        ("", "sops.mac: missing sops MAC"),
        (enc("mac", 128)[:60], "sops.mac: malformed sops MAC"),
    ],
)
def test_missing_or_malformed_mac_is_refused(repo_copy, fake_sops, mac, needle):
    secrets = repo_copy.deployments / REPO_SOPS
    secrets.write_text(fake_sops(f"a_token: {enc('a')}\n", mac=mac))
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        values_layers(deployment, "staging", paths=repo_copy)


def test_sops_block_without_recipients_is_refused(repo_copy):
    secrets = repo_copy.deployments / REPO_SOPS
    secrets.write_text(f"a_token: {enc('a')}\nsops:\n  mac: {enc('m', 128)}\n  version: 3.13.3\n")
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    with pytest.raises(ConfigError, match="lists no recipient"):
        values_layers(deployment, "staging", paths=repo_copy)


def test_repository_secrets_pass_the_offline_checks(repo_paths):
    for name in ("gcp-us-central1-b", "aws-us-west-2"):
        deployment = load_deployment(name, repo_paths)
        for stage in deployment.stages:
            layers = values_layers(deployment, stage, paths=repo_paths)
            assert any(layer.secret_paths for layer in layers)


# --- nothing secret is printed ----------------------------------------------------


def test_render_values_masks_secrets_of_every_layer(repo_copy, capsys):
    # A secret pasted into a plain values file is masked too (and so are sops paths).
    common = repo_copy.deployments / "gcp-us-central1-b" / "values" / "common.yaml"
    common.write_text(
        common.read_text().replace(
            "      GitHubOAuthenticator:\n",
            "      GitHubOAuthenticator:\n        client_secret: hunter2-in-clear\n",
            1,
        )
    )
    assert (
        main(["--root", str(repo_copy.root), "render", "gcp-us-central1-b", "prod", "--values"])
        == 0
    )
    out = capsys.readouterr().out
    assert "hunter2" not in out and "ENC[" not in out
    github = yaml.safe_load(out)["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert github["client_secret"] == SOPS_MASK and github["client_id"] == SOPS_MASK
    assert (
        main(["--root", str(repo_copy.root), "render", "gcp-us-central1-b", "prod", "--layers"])
        == 0
    )
    assert "hunter2" not in capsys.readouterr().out


def test_mask_secrets_masks_ciphertext_paths_and_secret_keys():
    values = {"a": {"plain": "x", "db_password": "p", "n": [{"apiToken": "t"}]}, "b": "keep"}
    masked = mask_secrets(values, [("b",)])
    assert masked == {
        "a": {"plain": "x", "db_password": SOPS_MASK, "n": [{"apiToken": SOPS_MASK}]},
        "b": SOPS_MASK,
    }


def test_a_secret_in_a_plain_values_file_is_refused(repo_copy, capsys):
    common = repo_copy.deployments / "gcp-us-central1-b" / "values" / "common.yaml"
    text = common.read_text().replace(
        "      GitHubOAuthenticator:\n",
        "      GitHubOAuthenticator:\n        client_secret: hunter2-in-clear\n",
        1,
    )
    common.write_text(text)
    code, out = _validate(repo_copy, capsys, "gcp-us-central1-b/prod")
    assert code == 1
    line = text.splitlines().index("        client_secret: hunter2-in-clear") + 1
    assert (
        f"{common}:{line}: jupyterhub.hub.config.GitHubOAuthenticator.client_secret: "
        "looks like a secret in a plain values file"
    ) in out
    assert "hunter2" not in out


def test_a_sops_file_listed_as_values_is_refused(repo_copy, edit_yaml, capsys):
    edit_yaml(
        repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml",
        "valuesFiles: [values/common.yaml, values/prod.yaml]",
        "valuesFiles: [values/common.yaml, values/prod.yaml, secrets/prod.enc.yaml]",
    )
    code, out = _validate(repo_copy, capsys, "gcp-us-central1-b/prod")
    assert code == 1
    assert "prod.enc.yaml:" in out and "list it under the stage's secretsFiles" in out
