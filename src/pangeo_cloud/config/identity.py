"""The cloud identity CI deploys each stage with (``stages.<stage>.deployIdentity``).

One identity per GitHub environment: the staging and prod stages of a cloud
deployment are deployed by different principals (a Google service account, an
AWS IAM role), and each principal's OIDC trust admits only workflow jobs of its
GitHub environment (subject ``repo:<owner>/<repo>:environment:<name>``). So the
workflow code of a push to ``staging``, which runs without review, can obtain
staging's identity and never prod's: GitHub issues the prod subject only to jobs
the ``prod`` environment admits (its branch rule and reviewers).

This module reads the key and checks what can be checked offline: the shape of
each principal, the AWS account against the cluster's, and that no two stages
(of any deployment) share a principal or, within a deployment, an environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.yamlpos import Document, KeyPath

# GitHub environment names: letters, digits, '-', '_', '.'; at most 255 characters.
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
_GCP_SA = re.compile(
    r"^[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"
)
_AWS_ROLE = re.compile(r"^arn:aws:iam::(?P<account>\d{12}):role/[\w+=,.@/-]{1,512}$")
# The key naming the principal, per cloud (a local stage deploys with no cloud identity).
PRINCIPAL_KEY = {"gcp": "serviceAccount", "aws": "roleArn"}
_RULES = {
    "gcp": (_GCP_SA, "a Google service account email, NAME@PROJECT.iam.gserviceaccount.com"),
    "aws": (_AWS_ROLE, "an IAM role ARN, arn:aws:iam::ACCOUNT:role/NAME"),
}


@dataclass(frozen=True)
class DeployIdentity:
    """Who deploys one stage: the GitHub environment and the cloud principal it may use."""

    environment: str
    principal: str | None  # None for cloud: local


def read_identity(
    doc: Document, stage_path: KeyPath, stage: dict[str, Any], cloud: str, cluster: dict[str, Any]
) -> DeployIdentity | None:
    """Parse ``stages.<stage>.deployIdentity`` (required on a cloud), or raise ConfigError."""
    principal_key = PRINCIPAL_KEY.get(cloud)
    path: KeyPath = (*stage_path, "deployIdentity")
    raw = stage.get("deployIdentity")
    if raw is None:
        if principal_key is None:
            return None
        raise doc.error(
            stage_path,
            "missing required key 'deployIdentity': the cloud identity CI deploys this stage "
            f"with, e.g. {{environment: {stage_path[-1]}, {principal_key}: ...}} (one per "
            "GitHub environment; see the README's security model)",
        )
    if not isinstance(raw, dict):
        raise doc.error(path, "must be a mapping with `environment` and the cloud principal")
    allowed = {"environment", *([principal_key] if principal_key else [])}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise doc.error(
            (*path, unknown[0]),
            f"unknown key {unknown[0]!r} for cloud {cloud}; allowed: {', '.join(sorted(allowed))}",
        )
    environment = raw.get("environment")
    if not isinstance(environment, str) or not _ENVIRONMENT.match(environment):
        raise doc.error(
            (*path, "environment"),
            "must name the GitHub environment whose jobs deploy this stage (letters, digits, "
            f"'.', '-', '_'), got {environment!r}",
        )
    if principal_key is None:
        return DeployIdentity(environment, None)
    principal = raw.get(principal_key)
    pattern, what = _RULES[cloud]
    match = pattern.match(principal) if isinstance(principal, str) else None
    if match is None:
        raise doc.error((*path, principal_key), f"must be {what}, got {principal!r}")
    account = str(cluster.get("account") or "")
    if cloud == "aws" and account and match.group("account") != account:
        raise doc.error(
            (*path, principal_key),
            f"role of account {match.group('account')}, but the cluster is in account "
            f"{account}: the deploy role lives in the cluster's account",
        )
    return DeployIdentity(environment, principal)


def check_distinct(doc: Document, identities: dict[str, DeployIdentity | None]) -> None:
    """Stages of one deployment use distinct principals and distinct environments."""
    for attribute, what in (("principal", "cloud identity"), ("environment", "GitHub environment")):
        owners: dict[str, str] = {}
        for stage, identity in identities.items():
            value = getattr(identity, attribute) if identity else None
            if value is None:
                continue
            other = owners.setdefault(value, stage)
            if other != stage:
                key = "environment" if attribute == "environment" else _principal_key(identity)
                raise doc.error(
                    ("stages", stage, "deployIdentity", key),
                    f"stages {other!r} and {stage!r} share the {what} {value!r}: a push to "
                    f"{other} could then deploy {stage}; give each stage its own",
                )


def _principal_key(identity: DeployIdentity) -> str:
    return "roleArn" if (identity.principal or "").startswith("arn:") else "serviceAccount"


def shared_principals(
    stages: list[tuple[str, DeployIdentity | None, Document]],
) -> dict[str, ConfigError]:
    """deployment/stage -> error, for each stage whose principal another environment uses too."""
    users: dict[str, list[tuple[str, DeployIdentity, Document]]] = {}
    for target, identity, doc in stages:
        if identity is not None and identity.principal is not None:
            users.setdefault(identity.principal, []).append((target, identity, doc))
    errors: dict[str, ConfigError] = {}
    for principal, entries in users.items():
        for target, identity, doc in entries:
            others = [
                (t, i.environment) for t, i, _ in entries if i.environment != identity.environment
            ]
            if not others:
                continue
            stage = target.split("/", 1)[1]
            errors[target] = doc.error(
                ("stages", stage, "deployIdentity", _principal_key(identity)),
                f"{principal!r} is also the identity of {others[0][0]} (GitHub environment "
                f"{others[0][1]!r}): one identity per environment, or a push to one reaches "
                "the other",
            )
    return errors
