"""The typed model of `deployments/<name>/deployment.yaml`.

A deployment is one hub federation member (a cloud, a cluster) with named stages
(staging, prod, ...), each a Helm release in a namespace fed by an ordered list
of values files. Unknown keys are errors: a typo must not silently do nothing.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.identity import DeployIdentity, check_distinct, read_identity
from pangeo_cloud.config.kubeversion import DEFAULT_KUBERNETES_VERSION, kubernetes_version
from pangeo_cloud.config.names import DNS_LABEL as _DNS_LABEL
from pangeo_cloud.config.names import DNS_LABEL_RULE as _DNS_LABEL_RULE
from pangeo_cloud.config.names import MAX_RELEASE, gateway_fullname
from pangeo_cloud.config.paths import Paths
from pangeo_cloud.config.support import SupportRelease, read_support
from pangeo_cloud.config.units import parse_quantity
from pangeo_cloud.config.yamlpos import Document, KeyPath, load_yaml

CLOUDS = ("gcp", "aws", "local")


@dataclass(frozen=True)
class NodePool:
    """A pool of nodes user servers or Dask pods may land on, with its allocatable size."""

    name: str
    cpu: float
    memory: float  # bytes
    labels: dict[str, str]
    # Node taints as key=value:Effect; only pods that tolerate them land there.
    taints: tuple[str, ...] = ()
    # The machine type (e.g. r5.4xlarge), priced in the deployment's `prices`.
    node_type: str | None = None


@dataclass(frozen=True)
class Prices:
    """Hourly price of each node type: the usage report's cost estimate."""

    currency: str
    per_hour: dict[str, float]


@dataclass(frozen=True)
class Stage:
    """One Helm release of a deployment (e.g. staging or prod)."""

    name: str
    release: str
    namespace: str
    domain: str | None
    values_files: tuple[Path, ...]
    secrets_files: tuple[Path, ...]
    kube_context: str | None = None
    # A stage whose deploys need the commit to have passed this other stage.
    requires: str | None = None
    # The GitHub environment and cloud principal CI deploys this stage with.
    deploy_identity: DeployIdentity | None = None


@dataclass(frozen=True)
class Deployment:
    """A member of the federation: one cluster on one cloud, with stages."""

    name: str
    cloud: str
    directory: Path
    cluster: dict[str, Any]
    kubernetes_version: str
    node_pools: tuple[NodePool, ...]
    stages: dict[str, Stage] = field(default_factory=dict)
    source: Document | None = None
    # The monitoring release of the cluster (config/support.py), if declared.
    support: SupportRelease | None = None
    prices: Prices | None = None

    def stage(self, name: str) -> Stage:
        try:
            return self.stages[name]
        except KeyError:
            raise ConfigError(
                f"unknown stage {name!r}; this deployment has: {', '.join(self.stages)}",
                file=self.directory / "deployment.yaml",
                key_path="stages",
            ) from None


# --- a small strict reader ---------------------------------------------------


