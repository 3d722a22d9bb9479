"""runtime.json: what one `pangeo-cloud up` run tells the processes it starts.

:class:`LocalRuntime` writes it (0600: it holds passwords and keys) into the
run directory; the hub's config (:mod:`pangeo_cloud.local.hubconfig`) and the
gateway service (:mod:`pangeo_cloud.local.gateway`) read it back with
:meth:`RunInfo.read`, so both sides agree on one typed shape.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pangeo_cloud.local.datadir import write_private
from pangeo_cloud.local.values import GitHubLogin


@dataclass(frozen=True)
class StoreAccess:
    """The scratch store of this run and its root key (only `up` and tests use it)."""

    kind: str  # "minio" or "moto"
    endpoint: str
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class BrokerAccess:
    """The scratch broker's configuration file and its own store user."""

    config: str
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class Passwords:
    """The shared login password, and one password per restricted group."""

    user: str
    groups: dict[str, str] = field(default_factory=dict)
    admin: str = ""  # the local `admin` user's (usage page, admin panel); none: no admin


@dataclass(frozen=True)
class RunInfo:
    """One run's runtime.json (module docstring)."""

    run_id: str
    data_dir: Path
    python: str
    chp: str
    proxy_auth_token: str
    ports: dict[str, int]
    values: dict[str, Any]
    log_level: str
    store: StoreAccess
    broker: BrokerAccess
    passwords: Passwords
    github: GitHubLogin | None = None
    # The deployment and stage this run serves (the usage metrics' labels), and the
    # URL of its Prometheus ("" when not installed): `pangeo-cloud usage` reads it.
    deployment: str = ""
    stage: str = ""
    prometheus: str = ""
    admin_user: str = "admin"
    file: str = ""  # where it was read from (not written)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["file"]
        data["data_dir"] = str(self.data_dir)
        return data

    def write(self, path: Path) -> None:
        write_private(path, json.dumps(self.as_dict(), indent=1, default=str))

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> RunInfo:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        github = data.get("github")
        return cls(
            run_id=data["run_id"],
            data_dir=Path(data["data_dir"]),
            python=data["python"],
            chp=data["chp"],
            proxy_auth_token=data["proxy_auth_token"],
            ports=data["ports"],
            values=data["values"],
            log_level=data.get("log_level", "INFO"),
            store=StoreAccess(**data["store"]),
            broker=BrokerAccess(**data["broker"]),
            passwords=Passwords(**data["passwords"]),
            github=GitHubLogin(**github) if github else None,
            deployment=data.get("deployment", ""),
            stage=data.get("stage", ""),
            prometheus=data.get("prometheus", ""),
            admin_user=data.get("admin_user", "admin"),
            file=str(path),
        )
