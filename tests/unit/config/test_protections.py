"""`pangeo-cloud validate`'s `protections` check: values that would undo least privilege.

Each case edits a copy of gcp-us-central1-b/prod the way an operator could and
expects one clear error naming the file, line and key path; the shipped
deployments pass (no false alarm).
"""

from __future__ import annotations

import pytest

from pangeo_cloud.config import Paths
from pangeo_cloud.config.layering import merged_values
from pangeo_cloud.config.pinned import default_allowlist
from pangeo_cloud.deploy.validate import validate_all

TARGET = "gcp-us-central1-b/prod"
NARROW = [
    "custom:pangeo-cloud:create:service-users",
    "list:users!group=health-check-users",
    "read:users!group=health-check-users",
    "servers!group=health-check-users",
    "delete:users!group=health-check-users",
]


def _errors(paths: Paths, target: str = TARGET) -> list[str]:
    results = validate_all([target], paths, only={"protections"})
    return [str(e) for r in results if not r.ok for e in r.errors]


def _prod(paths: Paths):
    return paths.deployments / "gcp-us-central1-b" / "values" / "prod.yaml"


def _under_jupyterhub(paths: Paths, text: str, anchor: str = "jupyterhub:\n") -> None:
    file = _prod(paths)
    file.write_text(file.read_text().replace(anchor, anchor + text, 1))


def _append(paths: Paths, text: str) -> None:
    file = _prod(paths)
    file.write_text(file.read_text() + text)


def test_shipped_deployments_pass():
    paths = Paths.discover()
    targets = [
        "gcp-us-central1-b/staging",
        "gcp-us-central1-b/prod",
        "aws-us-west-2/staging",
        "aws-us-west-2/prod",
        "local/dev",
    ]
    for target in targets:
        assert _errors(paths, target) == [], target


@pytest.mark.parametrize("stage", ["staging", "prod"])
@pytest.mark.parametrize("deployment", ["gcp-us-central1-b", "aws-us-west-2"])
def test_the_secrets_files_wide_role_is_pinned_narrow(deployment, stage):
    # The secrets files still list admin:users, admin:servers, tokens,
    # access:servers (they cannot be re-encrypted without the operators' key):
    # the generated layer after them pins the role.
    values = merged_values(deployment, stage, paths=Paths.discover())
    roles = values["jupyterhub"]["hub"]["loadRoles"]
    assert roles["health-check"] == {"services": ["health-check"], "scopes": NARROW}


def test_another_role_for_the_health_check_service_is_refused(repo_copy):
    _under_jupyterhub(
        repo_copy,
        "    loadRoles:\n      extra:\n        services: [health-check]\n"
        "        scopes: [admin:users]\n",
        anchor="  hub:\n",
    )
    (error,) = _errors(repo_copy)
    assert "prod.yaml:" in error
    assert "jupyterhub.hub.loadRoles.extra.services: role 'extra' is assigned to the service " in (
        error
    )
    assert "(remove 'health-check')" in error


@pytest.mark.parametrize(
    "allowlist,message",
    [
        ("[]", "must list the images Dask clusters may run"),
        ("['*']", "'*' is not allowed: a pattern names a repository"),
        ("['*/*:*']", "'*/*:*' is not allowed"),
        ("['pangeo/*:*']", "'pangeo/*:*' is not allowed"),
        ("['pangeo/pangeo-notebook']", "'pangeo/pangeo-notebook' is not allowed"),
    ],
)
def test_an_open_image_allowlist_is_refused(repo_copy, allowlist, message):
    _under_jupyterhub(
        repo_copy, f"  custom:\n    pangeo:\n      gateway:\n        imageAllowlist: {allowlist}\n"
    )
    (error,) = _errors(repo_copy)
    assert "prod.yaml:" in error and "jupyterhub.custom.pangeo.gateway.imageAllowlist" in error
    assert message in error


def test_a_narrow_allowlist_passes(repo_copy):
    _under_jupyterhub(
        repo_copy,
        "  custom:\n    pangeo:\n      gateway:\n        imageAllowlist:\n"
        "          - pangeo/pangeo-notebook:2026.*\n"
        "          - us-central1-docker.pkg.dev/pangeo/images/ml-notebook@sha256:*\n",
    )
    assert _errors(repo_copy) == []


def test_default_allowlist_is_the_notebook_repository():
    values = merged_values("aws-us-west-2", "prod", paths=Paths.discover())
    expected = ["pangeo/pangeo-notebook:*", "pangeo/pangeo-notebook@sha256:*"]
    assert default_allowlist(values) == expected
    assert values["jupyterhub"]["custom"]["pangeo"]["gateway"]["imageAllowlist"] == expected


def test_user_pod_token_is_refused(repo_copy):
    _under_jupyterhub(
        repo_copy,
        "      KubeSpawner:\n        automount_service_account_token: true\n",
        anchor="    config:\n",
    )
    (error,) = _errors(repo_copy)
    assert "jupyterhub.hub.config.KubeSpawner.automount_service_account_token: must be false" in (
        error
    )


@pytest.mark.parametrize(
    "snippet,message",
    [
        (
            "      worker:\n        extraPodConfig:\n"
            "          automountServiceAccountToken: true\n",
            "worker.extraPodConfig.automountServiceAccountToken: must be false",
        ),
        (
            "      scheduler:\n        extraPodConfig:\n          securityContext:\n"
            "            runAsNonRoot: false\n",
            "scheduler.extraPodConfig.securityContext.runAsNonRoot: must be true",
        ),
        (
            "      worker:\n        extraContainerConfig:\n          securityContext:\n"
            "            allowPrivilegeEscalation: true\n",
            "worker.extraContainerConfig.securityContext.allowPrivilegeEscalation: must be false",
        ),
        (
            "      worker:\n        extraContainerConfig:\n          securityContext:\n"
            "            privileged: true\n",
            "worker.extraContainerConfig.securityContext.privileged: must be false or unset",
        ),
        (
            "      scheduler:\n        extraContainerConfig:\n          securityContext:\n"
            "            capabilities: {add: [NET_ADMIN]}\n",
            "capabilities.add: must be empty",
        ),
    ],
)
def test_dask_pod_protection_undone_is_refused(repo_copy, snippet, message):
    _append(repo_copy, "dask-gateway:\n  gateway:\n    backend:\n" + snippet)
    (error,) = _errors(repo_copy)
    assert "prod.yaml:" in error and message in error


@pytest.mark.parametrize(
    "snippet,message",
    [
        ("daskNetworkPolicy:\n  enabled: false\n", "daskNetworkPolicy.enabled: must be true"),
        ("gatewayRbac:\n  enabled: false\n", "gatewayRbac.enabled: must be true"),
        (
            "dask-gateway:\n  rbac:\n    traefik:\n      serviceAccountName: null\n",
            "dask-gateway.rbac.traefik.serviceAccountName: must name our ServiceAccount",
        ),
        (
            "dask-gateway:\n  gateway:\n    backend:\n      namespace: elsewhere\n",
            "dask-gateway.gateway.backend.namespace: must be unset",
        ),
        (
            "dask-gateway:\n  traefik:\n    additionalArguments: [--log.level=INFO]\n",
            "must contain '--providers.kubernetescrd.namespaces=prod'",
        ),
    ],
)
def test_isolation_switched_off_is_refused(repo_copy, snippet, message):
    _append(repo_copy, snippet)
    errors = _errors(repo_copy)
    assert len(errors) == 1 and message in errors[0], errors
