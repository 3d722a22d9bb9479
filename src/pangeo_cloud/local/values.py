"""The merged values rewritten for this machine, and what `pangeo-cloud up` derives from them.

Pure functions of the values and the run's ports and paths: the cluster
addresses replaced by loopback ones (:func:`local_values`), the login mode, the
groups that get a local password, the scratch broker's configuration and the
AWS config of servers and workers, and the `health-check` service.
"""

from __future__ import annotations

import copy
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pangeo_cloud.broker import client
from pangeo_cloud.config.wiring import env_mapping
from pangeo_cloud.hub.service_users import ISSUER_SCOPES
from pangeo_cloud.local.errors import LocalRuntimeError

SHARED_PASSWORD = "shared-password"


BROKER_SERVICE = "scratch-credentials"


GITHUB = {"github", "oauthenticator.github.GitHubOAuthenticator", "GitHubOAuthenticator"}


@dataclass
class GitHubLogin:
    client_id: str
    client_secret: str
    url: str | None = None
    allowed_organizations: list[str] = field(default_factory=list)
    # org:team entries whose members become admins (custom.pangeo.auth.adminTeams).
    admin_teams: list[str] = field(default_factory=list)


def login_mode(values: dict[str, Any], github: GitHubLogin | None, deployment: str) -> str:
    """'github' or 'shared-password' for these values and options."""
    if github is not None:
        return "github"
    jh = values.get("jupyterhub", {})
    cls = (((jh.get("hub") or {}).get("config") or {}).get("JupyterHub") or {}).get(
        "authenticator_class"
    )
    if cls == SHARED_PASSWORD:
        return SHARED_PASSWORD
    if cls in GITHUB:
        raise LocalRuntimeError(
            f"deployment {deployment!r} logs in with GitHub: pass --github-client-id and "
            "--github-client-secret (an OAuth app whose callback URL is "
            "http://127.0.0.1:PORT/hub/oauth_callback)"
        )
    raise LocalRuntimeError(
        f"deployment {deployment!r} uses authenticator {cls!r}, which pangeo-cloud up cannot "
        "run; use --github-client-id/--github-client-secret or a shared-password deployment"
    )


def restricted_groups(values: dict[str, Any]) -> list[str]:
    """Groups named by profiles' allowed_groups (each gets a local password)."""
    profiles = ((values.get("jupyterhub") or {}).get("singleuser") or {}).get("profileList") or []
    groups: list[str] = []
    for profile in profiles:
        for group in profile.get("allowed_groups") or []:
            if group not in groups:
                groups.append(group)
    return groups


def local_values(
    values: dict[str, Any], ports: dict[str, int], endpoint: str, aws_config: Path
) -> dict[str, Any]:
    """The merged values with cluster addresses replaced by this machine's.

    - ``custom.pangeo.scratch.endpoint`` becomes the local store; a ``gs://``
      bucket is served as ``s3://`` of the same name (the store speaks S3).
    - The gateway's addresses in ``singleuser.extraEnv`` and the service URL
      become the loopback ports of this run.
    - Scratch credentials come from the scratch-credentials broker, a
      hub-managed service here (its URL and the AWS config file `aws_config`
      whose credential_process runs its client); no key reaches the users.
    """
    values = copy.deepcopy(values)
    jh = values.setdefault("jupyterhub", {})
    pangeo = jh.setdefault("custom", {}).setdefault("pangeo", {})
    scratch = pangeo.setdefault("scratch", {})
    url = scratch.get("url") or "s3://pangeo-scratch"
    parsed = urlparse(url)
    if parsed.scheme == "gs":
        url = "s3://" + url[len("gs://") :]
    scratch["url"] = url
    scratch["endpoint"] = endpoint
    scratch["region"] = scratch.get("region") or "us-east-1"
    singleuser = jh.setdefault("singleuser", {})
    env = env_mapping(singleuser.get("extraEnv"))  # either z2jh form
    env.update(
        {
            "DASK_GATEWAY__ADDRESS": f"http://127.0.0.1:{ports['public']}/services/dask-gateway",
            "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://127.0.0.1:{ports['gateway']}",
            "DASK_GATEWAY__PUBLIC_ADDRESS": "/services/dask-gateway/",
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        }
    )
    singleuser["extraEnv"] = env
    services = jh.setdefault("hub", {}).setdefault("services", {})
    gateway = dict(services.get("dask-gateway") or {})
    gateway["url"] = f"http://127.0.0.1:{ports['gateway']}"
    services["dask-gateway"] = gateway
    broker_url = f"http://127.0.0.1:{ports['broker']}"
    broker = dict(services.get(BROKER_SERVICE) or {})
    broker.update({"url": broker_url, "display": False})
    services[BROKER_SERVICE] = broker
    scratch["broker"] = {
        **(scratch.get("broker") or {}),
        "url": f"{broker_url}/services/{BROKER_SERVICE}/",
        "awsConfigFile": str(aws_config),
    }
    return values


