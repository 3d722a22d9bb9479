"""The support release (monitoring): deployment.yaml model, generated wiring, offline checks.

The hub-login tests are part (d) of issue 13: Grafana's OAuth configuration
points at the hub of the same (login) stage and admits hub admins only.
"""

from __future__ import annotations

import pytest
import yaml

from pangeo_cloud.config import ConfigError, load_deployment
from pangeo_cloud.config.layering import merge_all, support_layers, values_layers
from pangeo_cloud.config.support import GRAFANA_CLIENT_ID, scrape_configs
from pangeo_cloud.config.support_checks import (
    check_hub_login,
    check_support_schemas,
    grafana_attribute,
)

CLOUDS = ["gcp-us-central1-b", "aws-us-west-2"]


def _hub_login(deployment, paths) -> list[ConfigError]:
    support = deployment.support
    layers = support_layers(deployment, paths=paths)
    stage_layers = {
        s: values_layers(deployment, s, paths=paths, generated=False) for s in deployment.stages
    }
    stage_values = {s: merge_all(ls) for s, ls in stage_layers.items()}
    return check_hub_login(
        deployment, support, merge_all(layers), layers, stage_values, stage_layers
    )


@pytest.mark.parametrize("name", CLOUDS)
def test_every_cloud_deployment_has_one_support_release(repo_paths, name):
    deployment = load_deployment(name, repo_paths)
    support = deployment.support
    assert support is not None
    assert (support.release, support.namespace, support.login_stage) == (
        "support",
        "support",
        "prod",
    )
    assert [f.name for f in support.secrets_files] == ["support.enc.yaml"]


def test_local_deployment_has_no_support_release(repo_paths):
    # `up` runs its own Prometheus; no Helm release on this machine.
    assert load_deployment("local", repo_paths).support is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  loginStage: prod\n", "  loginStage: production\n", "names no stage"),
        ("  loginStage: prod\n", "  loginStage: prod\n  colour: red\n", "unknown key 'colour'"),
        ("  namespace: support\n", "  namespace: prod\n", "already stage 'prod'"),
        ("  release: support\n", "  release: Support\n", "not a valid DNS label"),
    ],
)
def test_bad_support_block_is_one_clear_error(repo_copy, edit_yaml, old, new, expected):
    file = repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml"
    edit_yaml(file, old, new)
    if "already stage" in expected:
        edit_yaml(file, "  release: support\n", "  release: prod\n")
    with pytest.raises(ConfigError) as info:
        load_deployment("gcp-us-central1-b", repo_copy)
    text = str(info.value)
    assert expected in text
    assert "deployment.yaml:" in text and "support." in text


def test_login_stage_needs_a_domain(repo_copy, edit_yaml):
    file = repo_copy.deployments / "gcp-us-central1-b" / "deployment.yaml"
    edit_yaml(file, "    domain: us-central1-b.gcp.pangeo.io\n", "")
    with pytest.raises(ConfigError, match="has no `domain`"):
        load_deployment("gcp-us-central1-b", repo_copy)


def test_scrape_configs_cover_every_stage_with_its_own_token(repo_paths):
    deployment = load_deployment("gcp-us-central1-b", repo_paths)
    jobs = {job["job_name"]: job for job in scrape_configs(deployment)}
    assert set(jobs) == {
        "jupyterhub-staging",
        "jupyterhub-prod",
        "dask-gateway-staging",
        "dask-gateway-prod",
    }
    hub = jobs["jupyterhub-prod"]
    assert hub["static_configs"][0]["targets"] == ["hub.prod.svc:8081"]
    assert hub["static_configs"][0]["labels"] == {
        "deployment": "gcp-us-central1-b",
        "stage": "prod",
    }
    assert hub["authorization"]["credentials_file"].endswith("/prod")
    # The contract's job names, whatever the unique scrape-config names.
    assert hub["relabel_configs"] == [{"target_label": "job", "replacement": "jupyterhub"}]
    gateway = jobs["dask-gateway-staging"]
    assert gateway["static_configs"][0]["targets"] == ["api-staging-dask-gateway.staging.svc:8000"]


