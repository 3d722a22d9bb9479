"""`deployIdentity`: one cloud identity per GitHub environment (deployment model, validate)."""

from __future__ import annotations

import shutil

import pytest

from pangeo_cloud.config import ConfigError, load_deployment

GCP = "gcp-us-central1-b"
GCP_STAGING_SA = "pangeo-deploy-staging@pangeo-181919.iam.gserviceaccount.com"
GCP_PROD_SA = "pangeo-deploy-prod@pangeo-181919.iam.gserviceaccount.com"
AWS_PROD_ROLE = "arn:aws:iam::783380859522:role/pangeo-cloud-deploy-prod"


def _error(repo_copy, edit_yaml, old: str, new: str, name: str = GCP) -> ConfigError:
    edit_yaml(repo_copy.deployments / name / "deployment.yaml", old, new)
    with pytest.raises(ConfigError) as info:
        load_deployment(name, repo_copy)
    assert "\n" not in str(info.value)
    return info.value


def test_every_cloud_stage_has_its_own_identity_and_environment(repo_paths) -> None:
    for name in (GCP, "aws-us-west-2"):
        stages = load_deployment(name, repo_paths).stages
        identities = {s: st.deploy_identity for s, st in stages.items()}
        assert all(i is not None and i.principal for i in identities.values()), identities
        assert {s: i.environment for s, i in identities.items()} == {
            "staging": "staging",
            "prod": "prod",
        }
        assert identities["staging"].principal != identities["prod"].principal
    assert load_deployment("local", repo_paths).stages["dev"].deploy_identity is None


def test_stages_may_not_share_an_identity(repo_copy, edit_yaml) -> None:
    err = _error(repo_copy, edit_yaml, GCP_PROD_SA, GCP_STAGING_SA)
    assert err.key_path == "stages.prod.deployIdentity.serviceAccount"
    assert "stages 'staging' and 'prod' share the cloud identity" in str(err)


def test_stages_may_not_share_an_environment(repo_copy, edit_yaml) -> None:
    err = _error(repo_copy, edit_yaml, "environment: prod", "environment: staging")
    assert err.key_path == "stages.prod.deployIdentity.environment"
    assert "share the GitHub environment 'staging'" in str(err)


def test_a_cloud_stage_must_name_its_identity(repo_copy, edit_yaml) -> None:
    err = _error(
        repo_copy, edit_yaml, f"      environment: prod\n      serviceAccount: {GCP_PROD_SA}\n", ""
    )
    # The comment lines above stay; only the key's content is gone: `deployIdentity:` is null.
    assert err.key_path == "stages.prod"
    assert "missing required key 'deployIdentity'" in str(err)


def test_a_stage_must_name_its_environment(repo_copy, edit_yaml) -> None:
    err = _error(repo_copy, edit_yaml, "      environment: prod\n", "")
    assert err.key_path == "stages.prod.deployIdentity.environment"
    assert "must name the GitHub environment" in str(err)


@pytest.mark.parametrize(
    ("name", "old", "new", "needle"),
    [
        (GCP, GCP_PROD_SA, "pangeo-deploy-prod", "must be a Google service account email"),
        (GCP, f"serviceAccount: {GCP_PROD_SA}", f"roleArn: {AWS_PROD_ROLE}", "unknown key"),
        (
            "aws-us-west-2",
            AWS_PROD_ROLE,
            "arn:aws:iam::111122223333:role/pangeo-cloud-deploy-prod",
            "role of account 111122223333, but the cluster is in account 783380859522",
        ),
        ("aws-us-west-2", AWS_PROD_ROLE, "pangeo-cloud-deploy-prod", "must be an IAM role ARN"),
    ],
)
def test_principal_shape(repo_copy, edit_yaml, name, old, new, needle) -> None:
    assert needle in str(_error(repo_copy, edit_yaml, old, new, name=name))


def test_identity_shared_across_deployments_fails_validate(repo_copy) -> None:
    from pangeo_cloud.deploy.validate import validate_all

    dst = repo_copy.deployments / "gcp-other"
    shutil.copytree(repo_copy.deployments / GCP, dst)
    file = dst / "deployment.yaml"
    text = file.read_text().replace(f"name: {GCP}\n", "name: gcp-other\n")
    # Another deployment's staging deployed by gcp-us-central1-b's prod identity.
    text = text.replace(GCP_PROD_SA, "pangeo-other-prod@pangeo-181919.iam.gserviceaccount.com")
    text = text.replace(GCP_STAGING_SA, GCP_PROD_SA).replace("release: staging", "release: s2")
    text = text.replace("release: prod", "release: p2")
    file.write_text(text)
    results = validate_all(["gcp-other/staging"], repo_copy, only=set())
    (result,) = [r for r in results if r.check == "deployment"]
    assert not result.ok
    assert f"is also the identity of {GCP}/prod (GitHub environment 'prod')" in result.errors[0]
    assert "stages.staging.deployIdentity.serviceAccount" in result.errors[0]
    # ... and the other side of the pair says so too.
    results = validate_all([f"{GCP}/prod"], repo_copy, only=set())
    (result,) = [r for r in results if r.check == "deployment"]
    assert not result.ok and "is also the identity of gcp-other/staging" in result.errors[0]
