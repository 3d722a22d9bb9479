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