@pytest.mark.parametrize("name", CLOUDS)
def test_merged_support_values_wire_prometheus_and_grafana(repo_paths, name):
    deployment = load_deployment(name, repo_paths)
    values = merge_all(support_layers(deployment, paths=repo_paths))
    extra = yaml.safe_load(values["prometheus"]["extraScrapeConfigs"])
    assert {job["job_name"] for job in extra} >= {"jupyterhub-prod", "jupyterhub-staging"}
    mounts = values["prometheus"]["server"]["extraSecretMounts"]
    assert mounts[0]["secretName"] == "support-hub-tokens"
    grafana = values["grafana"]
    assert grafana["dashboardsConfigMaps"] == {"pangeo": "support-dashboards"}
    source = grafana["datasources"]["datasources.yaml"]["datasources"][0]
    assert source["url"] == "http://support-prometheus-server.support.svc"
    assert values["prometheus"]["server"]["fullnameOverride"] == "support-prometheus-server"
    env = grafana["envValueFrom"]["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"]["secretKeyRef"]
    assert env == {"name": "support-grafana-oauth", "key": "client-secret"}
    # The client secret never sits in grafana.ini (the chart refuses leaked secrets).
    assert "client_secret" not in grafana["grafana.ini"]["auth.generic_oauth"]
    assert values["prometheus"]["alertmanager"]["enabled"] is False


# --- (d) Grafana logs in through the hub of the same stage, admins only ------------


@pytest.mark.parametrize("name", CLOUDS)
def test_grafana_oauth_points_at_the_login_stage_hub(repo_paths, name):
    deployment = load_deployment(name, repo_paths)
    domain = deployment.stages["prod"].domain
    values = merge_all(support_layers(deployment, paths=repo_paths))
    oauth = values["grafana"]["grafana.ini"]["auth.generic_oauth"]
    assert oauth["auth_url"] == f"https://{domain}/hub/api/oauth2/authorize"
    assert oauth["token_url"] == f"https://{domain}/hub/api/oauth2/token"
    assert oauth["api_url"] == f"https://{domain}/hub/api/user"
    assert oauth["client_id"] == GRAFANA_CLIENT_ID
    root = values["grafana"]["grafana.ini"]["server"]["root_url"]
    assert root == f"https://{domain}/services/grafana/"
    hub = merge_all(values_layers(deployment, "prod", paths=repo_paths))["jupyterhub"]["hub"]
    service = hub["services"]["grafana"]
    assert service["oauth_client_id"] == oauth["client_id"]
    assert service["oauth_redirect_uri"] == f"{root}login/generic_oauth"
    assert _hub_login(deployment, repo_paths) == []


@pytest.mark.parametrize("name", CLOUDS)
def test_only_hub_admins_get_a_grafana_attribute(repo_paths, name):
    deployment = load_deployment(name, repo_paths)
    values = merge_all(support_layers(deployment, paths=repo_paths))
    ini = values["grafana"]["grafana.ini"]
    path = ini["auth.generic_oauth"]["role_attribute_path"]
    # The user model /hub/api/user returns for an `identify` token: kind, name, admin.
    assert grafana_attribute(path, {"kind": "user", "name": "ann", "admin": True}) == "Admin"
    assert not grafana_attribute(path, {"kind": "user", "name": "bob", "admin": False})
    assert ini["auth.generic_oauth"]["role_attribute_strict"] is True
    # Grafana needs a login and an e-mail per user; hub users have only a name.
    model = {"kind": "user", "name": "ann", "admin": True}
    for key, expected in (("login", "ann"), ("name", "ann"), ("email", "ann@users.jupyterhub")):
        assert (
            grafana_attribute(ini["auth.generic_oauth"][f"{key}_attribute_path"], model) == expected
        )
    assert ini["auth.anonymous"]["enabled"] is False
    assert ini["auth.basic"]["enabled"] is False
    assert ini["auth"]["disable_login_form"] is True


def _support_values_file(repo_copy):
    return repo_copy.deployments / "gcp-us-central1-b" / "values" / "support.yaml"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "      auth_url: https://staging.us-central1-b.gcp.pangeo.io/hub/api/oauth2/authorize\n",
            "auth.generic_oauth.auth_url: must be "
            "'https://us-central1-b.gcp.pangeo.io/hub/api/oauth2/authorize'",
        ),
        (
            "      role_attribute_path: \"admin && 'Admin' || 'Viewer'\"\n",
            "others 'Viewer'",
        ),
        ("      role_attribute_strict: false\n", "role_attribute_strict: must be true"),
    ],
)
def test_grafana_login_mistakes_are_named(repo_copy, snippet, expected):
    file = _support_values_file(repo_copy)
    file.write_text(file.read_text() + "  grafana.ini:\n    auth.generic_oauth:\n" + snippet)
    errors = _hub_login(load_deployment("gcp-us-central1-b", repo_copy), repo_copy)
    assert len(errors) == 1, errors
    assert expected in str(errors[0])
    assert "support.yaml:" in str(errors[0])