class _Reader:
    """Reads a mapping with known keys and types, reporting file:line key.path."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def mapping(self, value: Any, path: KeyPath, allowed: dict[str, bool]) -> dict[str, Any]:
        """Check `value` is a map with only `allowed` keys (name -> required)."""
        if not isinstance(value, dict):
            raise self.doc.error(path, f"must be a mapping, got {type(value).__name__}")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise self.doc.error(
                (*path, unknown[0]),
                f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
            )
        for key, required in allowed.items():
            if required and key not in value:
                raise self.doc.error(path, f"missing required key {key!r}")
        return value

    def string(
        self,
        value: Any,
        path: KeyPath,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] | None = None,
    ) -> str:
        if not isinstance(value, str) or not value:
            raise self.doc.error(path, f"must be a non-empty string, got {value!r}")
        if choices and value not in choices:
            raise self.doc.error(path, f"must be one of {', '.join(choices)}, got {value!r}")
        if pattern and not pattern.match(value):
            raise self.doc.error(path, f"{value!r} is not {_DNS_LABEL_RULE}")
        return value

    def number(self, value: Any, path: KeyPath) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value < float("inf")
        ):
            raise self.doc.error(path, f"must be a positive number, got {value!r}")
        return float(value)

    def quantity(self, value: Any, path: KeyPath) -> float:
        try:
            size = parse_quantity(value)
        except ValueError as exc:
            raise self.doc.error(path, str(exc)) from None
        if size <= 0:
            raise self.doc.error(path, f"must be a positive size, got {value!r}")
        return size

    def files(self, value: Any, path: KeyPath, base: Path) -> tuple[Path, ...]:
        if not isinstance(value, list):
            raise self.doc.error(path, "must be a list of file paths relative to the deployment")
        out = []
        for index, item in enumerate(value):
            rel = self.string(item, (*path, index))
            target = base / rel
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise self.doc.error(
                    (*path, index),
                    f"{rel!r} must be a path inside the deployment directory "
                    f"{base.name}/ (relative, without '..')",
                )
            if not target.resolve().is_relative_to(base.resolve()):
                raise self.doc.error(
                    (*path, index), f"{rel!r} leads outside {base.name}/ (through a symlink)"
                )
            if not target.is_file():
                raise self.doc.error((*path, index), f"file not found: {target}")
            out.append(target)
        return tuple(out)


_TOP = {
    "name": True,
    "cloud": True,
    "cluster": False,
    "nodePools": False,
    "prices": False,
    "stages": True,
    # The cluster's monitoring release (helm-chart/support): see config/support.py.
    "support": False,
}
_PRICES = {"currency": True, "perHour": True}
_CLUSTER = {
    "name": False,
    "project": False,
    "region": False,
    "zone": False,
    "kubernetesVersion": True,
    "account": False,
}
_POOL = {
    "name": True,
    "nodeType": False,
    "cpu": True,
    "memory": True,
    "labels": False,
    "taints": False,
}
_TAINT = re.compile(
    r"^[A-Za-z0-9./_-]+(=[A-Za-z0-9._-]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$"
)
_STAGE = {
    "release": True,
    "namespace": True,
    "domain": False,
    "valuesFiles": True,
    "secretsFiles": False,
    "kubeContext": False,
    "requires": False,
    "deployIdentity": False,
}


def _read_pools(r: _Reader, raw: Any) -> tuple[NodePool, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.doc.error(("nodePools",), "must be a list of node pools")
    pools = []
    for i, item in enumerate(raw):
        p = ("nodePools", i)
        r.mapping(item, p, _POOL)
        labels = item.get("labels") or {}
        if not isinstance(labels, dict):
            raise r.doc.error((*p, "labels"), "must be a mapping of node label to value")
        taints = item.get("taints") or []
        if not isinstance(taints, list):
            raise r.doc.error((*p, "taints"), "must be a list of key=value:Effect strings")
        for j, taint in enumerate(taints):
            if not isinstance(taint, str) or not _TAINT.match(taint):
                raise r.doc.error(
                    (*p, "taints", j),
                    f"must be key=value:Effect (Effect: NoSchedule, PreferNoSchedule or "
                    f"NoExecute), got {taint!r}",
                )
        pools.append(
            NodePool(
                name=r.string(item["name"], (*p, "name")),
                cpu=r.quantity(item["cpu"], (*p, "cpu")),  # 15.8 or "15800m"
                memory=r.quantity(item["memory"], (*p, "memory")),
                labels={str(k): str(v) for k, v in labels.items()},
                taints=tuple(taints),
                node_type=(
                    r.string(item["nodeType"], (*p, "nodeType")) if "nodeType" in item else None
                ),
            )
        )
    return tuple(pools)


def _read_prices(r: _Reader, raw: Any, pools: tuple[NodePool, ...]) -> Prices | None:
    """`prices`: currency and hourly price per node type; every price names a pool's type."""
    if raw is None:
        return None
    r.mapping(raw, ("prices",), _PRICES)
    currency = r.string(raw["currency"], ("prices", "currency"))
    table = raw["perHour"]
    if not isinstance(table, dict) or not table:
        raise r.doc.error(("prices", "perHour"), "must map node types to an hourly price")
    types = {pool.node_type for pool in pools if pool.node_type}
    per_hour = {}
    for node_type, price in table.items():
        path = ("prices", "perHour", str(node_type))
        if str(node_type) not in types:
            raise r.doc.error(
                path,
                f"no node pool has nodeType {node_type!r} (node types: "
                f"{', '.join(sorted(types)) or 'none'})",
            )
        per_hour[str(node_type)] = r.number(price, path)
    return Prices(currency=currency, per_hour=per_hour)


def _read_stage(r: _Reader, name: str, raw: Any, base: Path, names: set[str]) -> Stage:
    p: KeyPath = ("stages", name)
    r.string(name, p, pattern=_DNS_LABEL)
    r.mapping(raw, p, _STAGE)
    requires = raw.get("requires")
    if requires is not None:
        r.string(requires, (*p, "requires"))
        if requires not in names:
            raise r.doc.error(
                (*p, "requires"),
                f"names no stage of this deployment: {requires!r} (stages: "
                f"{', '.join(sorted(names))})",
            )
    release = r.string(raw["release"], (*p, "release"), pattern=_DNS_LABEL)
    if len(release) > MAX_RELEASE:
        raise r.doc.error(
            (*p, "release"),
            f"{release!r} has {len(release)} characters; Helm release names are at most "
            f"{MAX_RELEASE}",
        )
    service = f"traefik-{gateway_fullname(release)}"
    if len(service) > 63:
        raise r.doc.error(
            (*p, "release"),
            f"{release!r} is too long: the dask-gateway Service {service!r} would have "
            f"{len(service)} characters, Kubernetes allows 63",
        )
    domain = raw.get("domain")
    if domain is not None:
        _check_domain(r, domain, (*p, "domain"))
    kube_context = raw.get("kubeContext")
    if kube_context is not None:
        r.string(kube_context, (*p, "kubeContext"))
    return Stage(
        name=name,
        release=release,
        namespace=r.string(raw["namespace"], (*p, "namespace"), pattern=_DNS_LABEL),
        domain=domain,
        values_files=r.files(raw["valuesFiles"], (*p, "valuesFiles"), base),
        secrets_files=r.files(raw.get("secretsFiles", []), (*p, "secretsFiles"), base),
        kube_context=kube_context,
        requires=requires,
    )


