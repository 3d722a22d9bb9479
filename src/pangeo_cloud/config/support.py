"""The support release of a deployment: monitoring for its whole cluster.

``deployment.yaml`` may declare one ``support:`` release per deployment
(cluster): the chart ``helm-chart/support`` (Prometheus and Grafana, pinned
upstream charts) in its own namespace. This module owns its model (read
strictly, like the stages), its values layers and the generated wiring:

1. ``helm-chart/support/values.yaml`` (the support chart's defaults)
2. the generated support wiring: what follows from deployment.yaml alone (the
   scrape targets of every stage's hub and dask-gateway, the names of the
   Secrets and ConfigMap the release renders, Grafana's datasource, public URL
   and OAuth endpoints on the hub of ``loginStage``)
3. the release's ``valuesFiles``
4. its ``secretsFiles`` (sops: the hubs' metrics tokens, Grafana's client secret)

How Prometheus authenticates to JupyterHub's ``/hub/metrics``: every stage's
hub registers a service ``prometheus`` whose role has the single scope
``read:metrics``; its token is in that stage's secrets and, per stage, in the
support secrets (``pangeo.hubs.<stage>.prometheusToken``), mounted into the
Prometheus pod and read with ``credentials_file``. Grafana logs in through the
login stage's hub as the OAuth client of its service ``grafana``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.names import DNS_LABEL, MAX_RELEASE, gateway_fullname
from pangeo_cloud.config.yamlpos import KeyPath

if TYPE_CHECKING:
    from pangeo_cloud.config.model import Deployment

SUPPORT_TARGET = "support"  # how commands name the support release: DEPLOYMENT support
GRAFANA_SERVICE = "grafana"  # the hub service Grafana is the OAuth client of
GRAFANA_CLIENT_ID = f"service-{GRAFANA_SERVICE}"  # JupyterHub requires the service- prefix
GRAFANA_PREFIX = f"/services/{GRAFANA_SERVICE}/"  # where the hub's proxy serves Grafana
PROMETHEUS_SERVICE = "prometheus"  # the hub service whose token scrapes /hub/metrics
METRICS_SCOPE = "read:metrics"
TOKEN_DIR = "/etc/prometheus/hub-tokens"  # the Secret <release>-hub-tokens, one file per stage
HUB_PORT = 8081  # z2jh's hub Service
GATEWAY_API_PORT = 8000  # the dask-gateway chart's api Service
# Node labels kube-state-metrics exports (kube_node_labels): the node pool, per cloud.
NODE_POOL_LABELS = (
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "node.kubernetes.io/instance-type",
)

_SUPPORT = {
    "release": True,
    "namespace": True,
    "loginStage": True,
    "valuesFiles": True,
    "secretsFiles": False,
    "kubeContext": False,
}


@dataclass(frozen=True)
class SupportRelease:
    """The cluster's monitoring release (helm-chart/support)."""

    release: str
    namespace: str
    # The stage whose hub Grafana logs in through (its admins see the dashboards).
    login_stage: str
    values_files: tuple[Path, ...]
    secrets_files: tuple[Path, ...]
    kube_context: str | None = None
    name: str = SUPPORT_TARGET


def read_support(
    reader: Any, raw: Any, base: Path, stages: dict[str, Any]
) -> SupportRelease | None:
    """The `support:` key of deployment.yaml (None when absent); `reader` is model._Reader."""
    if raw is None:
        return None
    p: KeyPath = ("support",)
    reader.mapping(raw, p, _SUPPORT)
    if SUPPORT_TARGET in stages:
        raise reader.doc.error(
            ("stages", SUPPORT_TARGET),
            f"a stage may not be named {SUPPORT_TARGET!r} when `support:` is set: commands "
            f"name the support release `DEPLOYMENT {SUPPORT_TARGET}`",
        )
    release = reader.string(raw["release"], (*p, "release"), pattern=DNS_LABEL)
    if len(release) > MAX_RELEASE:
        raise reader.doc.error((*p, "release"), f"Helm release names are at most {MAX_RELEASE}")
    namespace = reader.string(raw["namespace"], (*p, "namespace"), pattern=DNS_LABEL)
    login = reader.string(raw["loginStage"], (*p, "loginStage"))
    if login not in stages:
        raise reader.doc.error(
            (*p, "loginStage"),
            f"names no stage of this deployment: {login!r} (stages: {', '.join(sorted(stages))})",
        )
    if not stages[login].domain:
        raise reader.doc.error(
            (*p, "loginStage"),
            f"stage {login!r} has no `domain`: Grafana is served at the login hub's public "
            "host (https://<domain>/services/grafana/)",
        )
    for stage in stages.values():
        if (stage.release, stage.namespace) == (release, namespace):
            raise reader.doc.error(
                (*p, "release"),
                f"release {release!r} in namespace {namespace!r} is already stage "
                f"{stage.name!r}: one deploy would overwrite the other",
            )
    kube_context = raw.get("kubeContext")
    if kube_context is not None:
        reader.string(kube_context, (*p, "kubeContext"))
    return SupportRelease(
        release=release,
        namespace=namespace,
        login_stage=login,
        values_files=reader.files(raw["valuesFiles"], (*p, "valuesFiles"), base),
        secrets_files=reader.files(raw.get("secretsFiles", []), (*p, "secretsFiles"), base),
        kube_context=kube_context,
    )


