"""`validate` keeps scratch a boundary: the broker runs with its own cloud names, users have none.

Each case breaks one thing in a copy of the repository; `validate` must name
the file, line and key path to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pangeo_cloud.deploy.validate import validate_all


def promise_failures(paths, target: str) -> list[str]:
    results = validate_all([target], paths, only={"schemas", "promises"})
    return [e for r in results if not r.ok and r.check == "promises" for e in r.errors]


def common(paths, name: str) -> Path:
    return paths.deployments / name / "values" / "common.yaml"


def test_aws_broker_roles_must_be_set_and_distinct(repo_copy, edit_yaml):
    path = common(repo_copy, "aws-us-west-2")
    edit_yaml(
        path,
        "    identityRoleArn: arn:aws:iam::783380859522:role/pangeo-scratch-broker\n",
        "    identityRoleArn: arn:aws:iam::783380859522:role/pangeo-scratch\n",
    )
    errors = promise_failures(repo_copy, "aws-us-west-2/prod")
    assert any(
        "scratchBroker.aws.scratchRoleArn" in e and "other than identityRoleArn" in e
        for e in errors
    ), errors
    edit_yaml(
        path,
        "    scratchRoleArn: arn:aws:iam::783380859522:role/pangeo-scratch\n",
        '    scratchRoleArn: ""\n',
    )
    errors = promise_failures(repo_copy, "aws-us-west-2/prod")
    assert any(
        "scratchBroker.aws.scratchRoleArn" in e and "common.yaml:" in e and "cloud identity" in e
        for e in errors
    ), errors


def test_gcp_broker_service_account_must_be_set(repo_copy, edit_yaml):
    edit_yaml(
        common(repo_copy, "gcp-us-central1-b"),
        "    serviceAccount: pangeo-scratch-broker@pangeo-181919.iam.gserviceaccount.com\n",
        '    serviceAccount: ""\n',
    )
    errors = promise_failures(repo_copy, "gcp-us-central1-b/staging")
    assert any("scratchBroker.gcp.serviceAccount" in e for e in errors), errors


def test_user_service_account_must_not_carry_a_bucket_identity(repo_copy, edit_yaml):
    edit_yaml(
        common(repo_copy, "gcp-us-central1-b"),
        "  name: pangeo\n",
        "  name: pangeo\n  annotations:\n"
        "    iam.gke.io/gcp-service-account: pangeo@pangeo-181919.iam.gserviceaccount.com\n",
    )
    errors = promise_failures(repo_copy, "gcp-us-central1-b/prod")
    assert any(
        "userServiceAccount.annotations.iam.gke.io/gcp-service-account" in e
        and "no bucket access" in e
        for e in errors
    ), errors


@pytest.mark.parametrize(
    ("after", "insert", "needle"),
    [
        ("", "scratchBroker:\n  enabled: false\n", "scratchBroker.enabled"),
        (
            "    config:\n",
            "      Spawner:\n        server_token_scopes: [access:servers!server]\n",
            "access:services!service=scratch-credentials",
        ),
        (
            "jupyterhub:\n",
            "  singleuser:\n    networkPolicy:\n      egress: []\n",
            "egress rule to the scratch-credentials broker",
        ),
        (
            "jupyterhub:\n",
            '  custom:\n    pangeo:\n      scratch:\n        broker:\n          url: ""\n',
            "scratch.broker.url",
        ),
    ],
)
def test_broker_must_run_and_be_reachable(repo_copy, after, insert, needle):
    prod = repo_copy.deployments / "aws-us-west-2" / "values" / "prod.yaml"
    text = prod.read_text()
    at = text.index(after) + len(after) if after else len(text)
    prod.write_text(text[:at] + insert + text[at:])
    errors = promise_failures(repo_copy, "aws-us-west-2/prod")
    assert any(needle in e and "prod.yaml:" in e for e in errors), errors


def test_gcp_broker_needs_the_google_credentials_file(repo_copy, edit_yaml):
    edit_yaml(
        common(repo_copy, "gcp-us-central1-b"),
        "        project: pangeo-181919\n",
        '        project: pangeo-181919\n        broker:\n          gcsCredentialsFile: ""\n',
    )
    errors = promise_failures(repo_copy, "gcp-us-central1-b/prod")
    assert any(
        "scratch.broker.gcsCredentialsFile" in e and "Google credentials file" in e for e in errors
    ), errors
