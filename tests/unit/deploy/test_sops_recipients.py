"""`validate` compares each secrets file's recipients with its `.sops.yaml` creation rule.

Files are encrypted with the real sops to the test age key; the rules then name
more, other or the same keys. Today's repository is the first case: every file
is encrypted for the operators' age key only, while the rules also name the
cloud KMS key CI's deploy identity decrypts with.
"""

from __future__ import annotations

import json

import pytest
from deploy_support import SECRET_REGEX, TEST_KEY, WRONG_KEY, age_recipient

from pangeo_cloud.config.recipients import recipient_problems, rule_recipients
from pangeo_cloud.deploy.validate import validate_all

DEP = "gcp-us-central1-b"
KMS = "projects/p/locations/global/keyRings/r/cryptoKeys/sops"
SECRETS = """jupyterhub:
  hub:
    services:
      health-check:
        apiToken: "0123456789abcdef"
"""


def _values_result(paths, target=f"{DEP}/staging"):
    results = validate_all([target], paths, only=set())
    return next(r for r in results if r.check == "values")


def test_the_repository_files_lack_the_ci_kms_key(repo_paths) -> None:
    result = _values_result(repo_paths)
    assert result.ok  # a warning: only an operator with the keys can fix it
    # Both of the stage's files (<stage>.enc.yaml and <stage>-monitoring.enc.yaml).
    assert len(result.warnings) == 2, result.warnings
    warning = result.warnings[0]
    assert warning.startswith(f"deployments/{DEP}/secrets/staging.enc.yaml: not encrypted for ")
    assert "gcp_kms projects/pangeo-181919/locations/us-central1/keyRings/pangeo-cloud" in warning
    assert ".sops.yaml creation_rules[0]" in warning and "sops updatekeys" in warning


@pytest.fixture
def encrypted(repo_copy, encrypt):
    """The staging secrets of DEP encrypted (really) for the test age key only."""
    file = repo_copy.deployments / DEP / "secrets" / "staging.enc.yaml"
    encrypt(SECRETS, file)
    return repo_copy, file


def _rule(paths, **keys: str) -> None:
    # The staging file's rule only (a rule for both stages would share the KMS key).
    lines = ["creation_rules:", f"  - path_regex: deployments/{DEP}/secrets/staging.enc.yaml"]
    lines += [f"    encrypted_regex: '{SECRET_REGEX}'"]
    lines += [f"    {kind}: {value}" for kind, value in keys.items()]
    (paths.root / ".sops.yaml").write_text("\n".join(lines) + "\n")


def test_missing_recipient_is_named(encrypted) -> None:
    paths, file = encrypted
    _rule(paths, age=age_recipient(TEST_KEY), gcp_kms=KMS)
    (problem,) = recipient_problems(file, "secrets/staging.enc.yaml")
    assert problem.startswith(f"secrets/staging.enc.yaml: not encrypted for gcp_kms {KMS},")
    assert age_recipient(TEST_KEY) not in problem


def test_other_recipient_is_missing_and_extra(encrypted) -> None:
    paths, file = encrypted
    _rule(paths, age=age_recipient(WRONG_KEY))
    missing, extra = recipient_problems(file)
    assert f"not encrypted for age {age_recipient(WRONG_KEY)}" in missing
    assert f"also encrypted for age {age_recipient(TEST_KEY)}, which" in extra
    assert "does not name" in extra


def test_matching_recipients_are_quiet(encrypted) -> None:
    paths, file = encrypted
    _rule(paths, age=age_recipient(TEST_KEY))
    assert recipient_problems(file) == []
    assert _values_result(paths).warnings == []


def test_cli_warns_and_strict_fails(encrypted, capsys) -> None:
    import pangeo_cloud.cli as cli

    paths, _ = encrypted
    _rule(paths, age=age_recipient(TEST_KEY), gcp_kms=KMS)
    target = f"{DEP}/staging"
    args = ["--root", str(paths.root), "validate", "--decrypt", "never", target]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"  warn deployments/{DEP}/secrets/staging.enc.yaml: not encrypted for gcp_kms" in out
    assert "0 failed; 1 warning(s)" in out
    assert cli.main([*args, "--strict"]) == 1
    assert f"1 failed: {target}; 1 warning(s) (--strict: they fail)" in capsys.readouterr().out
    assert cli.main([*args, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (values,) = [r for r in report["results"] if r["check"] == "values"]
    assert len(values["warnings"]) == 1


def test_rule_forms(tmp_path) -> None:
    """Comma-separated keys, `arn+role`, and key groups, as sops reads them."""
    (tmp_path / ".sops.yaml").write_text(
        "creation_rules:\n"
        "  - path_regex: one/.*\n"
        "    kms: 'arn:aws:kms:r:1:key/a+arn:aws:iam::1:role/r, arn:aws:kms:r:1:key/b'\n"
        "    age: age1x,age1y\n"
        "  - path_regex: two/.*\n"
        "    key_groups:\n"
        "      - age: [age1z]\n"
        "        gcp_kms: [{resource_id: projects/p/keys/k}]\n"
        "        kms: [{arn: 'arn:aws:kms:r:1:key/c'}]\n"
    )
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
    _, one = rule_recipients(tmp_path / "one" / "f.yaml")
    assert one == {
        ("kms", "arn:aws:kms:r:1:key/a"),
        ("kms", "arn:aws:kms:r:1:key/b"),
        ("age", "age1x"),
        ("age", "age1y"),
    }
    source, two = rule_recipients(tmp_path / "two" / "f.yaml")
    assert source == ".sops.yaml creation_rules[1]"
    assert two == {
        ("age", "age1z"),
        ("gcp_kms", "projects/p/keys/k"),
        ("kms", "arn:aws:kms:r:1:key/c"),
    }


def test_stages_may_not_share_a_cloud_key(repo_copy, repo_paths) -> None:
    """With one KMS key for both stages, staging's deploy identity could read prod's secrets."""
    text = (repo_paths.root / ".sops.yaml").read_text()
    assert "cryptoKeys/sops-staging" in text and "cryptoKeys/sops-prod" in text
    assert _values_result(repo_paths, f"{DEP}/prod").ok
    (repo_copy.root / ".sops.yaml").write_text(text.replace("sops-prod", "sops-staging"))
    result = _values_result(repo_copy, f"{DEP}/prod")
    assert not result.ok
    (error,) = result.errors
    assert error.startswith(f"deployments/{DEP}/secrets/prod.enc.yaml: its .sops.yaml rule names")
    assert "cryptoKeys/sops-staging, which also encrypts stage 'staging'" in error
    assert "give each stage its own key" in error
