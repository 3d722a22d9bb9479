"""Least-privilege settings that an operator's values must not undo.

Two parts:

- the generated values layer of :mod:`pangeo_cloud.config.pinned`, placed after
  the secrets files: the role of each throw-away-user service (``health-check``)
  is code, not configuration, and the Dask image allowlist defaults to the
  notebook image's repository;
- :func:`check_protections` (``pangeo-cloud validate``, check ``protections``):
  refuses values that would widen what a token, a user pod or a Dask pod can
  reach: another role for the health-check service, an empty or match-all
  image allowlist, a Kubernetes token in user or Dask pods, Dask pods that may
  run as root or escalate, a switched-off Dask NetworkPolicy, and the
  dask-gateway's upstream cluster-wide RBAC instead of ours.
"""

from __future__ import annotations

import re
from typing import Any

from pangeo_cloud.config.errors import ConfigError, format_key_path
from pangeo_cloud.config.layering import Layer, origin
from pangeo_cloud.config.pinned import ALLOWLIST, HUB, issuers
from pangeo_cloud.config.yamlpos import dig
from pangeo_cloud.hub.service_users import ISSUER_SCOPES

KeyPath = tuple[str | int, ...]
BACKEND = ("dask-gateway", "gateway", "backend")
# A pattern must spell out its repository: wildcards only in the tag or digest.
_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:|@sha256:)[A-Za-z0-9_.*-]+$")


def _list(value: Any) -> list[Any]:
    """``value`` if it is a list, else empty (a wrong shape is the schema check's)."""
    return value if isinstance(value, list) else []


class _Checker:
    def __init__(self, values: dict[str, Any], layers: list[Layer], namespace: str | None) -> None:
        self.v = values
        self.layers = layers
        self.namespace = namespace
        self.errors: list[ConfigError] = []

    def fail(self, path: KeyPath, message: str) -> None:
        file, line = origin(self.layers, path)
        self.errors.append(
            ConfigError(message, file=file, line=line, key_path=format_key_path(path))
        )

    def get(self, path: KeyPath) -> Any:
        return dig(self.v, path)

    def service_roles(self) -> None:
        roles = self.get((*HUB, "loadRoles")) or {}
        for issuer in issuers(self.v):
            for name, role in roles.items() if isinstance(roles, dict) else ():
                if not isinstance(role, dict) or issuer not in _list(role.get("services")):
                    continue
                path = (*HUB, "loadRoles", name)
                if name != issuer:
                    self.fail(
                        path + ("services",),
                        f"role {name!r} is assigned to the service {issuer!r}, whose only role "
                        f"is {issuer!r} with the scopes {list(ISSUER_SCOPES)} (remove {issuer!r})",
                    )
                elif _list(role.get("scopes")) != list(ISSUER_SCOPES):
                    self.fail(path + ("scopes",), f"must be exactly {list(ISSUER_SCOPES)}")

    def image_allowlist(self) -> None:
        patterns = self.get(ALLOWLIST)
        if not isinstance(patterns, list) or not patterns:
            self.fail(
                ALLOWLIST,
                "must list the images Dask clusters may run (e.g. 'pangeo/pangeo-notebook:*'); "
                "leave it unset for the notebook image's repository",
            )
            return
        for i, pattern in enumerate(patterns):
            if not isinstance(pattern, str) or not _PATTERN.match(pattern):
                self.fail(
                    (*ALLOWLIST, i),
                    f"{pattern!r} is not allowed: a pattern names a repository "
                    "(registry/name) and may use '*' only in its tag or digest, "
                    "e.g. 'pangeo/pangeo-notebook:*'",
                )

    def no_kube_token(self) -> None:
        path = (*HUB, "config", "KubeSpawner", "automount_service_account_token")
        if self.get(path) is not False:
            self.fail(path, "must be false: user pods need no Kubernetes API token")
        for role in ("scheduler", "worker"):
            path = (*BACKEND, role, "extraPodConfig", "automountServiceAccountToken")
            if self.get(path) is not False:
                self.fail(path, "must be false: Dask pods need no Kubernetes API token")

    def dask_security_context(self) -> None:
        for role in ("scheduler", "worker"):
            pod = (*BACKEND, role, "extraPodConfig", "securityContext", "runAsNonRoot")
            if self.get(pod) is not True:
                self.fail(pod, "must be true: Dask pods never run as root")
            ctx = (*BACKEND, role, "extraContainerConfig", "securityContext")
            if self.get((*ctx, "allowPrivilegeEscalation")) is not False:
                self.fail((*ctx, "allowPrivilegeEscalation"), "must be false")
            if self.get((*ctx, "privileged")) not in (None, False):
                self.fail((*ctx, "privileged"), "must be false or unset")
            drop = _list(self.get((*ctx, "capabilities", "drop")))
            added = self.get((*ctx, "capabilities", "add"))
            if "ALL" not in drop:
                self.fail((*ctx, "capabilities", "drop"), "must contain ALL")
            if added:
                self.fail((*ctx, "capabilities", "add"), "must be empty: Dask needs no capability")

    def dask_network_policy(self) -> None:
        path = ("daskNetworkPolicy", "enabled")
        if self.get(path) is not True:
            self.fail(path, "must be true: Dask pods may reach only what a Dask cluster needs")
        path = ("jupyterhub", "singleuser", "networkPolicy", "enabled")
        if self.get(path) is False:
            self.fail(path, "must not be false: user pods keep z2jh's NetworkPolicy")

    def gateway_rbac(self) -> None:
        if self.get(("dask-gateway", "enabled")) is False:
            return
        path = ("gatewayRbac", "enabled")
        if self.get(path) is not True:
            self.fail(
                path, "must be true: upstream's ClusterRoles read every Secret of the cluster"
            )
        for account in ("gateway", "controller", "traefik"):
            path = ("dask-gateway", "rbac", account, "serviceAccountName")
            if not self.get(path):
                self.fail(
                    path, "must name our ServiceAccount (else upstream's ClusterRoles are used)"
                )
        # Our Roles (and traefik's watch) cover the release's namespace only.
        path = (*BACKEND, "namespace")
        if self.get(path) not in (None, "", self.namespace):
            self.fail(path, "must be unset: Dask clusters run in the stage's namespace")
        path = ("dask-gateway", "traefik", "additionalArguments")
        wanted = f"--providers.kubernetescrd.namespaces={self.namespace}"
        if self.namespace and wanted not in _list(self.get(path)):
            self.fail(path, f"must contain {wanted!r}: traefik's Role covers only its namespace")


CHECKS = (
    _Checker.service_roles,
    _Checker.image_allowlist,
    _Checker.no_kube_token,
    _Checker.dask_security_context,
    _Checker.dask_network_policy,
    _Checker.gateway_rbac,
)


def check_protections(
    values: dict[str, Any], layers: list[Layer], namespace: str | None = None
) -> list[ConfigError]:
    """Every protection the merged ``values`` undo, each located where it was set.

    ``namespace`` is the stage's (for traefik's namespace flag).
    """
    checker = _Checker(values, layers, namespace)
    for check in CHECKS:
        check(checker)
    return checker.errors
