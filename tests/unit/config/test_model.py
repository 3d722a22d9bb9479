"""deployment.yaml: the strict model, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pangeo_cloud.config import ConfigError, list_deployments, load_deployment
from pangeo_cloud.config.model import parse_quantity


def test_repository_deployments_load(repo_paths):
    names = list_deployments(repo_paths)
    assert {"gcp-us-central1-b", "aws-us-west-2", "local"} <= set(names)
    gcp = load_deployment("gcp-us-central1-b", repo_paths)
    assert gcp.cloud == "gcp"
    assert set(gcp.stages) == {"staging", "prod"}
    assert gcp.stages["prod"].requires == "staging"
    assert [f.name for f in gcp.stages["staging"].values_files] == ["common.yaml", "staging.yaml"]
    aws = load_deployment("aws-us-west-2", repo_paths)
    assert aws.cloud == "aws" and aws.stages["staging"].namespace == "staging"


def _error(repo_copy, edit_yaml, old: str, new: str, name="gcp-us-central1-b") -> ConfigError:
    file = repo_copy.deployments / name / "deployment.yaml"
    edit_yaml(file, old, new)
    with pytest.raises(ConfigError) as info:
        load_deployment(name, repo_copy)
    return info.value


def test_unknown_key_names_file_line_and_allowed_keys(repo_copy, edit_yaml):
    err = _error(
        repo_copy,
        edit_yaml,
        "    namespace: staging\n",
        "    namespace: staging\n    namepsace: oops\n",
    )
    text = str(err)
    assert "deployment.yaml:" in text
    assert err.key_path == "stages.staging.namepsace"
    assert "unknown key 'namepsace'" in text and "allowed:" in text and "namespace" in text
    lines = (repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml").read_text()
    assert lines.splitlines()[err.line - 1].strip() == "namepsace: oops"


def test_bad_release_name_is_refused(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "release: prod", "release: Prod_1")
    assert err.key_path == "stages.prod.release"
    assert "DNS label" in str(err)


def test_missing_values_file_is_named(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "values/prod.yaml]", "values/prd.yaml]")
    assert "file not found" in str(err) and "prd.yaml" in str(err)
    assert err.key_path == "stages.prod.valuesFiles[1]"


def test_requires_must_name_a_stage(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "requires: staging", "requires: stagign")
    assert "names no stage" in str(err)


def test_cloud_must_be_known(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "cloud: gcp", "cloud: azure")
    assert "must be one of gcp, aws, local" in str(err)


def test_invalid_yaml_reports_line(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "cloud: gcp", "cloud: [gcp")
    assert "invalid YAML" in str(err) and err.line is not None


def test_unknown_deployment_lists_known(repo_paths):
    with pytest.raises(ConfigError, match="unknown deployment 'nope'.*gcp-us-central1-b"):
        load_deployment("nope", repo_paths)


def test_unknown_stage_lists_stages(repo_paths):
    deployment = load_deployment("aws-us-west-2", repo_paths)
    with pytest.raises(ConfigError, match="unknown stage 'qa'.*staging, prod"):
        deployment.stage("qa")


def test_name_must_match_directory(repo_copy, edit_yaml):
    err = _error(
        repo_copy, edit_yaml, "name: aws-us-west-2", "name: aws-west", name="aws-us-west-2"
    )
    assert "must match its directory name" in str(err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8G", 8e9),
        ("7.5Gi", 7.5 * 2**30),
        (1024, 1024.0),
        ("512Mi", 512 * 2**20),
    ],
)
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == pytest.approx(expected)


def test_parse_quantity_rejects_garbage():
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity("eight gigs")


def test_no_stage_file_path_escapes(repo_paths):
    # Every values file a stage lists lives inside its deployment directory.
    for name in list_deployments(repo_paths):
        deployment = load_deployment(name, repo_paths)
        for stage in deployment.stages.values():
            for file in (*stage.values_files, *stage.secrets_files):
                assert Path(file).resolve().is_relative_to(deployment.directory.resolve())


# --- deployment.yaml rules an operator can get wrong --------------------------------


def test_unquoted_kubernetes_version_says_to_quote_it(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, 'kubernetesVersion: "1.33"', "kubernetesVersion: 1.30")
    assert err.key_path == "cluster.kubernetesVersion"
    assert "is the number 1.3" in str(err) and "quote the version" in str(err)


def test_unsupported_kubernetes_version_names_the_supported_range(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, 'kubernetesVersion: "1.33"', 'kubernetesVersion: "1.12"')
    assert "Kubernetes 1.12 is not supported" in str(err) and " to 1.3" in str(err)


@pytest.mark.parametrize(
    "bad", ["../../local/values/common.yaml", "/etc/passwd", "values/../../x.yaml"]
)
def test_values_files_stay_inside_the_deployment(repo_copy, edit_yaml, bad):
    err = _error(repo_copy, edit_yaml, "values/prod.yaml]", f"{bad}]")
    assert err.key_path == "stages.prod.valuesFiles[1]"
    assert "must be a path inside the deployment directory gcp-us-central1-b/" in str(err)


def test_a_symlink_out_of_the_deployment_is_refused(repo_copy, edit_yaml):
    values = repo_copy.deployments / "gcp-us-central1-b" / "values"
    (values / "shared.yaml").symlink_to(repo_copy.deployments / "local" / "values" / "common.yaml")
    err = _error(repo_copy, edit_yaml, "values/prod.yaml]", "values/shared.yaml]")
    assert "leads outside gcp-us-central1-b/" in str(err)


def test_secrets_files_stay_inside_the_deployment(repo_copy, edit_yaml):
    err = _error(
        repo_copy,
        edit_yaml,
        "secretsFiles: [secrets/prod.enc.yaml,",
        "secretsFiles: [../aws-us-west-2/secrets/prod.enc.yaml,",
    )
    assert err.key_path == "stages.prod.secretsFiles[0]" and "without '..'" in str(err)


def test_stage_names_are_dns_labels(repo_copy, edit_yaml):
    err = _error(
        repo_copy, edit_yaml, "  prod:\n    release: prod", "  ../prod:\n    release: prod"
    )
    assert err.key_path == "stages.../prod" and "DNS label" in str(err)


def test_requires_cycle_is_refused(repo_copy, edit_yaml):
    file = repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml"
    edit_yaml(file, "    namespace: staging\n", "    namespace: staging\n    requires: prod\n")
    with pytest.raises(ConfigError) as info:
        load_deployment("gcp-us-central1-b", repo_copy)
    assert "`requires` forms a cycle: staging -> prod -> staging" in str(info.value)


def test_requires_itself_is_a_cycle(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "requires: staging", "requires: prod")
    assert "cycle: prod -> prod" in str(err)


def test_requires_must_be_a_stage_name_string(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "requires: staging", "requires: [staging]")
    assert err.key_path == "stages.prod.requires" and "non-empty string" in str(err)


def test_two_stages_may_not_share_release_and_namespace(repo_copy, edit_yaml):
    file = repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml"
    edit_yaml(file, "release: prod", "release: staging")
    edit_yaml(file, "namespace: prod", "namespace: staging")
    with pytest.raises(ConfigError, match="stages 'staging' and 'prod' are the same Helm release"):
        load_deployment("gcp-us-central1-b", repo_copy)


def test_deployments_on_one_cluster_may_not_share_a_release(repo_copy):
    import shutil

    from pangeo_cloud.deploy.validate import validate_all

    src = repo_copy.deployments / "gcp-us-central1-b"
    dst = repo_copy.deployments / "gcp-us-central1-b-copy"
    shutil.copytree(src, dst)
    file = dst / "deployment.yaml"
    file.write_text(
        file.read_text().replace("name: gcp-us-central1-b\n", "name: gcp-us-central1-b-copy\n")
    )
    results = validate_all(["gcp-us-central1-b-copy/prod"], repo_copy, only=set())
    (result,) = [r for r in results if r.check == "deployment"]
    assert not result.ok
    assert "already stage gcp-us-central1-b/prod" in result.errors[0]
    assert result.errors[0].startswith(f"{file}:")
    # Other clusters (aws) use the same release names: no conflict there.
    assert all(r.ok for r in validate_all(["aws-us-west-2"], repo_copy, only=set()))


@pytest.mark.parametrize(
    "domain", ["https://hub.pangeo.io", "Hub.Pangeo.io", "hub", "hub.pangeo.io/path", "a..b"]
)
def test_domains_are_dns_names(repo_copy, edit_yaml, domain):
    err = _error(repo_copy, edit_yaml, "domain: us-central1-b.gcp.pangeo.io", f"domain: '{domain}'")
    assert err.key_path == "stages.prod.domain" and "is not a DNS name" in str(err)


def test_name_length_rules_are_stated(repo_copy, edit_yaml):
    err = _error(repo_copy, edit_yaml, "release: prod", f"release: {'p' * 54}")
    assert "Helm release names are at most 53" in str(err)
    repo_copy_file = repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml"
    repo_copy_file.write_text(repo_copy_file.read_text().replace("p" * 54, "p" * 45))
    with pytest.raises(ConfigError, match="dask-gateway Service .* Kubernetes allows 63"):
        load_deployment("gcp-us-central1-b", repo_copy)
    err = _error(repo_copy, edit_yaml, "namespace: staging", f"namespace: {'n' * 64}")
    assert "at most 63 characters" in str(err)


def test_node_pool_cpu_is_a_kubernetes_quantity(repo_copy, edit_yaml):
    file = repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml"
    edit_yaml(file, "cpu: 15.8", 'cpu: "15800m"')
    assert load_deployment("gcp-us-central1-b", repo_copy).node_pools[0].cpu == pytest.approx(15.8)
    err = _error(repo_copy, edit_yaml, 'cpu: "15800m"', "cpu: lots")
    assert err.key_path == "nodePools[0].cpu" and "not a quantity" in str(err)
