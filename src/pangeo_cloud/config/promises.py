"""The federation's promises to users, checked on merged values.

Schemas say what the charts accept; these checks say what Pangeo Cloud promises
(see the user docs): 10 GB homes, idle servers culled within an hour, Dask
clusters culled after 60 idle minutes with capped sizes, hardware profiles that
fit the nodes, GitHub-team-only login, a per-user scratch prefix, and a
notebook image whose dask-gateway client matches the gateway.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pangeo_cloud.config.errors import ConfigError, format_key_path
from pangeo_cloud.config.layering import Layer, origin
from pangeo_cloud.config.model import Deployment, NodePool, parse_quantity
from pangeo_cloud.config.wiring import auto_https

KeyPath = tuple[str | int, ...]
HOME_CAPACITY = "10Gi"
HOME_PATH = "/home/jovyan"
MAX_CULL_TIMEOUT = 3600
GATEWAY_IDLE_TIMEOUT = 3600
GATEWAY_PREFIX = "/services/dask-gateway"
GATEWAY_SCOPE = "access:services!service=dask-gateway"
SCRATCH_SCHEME = {"gcp": "gs", "aws": "s3", "local": "s3"}
IDENTITY_ANNOTATION = {"gcp": "iam.gke.io/gcp-service-account", "aws": "eks.amazonaws.com/role-arn"}
_SINGLE_BRACE_IMAGE_SPEC = re.compile(r"(?<!\{)\{JUPYTER_IMAGE_SPEC\}(?!\})")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*:[A-Za-z0-9][A-Za-z0-9._-]*$")
GATEWAY_ENV = (
    "DASK_GATEWAY__ADDRESS",
    "DASK_GATEWAY__PROXY_ADDRESS",
    "DASK_GATEWAY__PUBLIC_ADDRESS",
    "DASK_GATEWAY__AUTH__TYPE",
)


def dig(values: Any, path: KeyPath, default: Any = None) -> Any:
    for key in path:
        in_map = isinstance(values, dict) and key in values
        in_list = isinstance(values, list) and isinstance(key, int) and key < len(values)
        if in_map or in_list:
            values = values[key]
        else:
            return default
    return values


class _Checker:
    """Collects promise violations, each located where the value was set."""

    def __init__(
        self,
        deployment: Deployment,
        values: dict[str, Any],
        layers: list[Layer],
        image_file: Path | None,
        gateway_app_version: str | None,
    ) -> None:
        self.d = deployment
        self.v = values
        self.layers = layers
        self.image_file = image_file
        self.gateway_app_version = gateway_app_version
        self.errors: list[ConfigError] = []

    def fail(self, path: KeyPath, message: str) -> None:
        file, line = origin(self.layers, path)
        self.errors.append(
            ConfigError(message, file=file, line=line, key_path=format_key_path(path))
        )

    def get(self, *path: str | int, default: Any = None) -> Any:
        return dig(self.v, path, default)

    # --- homes ---------------------------------------------------------------
    def homes(self) -> None:
        base = ("jupyterhub", "singleuser", "storage")
        if self.get(*base, "type") != "dynamic":
            self.fail((*base, "type"), "must be 'dynamic': every user gets a private home volume")
        if str(self.get(*base, "capacity")) != HOME_CAPACITY:
            self.fail(
                (*base, "capacity"),
                f"users are promised {HOME_CAPACITY} homes, got {self.get(*base, 'capacity')!r}",
            )
        if self.get(*base, "homeMountPath") != HOME_PATH:
            self.fail((*base, "homeMountPath"), f"homes must be mounted at {HOME_PATH}")
        if self.d.cloud != "local" and not self.get(*base, "dynamic", "storageClass"):
            self.fail(
                (*base, "dynamic", "storageClass"),
                "set the cloud's storage class (e.g. standard-rwo on GKE, gp3 on EKS)",
            )

    # --- culling -------------------------------------------------------------
    def culling(self) -> None:
        if self.get("jupyterhub", "cull", "enabled") is not True:
            self.fail(("jupyterhub", "cull", "enabled"), "idle servers must be culled (true)")
        timeout = self.get("jupyterhub", "cull", "timeout")
        if not isinstance(timeout, int) or not 0 < timeout <= MAX_CULL_TIMEOUT:
            self.fail(
                ("jupyterhub", "cull", "timeout"),
                f"must be an integer number of seconds in 1..{MAX_CULL_TIMEOUT}, got {timeout!r}",
            )

    # --- dask gateway --------------------------------------------------------
    def gateway(self) -> None:
        g = ("jupyterhub", "custom", "pangeo", "gateway")
        if self.get(*g, "idleTimeout") != GATEWAY_IDLE_TIMEOUT:
            self.fail(
                (*g, "idleTimeout"),
                f"users are promised {GATEWAY_IDLE_TIMEOUT} s "
                f"(60 minutes), got {self.get(*g, 'idleTimeout')!r}",
            )
        for key in ("clusterMaxCores", "clusterMaxMemoryGiB", "clusterMaxWorkers"):
            value = self.get(*g, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                self.fail(
                    (*g, key), f"every cluster must be capped: set a positive number, got {value!r}"
                )
        for key, cap in (
            ("workerCores", "clusterMaxCores"),
            ("workerMemoryGiB", "clusterMaxMemoryGiB"),
        ):
            b = self.get(*g, key, default={}) or {}
            lo, default, hi = b.get("min"), b.get("default"), b.get("max")
            if None in (lo, default, hi) or not lo <= default <= hi:
                self.fail((*g, key), f"needs min <= default <= max, got {lo}, {default}, {hi}")
            elif isinstance(self.get(*g, cap), int | float) and hi > self.get(*g, cap):
                self.fail((*g, key, "max"), f"a single worker ({hi}) would exceed {cap}")
        self._gateway_wiring()

    def _gateway_wiring(self) -> None:
        dg = ("dask-gateway", "gateway")
        if self.get(*dg, "prefix") != GATEWAY_PREFIX:
            self.fail((*dg, "prefix"), f"must be {GATEWAY_PREFIX} (the hub service's path)")
        if self.get(*dg, "auth", "type") != "jupyterhub":
            self.fail((*dg, "auth", "type"), "must be 'jupyterhub': users log in with hub tokens")
        if self.get(*dg, "auth", "jupyterhub", "jupyterhubServiceName") != "dask-gateway":
            self.fail(
                (*dg, "auth", "jupyterhub", "jupyterhubServiceName"),
                "must be 'dask-gateway', else any hub token can use the gateway",
            )
        if not isinstance(self.get("jupyterhub", "hub", "services", "dask-gateway"), dict):
            self.fail(("jupyterhub", "hub", "services"), "must register the dask-gateway service")
        roles = self.get("jupyterhub", "hub", "loadRoles", default={}) or {}
        if not any(
            GATEWAY_SCOPE in (r.get("scopes") or []) for r in roles.values() if isinstance(r, dict)
        ):
            self.fail(("jupyterhub", "hub", "loadRoles"), f"no role grants users {GATEWAY_SCOPE}")
        token_scopes = self.get("jupyterhub", "hub", "config", "Spawner", "server_token_scopes")
        if not isinstance(token_scopes, list) or GATEWAY_SCOPE not in token_scopes:
            self.fail(
                ("jupyterhub", "hub", "config", "Spawner", "server_token_scopes"),
                f"user servers' tokens must carry {GATEWAY_SCOPE}, else GatewayCluster() "
                "is refused",
            )
        env = self.get("jupyterhub", "singleuser", "extraEnv", default={}) or {}
        for name in GATEWAY_ENV:
            if not env.get(name):
                self.fail(
                    ("jupyterhub", "singleuser", "extraEnv"),
                    f"{name} must be set so GatewayCluster() works without arguments",
                )
        address = env.get("DASK_GATEWAY__ADDRESS") if isinstance(env, dict) else None
        if isinstance(address, str) and auto_https(self.v):
            host = urlsplit(address).hostname
            if host and host.split(".")[0] == "proxy-public":
                self.fail(
                    ("jupyterhub", "singleuser", "extraEnv", "DASK_GATEWAY__ADDRESS"),
                    "with proxy.https type letsencrypt, proxy-public is traefik, which "
                    "redirects http to https: use http://proxy-http:8000/services/dask-gateway "
                    "(or leave it unset: pangeo-cloud derives it)",
                )
        egress = self.get("jupyterhub", "singleuser", "networkPolicy", "egress", default=[]) or []
        if not any(
            dig(peer, ("podSelector", "matchLabels", "app.kubernetes.io/component")) == "traefik"
            for rule in egress
            for peer in (rule.get("to") or [])
        ):
            self.fail(
                ("jupyterhub", "singleuser", "networkPolicy", "egress"),
                "user pods need an egress rule to the gateway's traefik pods "
                "(app.kubernetes.io/component: traefik)",
            )

    # --- profiles ------------------------------------------------------------
    def profiles(self) -> None:
        base = ("jupyterhub", "singleuser", "profileList")
        profiles = self.get(*base, default=[]) or []
        if len(profiles) < 1:
            self.fail(base, "offer at least one hardware profile")
        slugs: set[str] = set()
        for i, profile in enumerate(profiles):
            p = (*base, i)
            for key in ("display_name", "description", "slug"):
                if not profile.get(key):
                    self.fail(p, f"every profile needs a non-empty {key}")
            if profile.get("slug") in slugs:
                self.fail((*p, "slug"), f"duplicate profile slug {profile.get('slug')!r}")
            slugs.add(profile.get("slug"))
            self._profile_resources(p, profile)
        if sum(1 for p in profiles if p.get("default")) > 1:
            self.fail(base, "at most one profile may be the default")

    def _profile_resources(self, p: KeyPath, profile: dict[str, Any]) -> None:
        o = profile.get("kubespawner_override") or {}
        su = self.get("jupyterhub", "singleuser", default={})
        cpu = (
            o.get("cpu_guarantee", dig(su, ("cpu", "guarantee"))),
            o.get("cpu_limit", dig(su, ("cpu", "limit"))),
        )
        mem = []
        for key, fallback in (("mem_guarantee", "guarantee"), ("mem_limit", "limit")):
            raw = o.get(key, dig(su, ("memory", fallback)))
            try:
                mem.append(parse_quantity(raw) if raw is not None else None)
            except ValueError as exc:
                self.fail((*p, "kubespawner_override", key), str(exc))
                return
        for kind, (guarantee, limit) in (("cpu", cpu), ("mem", tuple(mem))):
            if guarantee is None or limit is None:
                self.fail(
                    (*p, "kubespawner_override"), f"set both {kind}_guarantee and {kind}_limit"
                )
                return
            if limit < guarantee:
                self.fail(
                    (*p, "kubespawner_override", f"{kind}_limit"),
                    f"{kind}_limit is below {kind}_guarantee",
                )
        self._profile_fits(p, o, cpu[1], mem[1])

    def _profile_fits(self, p: KeyPath, override: dict[str, Any], cpu: float, mem: float) -> None:
        if not self.d.node_pools:
            return  # e.g. local: no nodes declared
        selector = (
            override.get("node_selector")
            or self.get("jupyterhub", "singleuser", "nodeSelector", default={})
            or {}
        )
        pools = [pool for pool in self.d.node_pools if _matches(pool, selector)]
        if not pools:
            self.fail(
                (*p, "kubespawner_override"),
                f"node selector {selector} matches no node pool declared in "
                f"{self.d.directory.name}/deployment.yaml",
            )
            return
        for pool in pools:
            if cpu > pool.cpu or mem > pool.memory:
                self.fail(
                    (*p, "kubespawner_override"),
                    f"limits ({cpu} CPU, {mem / 2**30:.1f} GiB) exceed node pool "
                    f"{pool.name!r} ({pool.cpu} CPU, {pool.memory / 2**30:.1f} GiB)",
                )

    # --- login ---------------------------------------------------------------
    def login(self) -> None:
        if self.get("jupyterhub", "hub", "config", "JupyterHub", "authenticator_class") != "github":
            if self.d.cloud != "local":
                self.fail(
                    ("jupyterhub", "hub", "config", "JupyterHub", "authenticator_class"),
                    "cloud deployments must use GitHub login ('github')",
                )
            return
        path = ("jupyterhub", "hub", "config", "GitHubOAuthenticator", "allowed_organizations")
        teams = self.get(*path, default=[]) or []
        if not teams:
            self.fail(path, "no team may log in: list the allowed GitHub teams as org:team-slug")
        for i, team in enumerate(teams):
            if not isinstance(team, str) or not _TEAM.match(team):
                self.fail(
                    (*path, i), f"must be org:team-slug (a whole org is too broad), got {team!r}"
                )
        admins = ("jupyterhub", "custom", "pangeo", "auth", "adminTeams")
        for i, team in enumerate(self.get(*admins, default=[]) or []):
            if not _TEAM.match(str(team)):
                self.fail((*admins, i), f"must be org:team-slug, got {team!r}")

    # --- scratch -------------------------------------------------------------
    def scratch(self) -> None:
        path = ("jupyterhub", "custom", "pangeo", "scratch", "url")
        url = self.get(*path) or ""
        want = SCRATCH_SCHEME[self.d.cloud]
        if not url:
            self.fail(
                path,
                f"set the scratch bucket ({want}://BUCKET): the hub refuses to start without it",
            )
        elif not url.startswith(f"{want}://"):
            self.fail(
                path, f"{self.d.cloud} deployments use {want}:// scratch buckets, got {url!r}"
            )

    def identity(self) -> None:
        sa = self.get("userServiceAccount", default={}) or {}
        if self.d.cloud == "local":
            return
        if not sa.get("create"):
            self.fail(
                ("userServiceAccount", "create"),
                "cloud deployments bind user pods to a cloud identity: create the service account",
            )
            return
        if self.get("jupyterhub", "singleuser", "serviceAccountName") != sa.get("name"):
            self.fail(
                ("jupyterhub", "singleuser", "serviceAccountName"),
                f"must be {sa.get('name')!r}, the service account this chart creates",
            )
        key = IDENTITY_ANNOTATION[self.d.cloud]
        if not (sa.get("annotations") or {}).get(key):
            self.fail(("userServiceAccount", "annotations"), f"needs the {key} annotation")

    # --- software ------------------------------------------------------------
    def image_spec_braces(self) -> None:
        for path, value in _strings(
            self.get("jupyterhub", "singleuser", default={}), ("jupyterhub", "singleuser")
        ):
            if _SINGLE_BRACE_IMAGE_SPEC.search(value):
                self.fail(
                    path,
                    "KubeSpawner formats environment values: write "
                    "'{{JUPYTER_IMAGE_SPEC}}' (double braces), not '{JUPYTER_IMAGE_SPEC}'",
                )

    def notebook_image(self) -> None:
        if self.image_file is None or not self.image_file.is_file():
            self.fail(
                ("jupyterhub", "singleuser", "image"), "images/notebook/image.yaml is missing"
            )
            return
        image = yaml.safe_load(self.image_file.read_text()) or {}
        want = f"{image.get('name')}:{image.get('tag')}"
        for path in (
            ("jupyterhub", "singleuser", "image"),
            ("dask-gateway", "gateway", "backend", "image"),
        ):
            have = f"{self.get(*path, 'name')}:{self.get(*path, 'tag')}"
            if have != want:
                self.fail(
                    path,
                    f"must be the notebook image of images/notebook/image.yaml "
                    f"({want}), got {have}",
                )
        client = str(dig(image, ("packages", "dask-gateway")))
        if self.gateway_app_version and client != self.gateway_app_version:
            self.fail(
                ("jupyterhub", "singleuser", "image"),
                f"the notebook image's dask-gateway {client} does not match the gateway "
                f"chart's appVersion {self.gateway_app_version} ({self.image_file.name})",
            )


def _matches(pool: NodePool, selector: dict[str, Any]) -> bool:
    return all(pool.labels.get(k) == str(v) for k, v in selector.items())


def _strings(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i))
    elif isinstance(value, str):
        yield path, value


CHECKS: dict[str, Callable[[_Checker], None]] = {
    "homes": _Checker.homes,
    "culling": _Checker.culling,
    "gateway": _Checker.gateway,
    "profiles": _Checker.profiles,
    "login": _Checker.login,
    "scratch": _Checker.scratch,
    "identity": _Checker.identity,
    "image-spec-braces": _Checker.image_spec_braces,
    "notebook-image": _Checker.notebook_image,
}


def check_promises(
    deployment: Deployment,
    values: dict[str, Any],
    layers: list[Layer],
    *,
    image_file: Path | None,
    gateway_app_version: str | None,
) -> list[ConfigError]:
    """Every violated promise, each with the file and line to change."""
    checker = _Checker(deployment, values, layers, image_file, gateway_app_version)
    for check in CHECKS.values():
        check(checker)
    return checker.errors