def test_anonymous_grafana_is_refused(repo_copy):
    file = _support_values_file(repo_copy)
    file.write_text(file.read_text() + "  grafana.ini:\n    auth.anonymous: {enabled: true}\n")
    errors = _hub_login(load_deployment("gcp-us-central1-b", repo_copy), repo_copy)
    assert [e.key_path for e in errors] == ["grafana.grafana.ini.auth.anonymous.enabled"]


def test_hub_service_of_another_grafana_is_named(repo_copy, edit_yaml):
    prod = repo_copy.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"
    edit_yaml(
        prod,
        "https://us-central1-b.gcp.pangeo.io/services/grafana/login/generic_oauth",
        "https://staging.us-central1-b.gcp.pangeo.io/services/grafana/login/generic_oauth",
    )
    errors = _hub_login(load_deployment("gcp-us-central1-b", repo_copy), repo_copy)
    assert len(errors) == 1
    assert errors[0].key_path == "jupyterhub.hub.services.grafana.oauth_redirect_uri"
    assert "prod.yaml:" in str(errors[0])


def test_prometheus_service_with_more_than_read_metrics_is_refused(repo_copy, edit_yaml):
    staging = repo_copy.deployments / "gcp-us-central1-b" / "values" / "staging.yaml"
    edit_yaml(
        staging,
        "jupyterhub:\n  hub:\n",
        "jupyterhub:\n  hub:\n    loadRoles:\n      metrics-extra:\n"
        "        services: [prometheus]\n        scopes: [admin:users]\n",
    )
    errors = _hub_login(load_deployment("gcp-us-central1-b", repo_copy), repo_copy)
    assert len(errors) == 1, errors
    assert "stage 'staging' must have exactly the scope 'read:metrics'" in str(errors[0])
    assert "has ['admin:users', 'read:metrics']" in str(errors[0])
    assert errors[0].key_path == "jupyterhub.hub.loadRoles.metrics-extra"
    assert "staging.yaml:" in str(errors[0])


# --- schemas: pinned upstream charts, offline ---------------------------------------


@pytest.mark.parametrize("name", CLOUDS)
def test_support_values_validate_against_the_pinned_charts(repo_paths, support_upstream_dir, name):
    deployment = load_deployment(name, repo_paths)
    layers = support_layers(deployment, paths=repo_paths)
    errors, note = check_support_schemas(
        merge_all(layers), layers, repo_paths, str(support_upstream_dir)
    )
    assert errors == []
    assert "prometheus 29.27.0 (schema)" in note
    # grafana ships no schema: its keys are checked against its default values.yaml.
    assert "grafana 12.11.1 (default keys)" in note


def test_unknown_grafana_key_is_caught_without_a_schema(repo_copy, support_upstream_dir):
    file = _support_values_file(repo_copy)
    file.write_text(file.read_text() + "  persistance: {enabled: true}\n")
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    layers = support_layers(deployment, paths=repo_copy)
    errors, _ = check_support_schemas(merge_all(layers), layers, repo_copy)
    assert len(errors) == 1
    text = str(errors[0])
    assert "grafana.persistance" in text and "did you mean persistence?" in text
    assert "support.yaml:" in text


def test_prometheus_schema_violation_is_caught(repo_copy, support_upstream_dir):
    file = _support_values_file(repo_copy)
    text = file.read_text().replace("prometheus:\n", "prometheus:\n  rbac: {create: maybe}\n", 1)
    file.write_text(text)
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    layers = support_layers(deployment, paths=repo_copy)
    errors, _ = check_support_schemas(merge_all(layers), layers, repo_copy)
    assert [e.key_path for e in errors] == ["prometheus.rbac.create"]


def test_our_keys_are_checked_by_the_support_schema(repo_copy, support_upstream_dir):
    file = _support_values_file(repo_copy)
    file.write_text(file.read_text() + "pangeo:\n  grafanna: {}\n")
    deployment = load_deployment("gcp-us-central1-b", repo_copy)
    layers = support_layers(deployment, paths=repo_copy)
    errors, _ = check_support_schemas(merge_all(layers), layers, repo_copy)
    assert len(errors) == 1 and "grafanna" in str(errors[0])
