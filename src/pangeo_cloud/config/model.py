"""The typed model of `deployments/<name>/deployment.yaml`.

A deployment is one hub federation member (a cloud, a cluster) with named stages
(staging, prod, ...), each a Helm release in a namespace fed by an ordered list
of values files. Unknown keys are errors: a typo must not silently do nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.paths import Paths
from pangeo_cloud.config.yamlpos import Document, KeyPath, load_yaml

CLOUDS = ("gcp", "aws", "local")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|K|M|G|T|k)?$")
_UNITS = {
    None: 1,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_quantity(value: Any) -> float:
    """Bytes in a Kubernetes quantity ("8G", "7.5Gi", 1e9); ValueError if not one."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r} (use e.g. 8G, 7.5Gi)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class NodePool:
    """A pool of nodes user servers or Dask pods may land on, with its allocatable size."""

    name: str
    cpu: float
    memory: float  # bytes
    labels: dict[str, str]
    # Node taints as key=value:Effect; only pods that tolerate them land there.
    taints: tuple[str, ...] = ()


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
            raise self.doc.error(
                path, f"{value!r} is not a valid DNS label (lower-case letters, digits, '-')"
            )
        return value

    def number(self, value: Any, path: KeyPath) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.doc.error(path, f"must be a positive number, got {value!r}")
        return float(value)

    def quantity(self, value: Any, path: KeyPath) -> float:
        try:
            return parse_quantity(value)
        except ValueError as exc:
            raise self.doc.error(path, str(exc)) from None

    def files(self, value: Any, path: KeyPath, base: Path) -> tuple[Path, ...]:
        if not isinstance(value, list):
            raise self.doc.error(path, "must be a list of file paths relative to the deployment")
        out = []
        for index, item in enumerate(value):
            rel = self.string(item, (*path, index))
            target = base / rel
            if not target.is_file():
                raise self.doc.error((*path, index), f"file not found: {target}")
            out.append(target)
        return tuple(out)


_TOP = {"name": True, "cloud": True, "cluster": False, "nodePools": False, "stages": True}
_CLUSTER = {
    "name": False,
    "project": False,
    "region": False,
    "zone": False,
    "kubernetesVersion": True,
    "account": False,
}
_POOL = {"name": True, "cpu": True, "memory": True, "labels": False, "taints": False}
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
                cpu=r.number(item["cpu"], (*p, "cpu")),
                memory=r.quantity(item["memory"], (*p, "memory")),
                labels={str(k): str(v) for k, v in labels.items()},
                taints=tuple(taints),
            )
        )
    return tuple(pools)


def _read_stage(r: _Reader, name: str, raw: Any, base: Path, names: set[str]) -> Stage:
    p: KeyPath = ("stages", name)
    r.mapping(raw, p, _STAGE)
    requires = raw.get("requires")
    if requires is not None and requires not in names:
        raise r.doc.error((*p, "requires"), f"names no stage of this deployment: {requires!r}")
    return Stage(
        name=name,
        release=r.string(raw["release"], (*p, "release"), pattern=_DNS_LABEL),
        namespace=r.string(raw["namespace"], (*p, "namespace"), pattern=_DNS_LABEL),
        domain=raw.get("domain"),
        values_files=r.files(raw["valuesFiles"], (*p, "valuesFiles"), base),
        secrets_files=r.files(raw.get("secretsFiles", []), (*p, "secretsFiles"), base),
        kube_context=raw.get("kubeContext"),
        requires=requires,
    )


def parse_deployment(doc: Document) -> Deployment:
    """Build a Deployment from a loaded deployment.yaml, or raise ConfigError."""
    r = _Reader(doc)
    raw = r.mapping(doc.data, (), _TOP)
    base = doc.path.parent
    name = r.string(raw["name"], ("name",), pattern=_DNS_LABEL)
    if name != base.name:
        raise doc.error(("name",), f"must match its directory name {base.name!r}, got {name!r}")
    cloud = r.string(raw["cloud"], ("cloud",), choices=CLOUDS)
    cluster = r.mapping(raw.get("cluster") or {"kubernetesVersion": "1.33"}, ("cluster",), _CLUSTER)
    version = str(cluster["kubernetesVersion"])
    if not re.match(r"^1\.\d+$", version):
        raise doc.error(("cluster", "kubernetesVersion"), f"must look like 1.33, got {version!r}")
    stages_raw = raw["stages"]
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise doc.error(("stages",), "must map at least one stage name to its settings")
    names = set(stages_raw)
    stages = {str(s): _read_stage(r, str(s), v, base, names) for s, v in stages_raw.items()}
    return Deployment(
        name=name,
        cloud=cloud,
        directory=base,
        cluster=dict(cluster),
        kubernetes_version=version,
        node_pools=_read_pools(r, raw.get("nodePools")),
        stages=stages,
        source=doc,
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
    return parse_deployment(load_yaml(file))
