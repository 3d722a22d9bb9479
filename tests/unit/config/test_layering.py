"""Values layering: Helm's merge rules, the fixed order, sops masking."""

from __future__ import annotations

import pytest
from config_support import enc

from pangeo_cloud.config import ConfigError, load_deployment, merged_values, values_layers
from pangeo_cloud.config.layering import SOPS_MASK, Layer, merge, origin


def test_maps_merge_lists_replace_null_deletes():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1, "c": {"keep": True}}
    over = {"a": {"y": [3], "z": 2}, "b": None, "c": {}}
    assert merge(base, over) == {"a": {"x": 1, "y": [3], "z": 2}, "c": {"keep": True}}
    assert base["a"]["y"] == [1, 2], "inputs must not be modified"


def test_scalar_replaces_map_and_back():
    assert merge({"a": {"b": 1}}, {"a": "s"}) == {"a": "s"}
    assert merge({"a": "s"}, {"a": {"b": 1}}) == {"a": {"b": 1}}


def test_layer_order_is_chart_wiring_common_stage_generated(repo_paths):
    deployment = load_deployment("gcp-us-central1-b", repo_paths)
    names = [layer.name for layer in values_layers(deployment, "staging", paths=repo_paths)]
    assert names[0] == "chart defaults"
    assert names[1].startswith("generated: stage wiring")
    assert names[2:4] == ["values: common.yaml", "values: staging.yaml"]
    assert names[-2].startswith("generated: gateway hooks")
    assert names[-1].startswith("generated: price table")


def test_each_layer_says_what_kind_it_is(repo_paths):
    deployment = load_deployment("gcp-us-central1-b", repo_paths)
    layers = values_layers(deployment, "staging", paths=repo_paths)
    kinds = [layer.kind for layer in layers]
    assert kinds == [
        "chart",
        "generated",  # stage wiring
        "values",
        "values",
        "secrets",
        "secrets",
        "generated",  # protections
        "generated",  # gateway hooks
        "generated",  # price table and usage labels
    ]
    assert [layer.short for layer in layers if layer.kind == "generated"] == [
        "stage-wiring",
        "protections",
        "gateway-hooks",
        "price-table",
    ]
    with pytest.raises(ValueError, match="layer kind must be one of"):
        Layer("x", {}, kind="plain")


def test_stage_overrides_common_and_lists_replace(repo_paths):
    staging = merged_values("gcp-us-central1-b", "staging", paths=repo_paths)
    prod = merged_values("gcp-us-central1-b", "prod", paths=repo_paths)
    gh = ("jupyterhub", "hub", "config", "GitHubOAuthenticator")
    teams_staging = staging[gh[0]][gh[1]][gh[2]][gh[3]]["allowed_organizations"]
    teams_prod = prod[gh[0]][gh[1]][gh[2]][gh[3]]["allowed_organizations"]
    # staging.yaml replaces the whole list from common.yaml
    assert teams_staging == ["pangeo-data:operators", "pangeo-data:staging-testers"]
    assert "pangeo-data:us-central1-b-gcp" in teams_prod
    # chart defaults survive where nobody overrides them (maps merge)
    assert prod["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]["scope"] == ["read:org"]


def test_stage_wiring_derives_gateway_addresses(repo_paths):
    values = merged_values("aws-us-west-2", "prod", paths=repo_paths)
    env = values["jupyterhub"]["singleuser"]["extraEnv"]
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://traefik-prod-dask-gateway.prod:80"
    service = values["jupyterhub"]["hub"]["services"]["dask-gateway"]
    assert service["url"] == "http://traefik-prod-dask-gateway"


def test_gateway_hook_layer_embeds_the_gateway_sources(repo_paths):
    values = merged_values("local", "dev", paths=repo_paths)
    code = values["dask-gateway"]["gateway"]["extraConfig"]["50-pangeo-cloud"]
    assert "pangeo_cloud.gateway.config" in code and "pangeo_cloud.bundle" in code
    # deterministic: the same inputs give the same text
    assert (
        code
        == merged_values("local", "dev", paths=repo_paths)["dask-gateway"]["gateway"][
            "extraConfig"
        ]["50-pangeo-cloud"]
    )


def test_origin_points_at_the_overriding_file(repo_paths):
    deployment = load_deployment("gcp-us-central1-b", repo_paths)
    layers = values_layers(deployment, "staging", paths=repo_paths)
    file, line = origin(
        layers, ("jupyterhub", "hub", "config", "GitHubOAuthenticator", "allowed_organizations")
    )
    assert file.name == "staging.yaml"
    assert "allowed_organizations" in file.read_text().splitlines()[line - 1]


def _add_secrets(repo_copy, edit_yaml, text: str):
    deployment_file = repo_copy.deployments / "aws-us-west-2" / "deployment.yaml"
    secrets = repo_copy.deployments / "aws-us-west-2" / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "qa.enc.yaml").write_text(text)
    if "secrets/qa.enc.yaml" not in deployment_file.read_text():
        edit_yaml(
            deployment_file,
            "secretsFiles: [secrets/prod.enc.yaml, secrets/prod-monitoring.enc.yaml]",
            "secretsFiles: [secrets/qa.enc.yaml]",
        )
    return load_deployment("aws-us-west-2", repo_copy)


