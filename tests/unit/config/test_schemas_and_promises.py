"""Merged values against the upstream schemas and the federation's promises.

Each test breaks one thing in a copy of the repository and checks that
`validate` reports it with the file, line and key path to fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pangeo_cloud.deploy.validate import validate_all


def _failures(paths, target="gcp-us-central1-b/prod", check=None):
    # helm lint/template have their own tests; these need only the value checks
    results = validate_all([target], paths, only={"schemas", "promises"})
    return [
        e for r in results if not r.ok and (check is None or r.check == check) for e in r.errors
    ]


def test_repository_passes_schemas_and_promises(repo_paths, upstream_dir, monkeypatch):
    monkeypatch.setenv("PANGEO_UPSTREAM_DIR", str(upstream_dir))
    for target in ("gcp-us-central1-b", "aws-us-west-2", "local"):
        results = validate_all([target], repo_paths)
        checks = {(r.target, r.check): r for r in results}
        for (tgt, check), r in checks.items():
            if check in ("deployment", "values", "schemas", "promises"):
                assert r.ok, f"{tgt} {check}: {r.errors}"


def common(paths, name="gcp-us-central1-b") -> Path:
    return paths.deployments / name / "values" / "common.yaml"


def test_z2jh_schema_type_error_is_located(repo_copy, edit_yaml):
    edit_yaml(common(repo_copy), "  singleuser:\n", '  singleuser:\n    cpu:\n      limit: "2"\n')
    errors = _failures(repo_copy, check="schemas")
    assert any(
        "jupyterhub.singleuser.cpu.limit" in e and "common.yaml:" in e and "is not of type" in e
        for e in errors
    ), errors


def test_z2jh_unknown_key_is_located_with_allowed_keys(repo_copy, edit_yaml):
    edit_yaml(common(repo_copy), "  singleuser:\n", "  singleuser:\n    storageSize: 20Gi\n")
    errors = _failures(repo_copy, check="schemas")
    assert any("jupyterhub.singleuser.storageSize" in e and "storage" in e for e in errors), errors
    assert any("did you mean storage?" in e for e in errors), errors


def test_dask_gateway_schema_is_applied(repo_copy, edit_yaml):
    edit_yaml(
        common(repo_copy),
        "dask-gateway:\n  gateway:\n",
        "dask-gateway:\n  gateway:\n    replica: 2\n",
    )
    errors = _failures(repo_copy, check="schemas")
    assert any("dask-gateway.gateway.replica" in e for e in errors), errors


def test_umbrella_schema_is_applied(repo_copy, edit_yaml):
    edit_yaml(common(repo_copy), "      scratch:\n", "      scratch:\n        bucket: x\n")
    errors = _failures(repo_copy, check="schemas")
    assert any("jupyterhub.custom.pangeo.scratch.bucket" in e for e in errors), errors


def _stage_file(paths, stage="prod", name="gcp-us-central1-b") -> Path:
    return paths.deployments / name / "values" / f"{stage}.yaml"


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


PROMISE_CASES = {
    "home-capacity": (
        "jupyterhub:\n  singleuser:\n    storage:\n      capacity: 20Gi\n",
        "10Gi homes",
    ),
    "cull-timeout": ("  cull:\n    timeout: 7200\n", "cull.timeout"),
    "cull-every": ("  cull:\n    every: 4000\n", "longer than cull.timeout (3600 s)"),
    "extra-env-list": (
        "  singleuser:\n    extraEnv:\n      - name: FOO\n        value: bar\n",
        "use the mapping form NAME: value",
    ),
    "gateway-idle": (
        "  custom:\n    pangeo:\n      gateway:\n        idleTimeout: 7200\n",
        "60 minutes",
    ),
    "gateway-caps": (
        "  custom:\n    pangeo:\n      gateway:\n        clusterMaxWorkers: null\n",
        "every cluster must be capped",
    ),
    "teams-empty": (
        "      GitHubOAuthenticator:\n        allowed_organizations: []\n",
        "no team may log in",
    ),
    "teams-whole-org": (
        "      GitHubOAuthenticator:\n        allowed_organizations: [pangeo-data]\n",
        "org:team-slug",
    ),
    "single-brace": (
        "  singleuser:\n    extraEnv:\n      IMG: '{JUPYTER_IMAGE_SPEC}'\n",
        "double braces",
    ),
    "scratch-scheme": (
        "  custom:\n    pangeo:\n      scratch:\n        url: s3://wrong-cloud\n",
        "gs:// scratch",
    ),
    "profile-too-big": (
        "  singleuser:\n    profileList:\n      - display_name: XL\n"
        "        slug: xl\n        description: too big\n"
        "        kubespawner_override: {cpu_guarantee: 1, cpu_limit: 64,"
        " mem_guarantee: 1G, mem_limit: 8G}\n",
        "exceed node pool 'user'",
    ),
    "profile-limit-below-guarantee": (
        "  singleuser:\n    profileList:\n      - display_name: Odd\n"
        "        slug: odd\n        description: odd\n"
        "        kubespawner_override: {cpu_guarantee: 2, cpu_limit: 1,"
        " mem_guarantee: 1G, mem_limit: 8G}\n",
        "cpu_limit is below cpu_guarantee",
    ),
    "profile-no-pool": (
        "  singleuser:\n    profileList:\n      - display_name: GPU\n"
        "        slug: gpu\n        description: gpu\n"
        "        kubespawner_override: {cpu_guarantee: 1, cpu_limit: 2, mem_guarantee: 1G,"
        " mem_limit: 8G, node_selector: {cloud.google.com/gke-nodepool: gpu}}\n",
        "matches no node pool",
    ),
    "gateway-egress": (
        "  singleuser:\n    networkPolicy:\n      egress: []\n",
        "egress rule to the gateway's traefik",
    ),
    "gateway-open-auth": (None, "else any hub token"),
    "gateway-address-behind-autohttps": (
        "  singleuser:\n    extraEnv:\n"
        "      DASK_GATEWAY__ADDRESS: http://proxy-public/services/dask-gateway\n",
        "redirects http to https",
    ),
    "server-token-scope": (
        "    config:\n      Spawner:\n        server_token_scopes: [access:servers!server]\n",
        "GatewayCluster() is refused",
    ),
}


@pytest.mark.parametrize("case", sorted(PROMISE_CASES))
def test_each_promise_is_enforced_and_located(repo_copy, edit_yaml, case):
    snippet, needle = PROMISE_CASES[case]
    prod = _stage_file(repo_copy)
    if snippet and snippet.startswith("      GitHubOAuthenticator:"):
        edit_yaml(prod, "      GitHubOAuthenticator:\n", snippet)
    elif snippet and snippet.startswith("    config:"):
        edit_yaml(prod, "    config:\n", snippet)
    elif snippet is None:  # dask-gateway auth without the service restriction
        _append(
            prod,
            "dask-gateway:\n  gateway:\n    auth:\n      jupyterhub:\n"
            "        jupyterhubServiceName: null\n",
        )
    elif snippet.startswith("jupyterhub:"):
        _append(prod, snippet.split("\n", 1)[1])
    else:
        _append(prod, snippet)
    errors = _failures(repo_copy, check="promises")
    matching = [e for e in errors if needle in e]
    assert matching, f"{case}: {errors}"
    if case != "gateway-open-auth":
        assert all("prod.yaml:" in e for e in matching), matching


def test_notebook_image_client_must_match_gateway(repo_copy, edit_yaml):
    edit_yaml(
        repo_copy.images / "notebook" / "image.yaml",
        'dask-gateway: "2026.3.0"',
        'dask-gateway: "2025.4.0"',
    )
    errors = _failures(repo_copy, check="promises")
    assert any("dask-gateway 2025.4.0 does not match" in e for e in errors), errors


def test_notebook_image_tag_must_be_the_pinned_one(repo_copy):
    _append(_stage_file(repo_copy), "  singleuser:\n    image:\n      tag: latest\n")
    errors = _failures(repo_copy, check="promises")
    assert any(
        "jupyterhub.singleuser.image" in e and "pangeo-notebook:latest" in e for e in errors
    ), errors


def test_duplicate_key_is_a_located_yaml_error(repo_copy):
    _append(_stage_file(repo_copy), "jupyterhub:\n  cull:\n    timeout: 60\n")
    errors = _failures(repo_copy, check="values")
    assert any("prod.yaml:" in e and "duplicate" in e.lower() for e in errors), errors


def test_extra_env_list_form_is_accepted(repo_copy):
    env = "".join(
        f"      - name: {name}\n        value: {value}\n"
        for name, value in (
            ("DASK_GATEWAY__ADDRESS", "http://proxy-http:8000/services/dask-gateway"),
            ("DASK_GATEWAY__PROXY_ADDRESS", "gateway://traefik-prod-dask-gateway.prod:80"),
            ("DASK_GATEWAY__PUBLIC_ADDRESS", "/services/dask-gateway/"),
            ("DASK_GATEWAY__AUTH__TYPE", "jupyterhub"),
        )
    )
    _append(_stage_file(repo_copy), "  singleuser:\n    extraEnv:\n" + env)
    assert _failures(repo_copy) == []


def test_extra_env_list_form_in_the_local_runtime():
    from pangeo_cloud.local.values import local_values

    values = {"jupyterhub": {"singleuser": {"extraEnv": [{"name": "FOO", "value": "bar"}]}}}
    ports = {"public": 1, "gateway": 2, "broker": 4}
    out = local_values(values, ports, "http://127.0.0.1:3", Path("aws-config"))
    env = out["jupyterhub"]["singleuser"]["extraEnv"]
    assert env["FOO"] == "bar" and "name" not in env
    assert env["DASK_GATEWAY__PROXY_ADDRESS"] == "gateway://127.0.0.1:2"


def test_one_flow_list_of_bad_items_is_one_error(repo_copy):
    _append(
        _stage_file(repo_copy),
        "  singleuser:\n    storage:\n      dynamic:\n        storageAccessModes: [1, 2, 3]\n",
    )
    errors = [e for e in _failures(repo_copy, check="schemas") if "storageAccessModes" in e]
    assert len(errors) == 1, errors
    assert "dynamic.storageAccessModes: 1 is not of type" in errors[0]
    assert "(and 2 more items of this list on the same line)" in errors[0]
