"""The federation's promises to users, checked on merged values.

Schemas say what the charts accept; these checks say what Pangeo Cloud promises
(see the user docs): 10 GB homes, idle servers culled within an hour, Dask
clusters culled after 60 idle minutes with capped sizes, hardware profiles that
fit the nodes, GitHub-team-only login, a per-user scratch prefix that only its
user can reach (the scratch-credentials broker with its own cloud identity, user
pods without one), and a notebook image whose dask-gateway client matches the gateway.
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
from pangeo_cloud.config.model import Deployment, NodePool
from pangeo_cloud.config.units import format_bytes, parse_byte_spec, parse_quantity
from pangeo_cloud.config.wiring import auto_https, env_mapping
from pangeo_cloud.config.yamlpos import dig

KeyPath = tuple[str | int, ...]
HOME_CAPACITY = "10Gi"
HOME_PATH = "/home/jovyan"
MAX_CULL_TIMEOUT = 3600
GATEWAY_IDLE_TIMEOUT = 3600
GATEWAY_PREFIX = "/services/dask-gateway"
GATEWAY_SCOPE = "access:services!service=dask-gateway"
SCRATCH_SCHEME = {"gcp": "gs", "aws": "s3", "local": "s3"}
IDENTITY_ANNOTATION = {"gcp": "iam.gke.io/gcp-service-account", "aws": "eks.amazonaws.com/role-arn"}
BROKER_SCOPE = "access:services!service=scratch-credentials"
# The broker's cloud names each cloud deployment must set (under scratchBroker).
BROKER_IDENTITY = {
    "aws": ("aws.identityRoleArn", "aws.scratchRoleArn"),
    "gcp": ("gcp.serviceAccount",),
}
_SINGLE_BRACE_IMAGE_SPEC = re.compile(r"(?<!\{)\{JUPYTER_IMAGE_SPEC\}(?!\})")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*:[A-Za-z0-9][A-Za-z0-9._-]*$")
GATEWAY_ENV = (
    "DASK_GATEWAY__ADDRESS",
    "DASK_GATEWAY__PROXY_ADDRESS",
    "DASK_GATEWAY__PUBLIC_ADDRESS",
    "DASK_GATEWAY__AUTH__TYPE",
)


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
        error = ConfigError(message, file=file, line=line, key_path=format_key_path(path))
        if error not in self.errors:
            self.errors.append(error)

    def get(self, *path: str | int, default: Any = None) -> Any:
        return dig(self.v, path, default)

    def mapping(self, *path: str | int) -> dict[str, Any]:
        """The mapping at `path`; {} when absent or of another shape (schemas say so)."""
        value = self.get(*path)
        return value if isinstance(value, dict) else {}

    def sequence(self, *path: str | int) -> list[Any] | None:
        """The list at `path` ([] when absent); None, reported once, if not a list."""
        value = self.get(*path)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {_kind(value)}")
            return None
        return value

    # --- homes ---------------------------------------------------------------
    def homes(self) -> None:
        base = ("jupyterhub", "singleuser", "storage")
        if self.get(*base, "type") != "dynamic":
            self.fail((*base, "type"), "must be 'dynamic': every user gets a private home volume")
        capacity = self.get(*base, "capacity")
        try:
            size = parse_quantity(capacity)
        except ValueError as exc:
            self.fail((*base, "capacity"), f"users are promised {HOME_CAPACITY} homes: {exc}")
        else:
            if size != parse_quantity(HOME_CAPACITY):
                self.fail(
                    (*base, "capacity"),
                    f"users are promised {HOME_CAPACITY} homes, got {capacity!r} "
                    f"({format_bytes(size)}; in Kubernetes G is 10^9 bytes, Gi is 2^30)",
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
        if not _is_int(timeout) or not 0 < timeout <= MAX_CULL_TIMEOUT:
            self.fail(
                ("jupyterhub", "cull", "timeout"),
                f"must be an integer number of seconds in 1..{MAX_CULL_TIMEOUT}, got {timeout!r}",
            )
            return
        every = self.get("jupyterhub", "cull", "every")
        if every is None:
            return
        if not _is_int(every) or every <= 0:
            self.fail(
                ("jupyterhub", "cull", "every"),
                f"must be a positive integer number of seconds, got {every!r}",
            )
        elif every > timeout:
            self.fail(
                ("jupyterhub", "cull", "every"),
                f"the culler runs every {every} s, longer than cull.timeout ({timeout} s): "
                f"idle servers would live up to {every + timeout} s; set every <= timeout",
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
            if not _is_number(value) or value <= 0:
                self.fail(
                    (*g, key), f"every cluster must be capped: set a positive number, got {value!r}"
                )
        for key, cap in (
            ("workerCores", "clusterMaxCores"),
            ("workerMemoryGiB", "clusterMaxMemoryGiB"),
        ):
            b = self.get(*g, key)
            if not isinstance(b, dict):
                self.fail((*g, key), f"must be a mapping of min, default, max; got {_kind(b)}")
                continue
            lo, default, hi = b.get("min"), b.get("default"), b.get("max")
            if not all(_is_number(x) for x in (lo, default, hi)) or not lo <= default <= hi:
                self.fail(
                    (*g, key), f"needs numbers min <= default <= max, got {lo}, {default}, {hi}"
                )
            elif _is_number(self.get(*g, cap)) and hi > self.get(*g, cap):
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
        roles = self.mapping("jupyterhub", "hub", "loadRoles")
        if not any(
            isinstance(r, dict)
            and isinstance(r.get("scopes"), list)
            and GATEWAY_SCOPE in r["scopes"]
            for r in roles.values()
        ):
            self.fail(("jupyterhub", "hub", "loadRoles"), f"no role grants users {GATEWAY_SCOPE}")
        token_scopes = self.get("jupyterhub", "hub", "config", "Spawner", "server_token_scopes")
        if not isinstance(token_scopes, list) or GATEWAY_SCOPE not in token_scopes:
            self.fail(
                ("jupyterhub", "hub", "config", "Spawner", "server_token_scopes"),
                f"user servers' tokens must carry {GATEWAY_SCOPE}, else GatewayCluster() "
                "is refused",
            )
        self._gateway_env()
        self._gateway_address()
        self._gateway_egress()

    def _gateway_address(self) -> None:
        """Behind z2jh's autohttps, proxy-public is traefik: servers must use proxy-http."""
        path = ("jupyterhub", "singleuser", "extraEnv", "DASK_GATEWAY__ADDRESS")
        address = env_mapping(self.get(*path[:-1])).get(path[-1])
        if not isinstance(address, str) or not auto_https(self.v):
            return
        host = urlsplit(address).hostname
        if host and host.split(".")[0] == "proxy-public":
            self.fail(
                path,
                "with proxy.https type letsencrypt, proxy-public is traefik, which "
                "redirects http to https: use http://proxy-http:8000/services/dask-gateway "
                "(or leave it unset: pangeo-cloud derives it)",
            )

    def _gateway_env(self) -> None:
        path = ("jupyterhub", "singleuser", "extraEnv")
        raw = self.get(*path)
        env = env_mapping(raw)
        missing = [name for name in GATEWAY_ENV if not env.get(name)]
        if missing:
            hint = (
                " (extraEnv is a list here: Helm replaces the chart's and the generated "
                "entries with it instead of merging; use the mapping form NAME: value)"
                if isinstance(raw, list)
                else ""
            )
            self.fail(
                path,
                f"{', '.join(missing)} must be set so GatewayCluster() works without "
                f"arguments{hint}",
            )

    def _gateway_egress(self) -> None:
        path = ("jupyterhub", "singleuser", "networkPolicy", "egress")
        egress = self.sequence(*path)
        if egress is None:
            return
        peers = [
            peer
            for rule in egress
            if isinstance(rule, dict) and isinstance(rule.get("to"), list)
            for peer in rule["to"]
        ]
        if not any(
            dig(peer, ("podSelector", "matchLabels", "app.kubernetes.io/component")) == "traefik"
            for peer in peers
        ):
            self.fail(
                path,
                "user pods need an egress rule to the gateway's traefik pods "
                "(app.kubernetes.io/component: traefik)",
            )

    # --- profiles ------------------------------------------------------------
    def gateway_user_limits(self) -> None:
        """Every user's clusters are capped in total, and one full-size cluster fits."""
        g = ("jupyterhub", "custom", "pangeo", "gateway")
        pairs = {
            "userMaxClusters": None,
            "userMaxCores": "clusterMaxCores",
            "userMaxMemoryGiB": "clusterMaxMemoryGiB",
            "userMaxWorkers": "clusterMaxWorkers",
        }
        for key in pairs:
            value = self.get(*g, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                self.fail(
                    (*g, key),
                    f"every user's clusters must be capped in total: set a positive number, "
                    f"got {value!r}",
                )
        # The defaults, then each group with the defaults it does not replace.
        groups = self.mapping(*g, "groupLimits")
        entries = [(g, {})] + [
            ((*g, "groupLimits", name), entry if isinstance(entry, dict) else {})
            for name, entry in groups.items()
        ]
        for path, entry in entries:
            for key, cluster_key in pairs.items():
                if cluster_key is None:
                    continue
                total = entry.get(key, self.get(*g, key))
                cap = entry.get(cluster_key, self.get(*g, cluster_key))
                numbers = all(
                    isinstance(v, int | float) and not isinstance(v, bool) for v in (total, cap)
                )
                if not numbers or total >= cap:
                    continue
                # Name the key this entry sets (a group raising a cap, or lowering a total).
                culprit = key if key in entry or cluster_key not in entry else cluster_key
                where = (*path, culprit) if culprit in entry else (*g, culprit)
                self.fail(
                    where,
                    f"{key} {total:g} is below {cluster_key} {cap:g}: no cluster could reach "
                    "its cap",
                )

    def dask_placement(self) -> None:
        """Schedulers and workers are pinned to declared pools they tolerate and fit in."""
        if not self.d.node_pools or self.d.cloud == "local":
            return  # local: Dask runs as processes of this machine, no node selectors
        g = ("jupyterhub", "custom", "pangeo", "gateway")
        backend = ("dask-gateway", "gateway", "backend")
        worker_cpu = self.mapping(*g, "workerCores").get("max")
        worker_mem = self.mapping(*g, "workerMemoryGiB").get("max")
        worker_mem = worker_mem * 2**30 if _is_number(worker_mem) else None
        scheduler_cpu = self.get(*backend, "scheduler", "cores", "limit")
        try:
            scheduler_mem = parse_quantity(self.get(*backend, "scheduler", "memory", "limit"))
        except (ValueError, TypeError):
            scheduler_mem = None
        for role, cpu, mem in (
            ("worker", worker_cpu, worker_mem),
            ("scheduler", scheduler_cpu, scheduler_mem),
        ):
            self._dask_pool(role, cpu, mem)

    def _dask_pool(self, role: str, cpu: Any, mem: float | None) -> None:
        p = ("dask-gateway", "gateway", "backend", role, "extraPodConfig")
        selector = self.mapping(*p, "nodeSelector")
        where = f"{self.d.directory.name}/deployment.yaml"
        if not selector:
            self.fail((*p, "nodeSelector"), f"pin Dask {role}s to a node pool declared in {where}")
            return
        pools = [pool for pool in self.d.node_pools if _matches(pool, selector)]
        if not pools:
            self.fail(
                (*p, "nodeSelector"), f"node selector {selector} matches no node pool in {where}"
            )
        tolerations = self.sequence(*p, "tolerations") or []
        for pool in pools:
            for taint in pool.taints:
                if not _tolerated(taint, tolerations):
                    self.fail(
                        (*p, "tolerations"),
                        f"node pool {pool.name!r} is tainted {taint}: add a toleration for it",
                    )
            what = "the largest worker a user may ask for" if role == "worker" else "the scheduler"
            if _is_number(cpu) and cpu > pool.cpu:
                self.fail(p, f"{what} ({cpu} CPU) exceeds node pool {pool.name!r} ({pool.cpu} CPU)")
            if mem is not None and mem > pool.memory:
                self.fail(
                    p,
                    f"{what} ({mem / 2**30:.1f} GiB) exceeds node pool {pool.name!r} "
                    f"({pool.memory / 2**30:.1f} GiB)",
                )

    def memory(self) -> None:
        """singleuser.memory.* become KubeSpawner's mem_* traits: K/M/G/T only."""
        base = ("jupyterhub", "singleuser", "memory")
        for key in ("guarantee", "limit"):
            value = self.get(*base, key)
            if value is None:
                continue
            try:
                parse_byte_spec(value)
            except ValueError as exc:
                self.fail((*base, key), f"{exc} (z2jh passes it to KubeSpawner mem_{key})")

    def profiles(self) -> None:
        base = ("jupyterhub", "singleuser", "profileList")
        profiles = self.sequence(*base)
        if profiles is None:
            return
        if len(profiles) < 1:
            self.fail(base, "offer at least one hardware profile")
        slugs: set[str] = set()
        for i, profile in enumerate(profiles):
            p = (*base, i)
            if not isinstance(profile, dict):
                self.fail(p, f"a profile must be a mapping, got {_kind(profile)}")
                continue
            for key in ("display_name", "description", "slug"):
                if not profile.get(key) or not isinstance(profile.get(key), str):
                    self.fail(p, f"every profile needs a non-empty {key} (a string)")
            slug = str(profile.get("slug"))
            if slug in slugs:
                self.fail((*p, "slug"), f"duplicate profile slug {slug!r}")
            slugs.add(slug)
            self._profile_resources(p, profile)
        if sum(1 for p in profiles if isinstance(p, dict) and p.get("default")) > 1:
            self.fail(base, "at most one profile may be the default")

    def _profile_resources(self, p: KeyPath, profile: dict[str, Any]) -> None:
        o = profile.get("kubespawner_override")
        if o is None:
            o = {}
        if not isinstance(o, dict):
            self.fail((*p, "kubespawner_override"), f"must be a mapping, got {_kind(o)}")
            return
        su = self.mapping("jupyterhub", "singleuser")
        values: dict[str, float] = {}
        for key, fallback in (
            ("cpu_guarantee", ("cpu", "guarantee")),
            ("cpu_limit", ("cpu", "limit")),
            ("mem_guarantee", ("memory", "guarantee")),
            ("mem_limit", ("memory", "limit")),
        ):
            own = key in o
            raw = o[key] if own else dig(su, fallback)
            if raw is None:
                kind = key.split("_")[0]
                self.fail(
                    (*p, "kubespawner_override"), f"set both {kind}_guarantee and {kind}_limit"
                )
                return
            try:
                values[key] = _resource(key, raw)
            except ValueError as exc:
                if own:  # else memory() or the schema reports the singleuser value
                    self.fail((*p, "kubespawner_override", key), str(exc))
                return
        for kind in ("cpu", "mem"):
            if values[f"{kind}_limit"] < values[f"{kind}_guarantee"]:
                self.fail(
                    (*p, "kubespawner_override", f"{kind}_limit"),
                    f"{kind}_limit is below {kind}_guarantee",
                )
        self._profile_fits(p, o, values["cpu_limit"], values["mem_limit"])

    def _profile_fits(self, p: KeyPath, override: dict[str, Any], cpu: float, mem: float) -> None:
        if not self.d.node_pools:
            return  # e.g. local: no nodes declared
        selector = override.get("node_selector") or self.get(
            "jupyterhub", "singleuser", "nodeSelector", default={}
        )
        if not isinstance(selector, dict):
            return  # the schema (or the kubespawner_override check) reports the shape
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
                    f"limits ({cpu:g} CPU, {format_bytes(mem)}) exceed node pool "
                    f"{pool.name!r} ({pool.cpu:g} CPU, {format_bytes(pool.memory)} allocatable)",
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
        teams = self.sequence(*path)
        if teams is None:
            return
        if not teams:
            self.fail(path, "no team may log in: list the allowed GitHub teams as org:team-slug")
        for i, team in enumerate(teams):
            if not isinstance(team, str) or not _TEAM.match(team):
                self.fail(
                    (*path, i), f"must be org:team-slug (a whole org is too broad), got {team!r}"
                )
        admins = ("jupyterhub", "custom", "pangeo", "auth", "adminTeams")
        for i, team in enumerate(self.sequence(*admins) or []):
            if not isinstance(team, str) or not _TEAM.match(team):
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
        elif not isinstance(url, str) or not url.startswith(f"{want}://"):
            self.fail(
                path, f"{self.d.cloud} deployments use {want}:// scratch buckets, got {url!r}"
            )

    def identity(self) -> None:
        sa = self.mapping("userServiceAccount")
        if self.d.cloud == "local":
            return
        if not sa.get("create"):
            self.fail(
                ("userServiceAccount", "create"),
                "cloud deployments give user pods their own service account (with no cloud "
                "identity): create it",
            )
            return
        if self.get("jupyterhub", "singleuser", "serviceAccountName") != sa.get("name"):
            self.fail(
                ("jupyterhub", "singleuser", "serviceAccountName"),
                f"must be {sa.get('name')!r}, the service account this chart creates",
            )
        key = IDENTITY_ANNOTATION[self.d.cloud]
        annotations = sa.get("annotations")
        if isinstance(annotations, dict) and annotations.get(key):
            self.fail(
                ("userServiceAccount", "annotations", key),
                "user pods and Dask workers must have no bucket access of their own: remove "
                "this annotation; scratch credentials come from the broker "
                f"(scratchBroker.{BROKER_IDENTITY[self.d.cloud][0]})",
            )

    def scratch_broker(self) -> None:
        """The broker runs, has its cloud names, and servers and workers can reach it."""
        if not self.get("scratchBroker", "enabled", default=False):
            self.fail(
                ("scratchBroker", "enabled"),
                "must be true: without the broker nobody gets scratch credentials "
                "(and nothing may fall back to wider ones)",
            )
            return
        broker = ("jupyterhub", "custom", "pangeo", "scratch", "broker")
        if not self.get(*broker, "url"):
            self.fail((*broker, "url"), "set the broker's URL (servers and workers call it)")
        scheme = SCRATCH_SCHEME[self.d.cloud]
        if scheme == "s3" and not self.get(*broker, "awsConfigFile"):
            self.fail((*broker, "awsConfigFile"), "s3:// scratch needs the AWS config file path")
        if scheme == "gs" and not self.get(*broker, "gcsCredentialsFile"):
            self.fail(
                (*broker, "gcsCredentialsFile"),
                "gs:// scratch needs the Google credentials file path",
            )
        scopes = self.get(
            "jupyterhub", "hub", "config", "Spawner", "server_token_scopes", default=[]
        )
        if not isinstance(scopes, list) or BROKER_SCOPE not in scopes:
            self.fail(
                ("jupyterhub", "hub", "config", "Spawner", "server_token_scopes"),
                f"must include {BROKER_SCOPE}, or servers get no scratch credentials",
            )
        if self.d.cloud == "local":
            return
        egress = ("jupyterhub", "singleuser", "networkPolicy", "egress")
        peers = [
            dig(peer, ("podSelector", "matchLabels"), {}) or {}
            for rule in self.sequence(*egress) or []
            if isinstance(rule, dict) and isinstance(rule.get("to"), list)
            for peer in rule["to"]
            if isinstance(peer, dict)
        ]
        peers = [p for p in peers if isinstance(p, dict)]
        if not any(p.get("app.kubernetes.io/component") == "scratch-broker" for p in peers):
            self.fail(
                egress,
                "needs an egress rule to the scratch-credentials broker's pods "
                "(app.kubernetes.io/component: scratch-broker), or servers get no credentials",
            )
        for key in BROKER_IDENTITY[self.d.cloud]:
            path = ("scratchBroker", *key.split("."))
            if not self.get(*path):
                self.fail(
                    path,
                    f"{self.d.cloud} deployments name the broker's cloud identity here "
                    "(see the README's operator guide)",
                )
        if self.d.cloud == "aws":
            ids = [
                self.get("scratchBroker", "aws", k) for k in ("identityRoleArn", "scratchRoleArn")
            ]
            if ids[0] and ids[0] == ids[1]:
                self.fail(
                    ("scratchBroker", "aws", "scratchRoleArn"),
                    "must be a role other than identityRoleArn (the session policy applies "
                    "to the assumed role; the broker's own role has no bucket access)",
                )

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


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resource(trait: str, value: Any) -> float:
    """A profile's CPU (cores) or memory (bytes, as KubeSpawner reads it)."""
    if trait.startswith("mem_"):
        return float(parse_byte_spec(value))
    if not _is_number(value) or value < 0:
        raise ValueError(f"must be a number of CPU cores such as 2 or 0.5, got {value!r}")
    return float(value)


def _matches(pool: NodePool, selector: dict[str, Any]) -> bool:
    return all(pool.labels.get(k) == str(v) for k, v in selector.items())


def _tolerated(taint: str, tolerations: list[Any]) -> bool:
    """Whether Kubernetes lets a pod with `tolerations` onto a node with `taint`."""
    key_value, effect = taint.rsplit(":", 1)
    key, _, value = key_value.partition("=")
    for t in tolerations:
        if not isinstance(t, dict) or t.get("effect") not in (None, "", effect):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", key):
            return True
        if t.get("key") == key and str(t.get("value", "")) == value:
            return True
    return False


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
    "gateway-user-limits": _Checker.gateway_user_limits,
    "dask-placement": _Checker.dask_placement,
    "memory": _Checker.memory,
    "profiles": _Checker.profiles,
    "login": _Checker.login,
    "scratch": _Checker.scratch,
    "identity": _Checker.identity,
    "scratch-broker": _Checker.scratch_broker,
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