def test_plaintext_secrets_file_is_refused(repo_copy, edit_yaml):
    deployment = _add_secrets(
        repo_copy,
        edit_yaml,
        "jupyterhub:\n  hub:\n    config:\n      GitHubOAuthenticator:\n"
        "        client_secret: hunter2\n",
    )
    with pytest.raises(ConfigError, match="not sops-encrypted") as info:
        values_layers(deployment, "prod", paths=repo_copy)
    assert "qa.enc.yaml" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_encrypted_values_are_masked_without_a_key(repo_copy, edit_yaml, fake_sops):
    deployment = _add_secrets(
        repo_copy,
        edit_yaml,
        fake_sops(
            "jupyterhub:\n  hub:\n    config:\n      GitHubOAuthenticator:\n"
            f"        client_secret: {enc('s')}\n"
        ),
    )
    values = merged_values(deployment, "prod", paths=repo_copy)
    gh = values["jupyterhub"]["hub"]["config"]["GitHubOAuthenticator"]
    assert gh["client_secret"] == SOPS_MASK
    assert "sops" not in values


def test_decryptor_output_is_layered(repo_copy, edit_yaml, fake_sops):
    deployment = _add_secrets(repo_copy, edit_yaml, fake_sops(f"a_token: {enc('a')}\n"))
    seen = []

    def decrypt(path):
        seen.append(path.name)
        return "jupyterhub:\n  custom:\n    pangeo:\n      auth:\n        adminTeams: [o:t]\n"

    values = merged_values(deployment, "prod", paths=repo_copy, decrypt=decrypt)
    assert seen == ["qa.enc.yaml"]
    assert values["jupyterhub"]["custom"]["pangeo"]["auth"]["adminTeams"] == ["o:t"]


def test_gateway_address_follows_the_proxy_https_mode(repo_paths):
    """Autohttps (GCP) puts traefik behind proxy-public: address proxy-http instead."""
    address = "DASK_GATEWAY__ADDRESS"
    gcp = merged_values("gcp-us-central1-b", "prod", paths=repo_paths)
    aws = merged_values("aws-us-west-2", "prod", paths=repo_paths)
    assert gcp["jupyterhub"]["singleuser"]["extraEnv"][address] == (
        "http://proxy-http:8000/services/dask-gateway"
    )
    assert aws["jupyterhub"]["singleuser"]["extraEnv"][address] == (
        "http://proxy-public/services/dask-gateway"
    )


# --- blame the layer that set a value -------------------------------------------------


def _teams_errors(paths, text: str):
    from pangeo_cloud.deploy.validate import validate_all

    staging = paths.deployments / "gcp-us-central1-b" / "values" / "staging.yaml"
    old = "        allowed_organizations:\n          - pangeo-data:operators\n"
    old += "          - pangeo-data:staging-testers\n"
    content = staging.read_text()
    assert old in content
    staging.write_text(content.replace(old, text))
    results = validate_all(["gcp-us-central1-b/staging"], paths, only={"promises", "traits"})
    errors = [e for r in results for e in r.errors]
    return staging, [e for e in errors if "allowed_organizations" in e]


def test_a_string_replacing_a_list_is_blamed_once_on_the_later_file(repo_copy):
    staging, errors = _teams_errors(repo_copy, "        allowed_organizations: pangeo-data\n")
    line = staging.read_text().splitlines().index("        allowed_organizations: pangeo-data")
    # one error (not one per character), at the stage file, not common.yaml's list
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{staging}:{line + 1}: ")


def test_a_shorter_list_is_blamed_on_the_file_that_replaced_it(repo_copy):
    text = "        allowed_organizations:\n          - pangeo-data\n"
    staging, errors = _teams_errors(repo_copy, text)
    line = staging.read_text().splitlines().index("          - pangeo-data") + 1
    assert errors == [
        f"{staging}:{line}: jupyterhub.hub.config.GitHubOAuthenticator.allowed_organizations[0]: "
        "must be org:team-slug (a whole org is too broad), got 'pangeo-data'"
    ]


def test_origin_stops_at_the_layer_that_replaced_a_parent(repo_paths):
    from pangeo_cloud.config.layering import Layer
    from pangeo_cloud.config.yamlpos import load_yaml

    first = load_yaml("first.yaml", text="a:\n  list:\n    - x\n    - y\n    - z\n")
    second = load_yaml("second.yaml", text="# replaced\na:\n  list: nope\n")
    layers = [Layer("1", first.data, first), Layer("2", second.data, second)]
    assert origin(layers, ("a", "list", 2)) == (second.path, 3)
    assert origin(layers, ("a", "list")) == (second.path, 3)
    third = load_yaml("third.yaml", text="a:\n  other: 1\n")
    layers.append(Layer("3", third.data, third))
    # `third` does not touch a.list: the blame stays with `second`
    assert origin(layers, ("a", "list", 0)) == (second.path, 3)
    # a key nobody set: its nearest set parent, in the last layer mentioning it
    assert origin(layers, ("a", "missing")) == (third.path, 1)


def test_a_scalar_replacing_a_mapping_is_one_error_across_checks(repo_copy):
    from pangeo_cloud.deploy.validate import validate_all

    prod = repo_copy.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"
    text = prod.read_text() + "  singleuser:\n    storage: 20Gi\n"
    prod.write_text(text)
    results = validate_all(["gcp-us-central1-b/prod"], repo_copy, only={"schemas", "promises"})
    errors = [e for r in results for e in r.errors if "storage" in e]
    line = len(text.splitlines())
    assert errors == [
        f"{prod}:{line}: jupyterhub.singleuser.storage: '20Gi' is not of type 'object'"
    ]