def _check_domain(r: _Reader, domain: Any, path: KeyPath) -> None:
    """A stage's host name: lower-case DNS labels joined by dots, 253 characters at most."""
    r.string(domain, path)
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_DNS_LABEL.match(x) for x in labels):
        raise r.doc.error(
            path,
            f"{domain!r} is not a DNS name: dot-separated labels, each {_DNS_LABEL_RULE}, "
            "253 characters in all (no scheme, port or path)",
        )


def _check_stages(doc: Document, stages: dict[str, Stage]) -> None:
    """Stage-to-stage rules: distinct releases, and `requires` without cycles."""
    seen: dict[tuple[str, str, str | None], str] = {}
    for stage in stages.values():
        key = (stage.release, stage.namespace, stage.kube_context)
        if key in seen:
            raise doc.error(
                ("stages", stage.name, "release"),
                f"stages {seen[key]!r} and {stage.name!r} are the same Helm release "
                f"({stage.release!r} in namespace {stage.namespace!r}): one would overwrite "
                "the other",
            )
        seen[key] = stage.name
    for stage in stages.values():
        chain = [stage.name]
        while (nxt := stages[chain[-1]].requires) is not None:
            if nxt in chain:
                raise doc.error(
                    ("stages", stage.name, "requires"),
                    f"`requires` forms a cycle: {' -> '.join([*chain, nxt])}; no stage "
                    "could ever be deployed",
                )
            chain.append(nxt)


def parse_deployment(doc: Document) -> Deployment:
    """Build a Deployment from a loaded deployment.yaml, or raise ConfigError."""
    r = _Reader(doc)
    raw = r.mapping(doc.data, (), _TOP)
    base = doc.path.parent
    name = r.string(raw["name"], ("name",), pattern=_DNS_LABEL)
    if name != base.name:
        raise doc.error(("name",), f"must match its directory name {base.name!r}, got {name!r}")
    cloud = r.string(raw["cloud"], ("cloud",), choices=CLOUDS)
    cluster = r.mapping(
        raw.get("cluster") or {"kubernetesVersion": DEFAULT_KUBERNETES_VERSION},
        ("cluster",),
        _CLUSTER,
    )
    version = kubernetes_version(doc, cluster["kubernetesVersion"])
    stages_raw = raw["stages"]
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise doc.error(("stages",), "must map at least one stage name to its settings")
    names = set(stages_raw)
    stages = {str(s): _read_stage(r, str(s), v, base, names) for s, v in stages_raw.items()}
    identities = {
        name: read_identity(doc, ("stages", name), stages_raw[name], cloud, cluster)
        for name in stages
    }
    check_distinct(doc, identities)
    stages = {n: dataclasses.replace(st, deploy_identity=identities[n]) for n, st in stages.items()}
    _check_stages(doc, stages)
    support = read_support(r, raw.get("support"), base, stages)
    pools = _read_pools(r, raw.get("nodePools"))
    return Deployment(
        name=name,
        cloud=cloud,
        directory=base,
        cluster=dict(cluster),
        kubernetes_version=version,
        node_pools=pools,
        stages=stages,
        source=doc,
        support=support,
        prices=_read_prices(r, raw.get("prices"), pools),
    )


def list_deployments(paths: Paths | None = None) -> list[str]:
    """Names of all deployments (directories with a deployment.yaml), sorted."""
    paths = paths or Paths.discover()
    return sorted(p.parent.name for p in paths.deployments.glob("*/deployment.yaml"))


def load_deployment(name: str, paths: Paths | None = None) -> Deployment:
    """Load and check `deployments/<name>/deployment.yaml`."""
    paths = paths or Paths.discover()
    file = paths.deployments / name / "deployment.yaml"
    if not file.is_file():
        known = ", ".join(list_deployments(paths)) or "none"
        raise ConfigError(f"unknown deployment {name!r} (known: {known})", file=file)
    doc = load_yaml(file)
    if doc.data is None:
        raise ConfigError(
            "empty deployment.yaml: it should name the deployment and its cloud and map "
            "stages to their release, namespace and valuesFiles (see deployments/local/)",
            file=file,
        )
    return parse_deployment(doc)