def aws_config_text(python: str) -> str:
    """The AWS config of servers and workers: credentials from the broker's client.

    The client runs as a file, as in the cluster (where our package is absent).
    """
    command = " ".join(shlex.quote(part) for part in (python, client.__file__, "aws"))
    return (
        "# Written by `pangeo-cloud up`: scratch credentials for your own prefix, from the\n"
        "# scratch-credentials broker (explicit AWS_ACCESS_KEY_ID / ~/.aws/credentials win).\n"
        "[default]\n"
        f"credential_process = {command}\n"
        # Session credentials need SigV4, also in presigned URLs (boto3 may pick SigV2).
        "s3 =\n"
        "    signature_version = s3v4\n"
    )


def broker_config(values: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """The broker's configuration file for this run (MinIO's STS is the store itself)."""
    scratch = values["jupyterhub"]["custom"]["pangeo"]["scratch"]
    broker = values.get("scratchBroker") or {}
    # For developers watching credentials refresh (and the refresh test): a
    # shorter lifetime than the values' (STS sessions still last >= 900 s).
    lifetime = os.environ.get("PANGEO_SCRATCH_LIFETIME") or broker.get("lifetime") or 3600
    if not str(lifetime).isdigit() or int(lifetime) < 1:
        raise LocalRuntimeError(
            f"PANGEO_SCRATCH_LIFETIME must be a number of seconds >= 1, got {lifetime!r}"
        )
    # How long the broker keeps its listing of the bucket (scratch bytes per user):
    # tests that write and then read the usage report shorten it.
    cache = os.environ.get("PANGEO_SCRATCH_USAGE_CACHE") or "300"
    if not cache.isdigit():
        raise LocalRuntimeError(f"PANGEO_SCRATCH_USAGE_CACHE must be seconds >= 0, got {cache!r}")
    return {
        "scratch": {k: v for k, v in scratch.items() if k != "broker"},
        "lifetime": int(lifetime),
        "usageCacheSeconds": int(cache),
        # MinIO ignores the role (the session inherits its caller's policy, then
        # the session policy narrows it); AWS needs a real one.
        "provider": {"roleArn": "arn:minio:iam:::role/pangeo-scratch", "stsEndpoint": endpoint},
    }


# The service `pangeo-cloud health` uses, with the role the clusters pin
# (config/pinned.py): only its own throw-away users.
HEALTH_CHECK_SCOPES = list(ISSUER_SCOPES)
# This machine's operator (`admin_token` in secrets.json): users, servers and
# tokens of everyone, as a hub admin has; for `clusters` and tests. The clusters
# have no such service.
LOCAL_ADMIN = "local-admin"
LOCAL_ADMIN_SCOPES = ["admin:users", "admin:servers", "tokens", "admin:groups"]


def add_health_check_service(
    values: dict[str, Any], token: str, admin_token: str | None = None
) -> dict[str, Any]:
    """Register `health-check` (and, with ``admin_token``, `local-admin`) and their roles."""
    hub = values.setdefault("jupyterhub", {}).setdefault("hub", {})
    hub.setdefault("services", {})["health-check"] = {"apiToken": token, "display": False}
    hub.setdefault("loadRoles", {})["health-check"] = {
        "services": ["health-check"],
        "scopes": HEALTH_CHECK_SCOPES,
    }
    if admin_token:
        hub["services"][LOCAL_ADMIN] = {"apiToken": admin_token, "display": False}
        hub["loadRoles"][LOCAL_ADMIN] = {"services": [LOCAL_ADMIN], "scopes": LOCAL_ADMIN_SCOPES}
    return values