def require_support(deployment: Deployment) -> SupportRelease:
    """The deployment's support release, or one clear error."""
    if deployment.support is None:
        raise ConfigError(
            f"deployment {deployment.name!r} has no support release: add `support:` "
            "(release, namespace, loginStage, valuesFiles) to its deployment.yaml",
            file=deployment.directory / "deployment.yaml",
            key_path="support",
        )
    return deployment.support


# --- the generated wiring ---------------------------------------------------------


def hub_urls(domain: str) -> dict[str, str]:
    """The hub's OAuth provider endpoints at its public host (what Grafana must use)."""
    base = f"https://{domain}/hub/api"
    return {
        "auth_url": f"{base}/oauth2/authorize",
        "token_url": f"{base}/oauth2/token",
        "api_url": f"{base}/user",
    }


def grafana_root_url(domain: str) -> str:
    return f"https://{domain}{GRAFANA_PREFIX}"


def grafana_service_url(support: SupportRelease) -> str:
    """Grafana's in-cluster address: the hub's proxy routes /services/grafana/ there."""
    return f"http://{support.release}-grafana.{support.namespace}.svc.cluster.local"


def prometheus_url(support: SupportRelease) -> str:
    return f"http://{support.release}-prometheus-server.{support.namespace}.svc"


def scrape_targets(deployment: Deployment) -> dict[str, dict[str, str]]:
    """Stage -> its hub and dask-gateway API addresses (host:port) in the cluster."""
    return {
        name: {
            "namespace": st.namespace,
            "hub": f"hub.{st.namespace}.svc:{HUB_PORT}",
            "gateway": f"api-{gateway_fullname(st.release)}.{st.namespace}.svc:{GATEWAY_API_PORT}",
        }
        for name, st in deployment.stages.items()
    }


def scrape_configs(deployment: Deployment) -> list[dict[str, Any]]:
    """Prometheus scrape_configs for every stage's hub and gateway.

    Job names must be unique, and each stage's hub has its own token: one
    scrape config per stage and component, whose `job` label is then set to
    the contract's job name ("jupyterhub", "dask-gateway").
    """
    jobs = []
    for stage, target in scrape_targets(deployment).items():
        labels = {"deployment": deployment.name, "stage": stage}
        jobs.append(
            {
                "job_name": f"jupyterhub-{stage}",
                "metrics_path": "/hub/metrics",
                "authorization": {"type": "Bearer", "credentials_file": f"{TOKEN_DIR}/{stage}"},
                "static_configs": [{"targets": [target["hub"]], "labels": labels}],
                "relabel_configs": [{"target_label": "job", "replacement": "jupyterhub"}],
            }
        )
        jobs.append(
            {
                "job_name": f"dask-gateway-{stage}",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [target["gateway"]], "labels": labels}],
                "relabel_configs": [{"target_label": "job", "replacement": "dask-gateway"}],
            }
        )
    return jobs


def support_wiring(deployment: Deployment, support: SupportRelease) -> dict[str, Any]:
    """The generated layer (module docstring, layer 2)."""
    rel = support.release
    domain = deployment.stages[support.login_stage].domain
    return {
        "pangeo": {"deployment": deployment.name, "hubs": scrape_targets(deployment)},
        "prometheus": {
            # Fixed, so that Grafana's datasource URL can name it.
            "server": {
                "fullnameOverride": f"{rel}-prometheus-server",
                "extraSecretMounts": [
                    {
                        "name": "hub-tokens",
                        "mountPath": TOKEN_DIR,
                        "secretName": f"{rel}-hub-tokens",
                        "readOnly": True,
                    }
                ],
            },
            "kube-state-metrics": {
                "metricLabelsAllowlist": [f"nodes=[{','.join(NODE_POOL_LABELS)}]"]
            },
            "extraScrapeConfigs": yaml.safe_dump(scrape_configs(deployment), sort_keys=False),
        },
        "grafana": {
            "grafana.ini": {
                "server": {"root_url": grafana_root_url(domain)},
                "auth.generic_oauth": {"client_id": GRAFANA_CLIENT_ID, **hub_urls(domain)},
            },
            # The client secret stays out of grafana.ini (the chart refuses
            # secrets there); Grafana reads it from this variable.
            "envValueFrom": {
                "GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET": {
                    "secretKeyRef": {"name": f"{rel}-grafana-oauth", "key": "client-secret"}
                }
            },
            "dashboardsConfigMaps": {"pangeo": f"{rel}-dashboards"},
            "datasources": {
                "datasources.yaml": {
                    "apiVersion": 1,
                    "datasources": [
                        {
                            "name": "Prometheus",
                            "type": "prometheus",
                            "uid": "prometheus",
                            "url": prometheus_url(support),
                            "access": "proxy",
                            "isDefault": True,
                        }
                    ],
                }
            },
        },
    }
