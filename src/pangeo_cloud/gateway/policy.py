"""The gateway policy: `jupyterhub.custom.pangeo.gateway` read and checked once.

Every problem in the settings is reported with its key path when the gateway
starts (a crash-looping gateway pod with a clear message beats clusters that
silently ignore a limit). Missing keys take the defaults of the chart's
values.yaml, so a partial `gateway` block is fine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pangeo_cloud.scratch import check_scratch_settings

GIB = 2**30
PREFIX = "jupyterhub.custom.pangeo"

# The chart's defaults (helm-chart/pangeo-cloud/values.yaml), used for missing keys.
DEFAULT_IDLE_TIMEOUT = 3600
DEFAULT_WORKER_CORES = {"min": 1, "max": 8, "default": 2}
DEFAULT_WORKER_MEMORY_GIB = {"min": 1, "max": 32, "default": 8}
DEFAULT_LIMITS = {"clusterMaxCores": 80, "clusterMaxMemoryGiB": 320, "clusterMaxWorkers": 40}
LIMIT_KEYS = tuple(DEFAULT_LIMITS)
# Per-user totals over all of a user's running clusters (schedulers included).
DEFAULT_USER_LIMITS = {
    "userMaxClusters": 4,
    "userMaxCores": 100,
    "userMaxMemoryGiB": 400,
    "userMaxWorkers": 50,
}
USER_LIMIT_KEYS = tuple(DEFAULT_USER_LIMITS)
GROUP_KEYS = LIMIT_KEYS + USER_LIMIT_KEYS
_INTEGER_KEYS = ("clusterMaxWorkers", "userMaxClusters", "userMaxWorkers")
DEFAULT_STOP_WITH_SERVER = True
DEFAULT_SERVER_CHECK_SECONDS = 30


class GatewaySettingsError(ValueError):
    """`jupyterhub.custom.pangeo.gateway` (or `.scratch`) cannot be used."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any, path: str, *, integer: bool = False, minimum: float = 0) -> float:
    if integer and not (isinstance(value, int) and not isinstance(value, bool)):
        raise GatewaySettingsError(f"{PREFIX}.{path} must be an integer, got {value!r}")
    if not _is_number(value):
        raise GatewaySettingsError(f"{PREFIX}.{path} must be a number, got {value!r}")
    if value < minimum:
        raise GatewaySettingsError(f"{PREFIX}.{path} must be >= {minimum:g}, got {value!r}")
    return value


def _mapping(value: Any, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GatewaySettingsError(f"{PREFIX}.{path} must be a mapping, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Bounds:
    """Inclusive bounds and default of a user-facing option."""

    min: float
    max: float
    default: float

    @classmethod
    def from_settings(cls, value: Any, defaults: dict, path: str, *, integer: bool) -> Bounds:
        value = _mapping(value, path)
        unknown = sorted(set(value) - {"min", "max", "default"})
        if unknown:
            raise GatewaySettingsError(
                f"{PREFIX}.{path}: unknown key(s) {unknown}; expected min, max, default"
            )
        merged = {**defaults, **value}
        smallest = 1 if integer else 0
        got = {
            key: _number(merged[key], f"{path}.{key}", integer=integer, minimum=smallest)
            for key in ("min", "max", "default")
        }
        if not integer and got["min"] <= 0:
            raise GatewaySettingsError(f"{PREFIX}.{path}.min must be > 0, got {got['min']!r}")
        if not got["min"] <= got["default"] <= got["max"]:
            raise GatewaySettingsError(
                f"{PREFIX}.{path}: need min <= default <= max, got "
                f"min={got['min']:g}, default={got['default']:g}, max={got['max']:g}"
            )
        return cls(**got)


@dataclass(frozen=True)
class Limits:
    """Per-cluster caps; None means unlimited."""

    cores: float | None
    memory_gib: float | None
    workers: int | None

    def cluster_config(self) -> dict[str, Any]:
        """The ClusterConfig trait values."""
        return {
            "cluster_max_cores": None if self.cores is None else float(self.cores),
            "cluster_max_memory": (None if self.memory_gib is None else int(self.memory_gib * GIB)),
            "cluster_max_workers": self.workers,
        }


@dataclass(frozen=True)
class UserLimits:
    """Caps on the sum over all of one user's running clusters; None means unlimited."""

    clusters: int | None
    cores: float | None
    memory_gib: float | None
    workers: int | None

    @property
    def unlimited(self) -> bool:
        return all(v is None for v in (self.clusters, self.cores, self.memory_gib, self.workers))


def _limit(value: Any, path: str, key: str) -> float | int | None:
    if value is None:
        return None
    return _number(value, path, integer=key in _INTEGER_KEYS)


def _most_generous(values: list) -> float | int | None:
    return None if any(v is None for v in values) else max(values)


@dataclass(frozen=True)
class Policy:
    """What the options handler enforces, from the deployment's settings."""

    worker_cores: Bounds
    worker_memory_gib: Bounds
    # Seconds; the default and the most a user may ask for. 0 = no idle timeout.
    idle_timeout: float
    limits: Limits
    # group -> {settings key: value} (only the keys the group sets).
    group_limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Default cluster image ("" = keep the backend's configured image).
    image: str = ""
    # Patterns of the images users may ask for (pangeo_cloud.gateway.images).
    image_allowlist: tuple[str, ...] = ()
    scratch: dict[str, Any] = field(default_factory=dict)
    user_limits: UserLimits = UserLimits(None, None, None, None)
    # Stop a user's clusters (except kept ones) when they have no running server.
    stop_with_server: bool = DEFAULT_STOP_WITH_SERVER
    server_check_seconds: float = DEFAULT_SERVER_CHECK_SECONDS

    @classmethod
    def from_settings(cls, settings: dict | None) -> Policy:
        """Read `jupyterhub.custom.pangeo`; raise GatewaySettingsError on bad values."""
        settings = _mapping(settings, "(root)") if settings is not None else {}
        gateway = _mapping(settings.get("gateway"), "gateway")
        scratch = _mapping(settings.get("scratch"), "scratch")
        try:
            check_scratch_settings(scratch)
        except ValueError as exc:
            raise GatewaySettingsError(str(exc)) from None

        idle = gateway.get("idleTimeout", DEFAULT_IDLE_TIMEOUT)
        idle = _number(idle, "gateway.idleTimeout")

        limits = {}
        for key, default in {**DEFAULT_LIMITS, **DEFAULT_USER_LIMITS}.items():
            limits[key] = _limit(gateway.get(key, default), f"gateway.{key}", key)

        groups = {}
        for group, entry in _mapping(gateway.get("groupLimits"), "gateway.groupLimits").items():
            path = f"gateway.groupLimits.{group}"
            entry = _mapping(entry, path)
            unknown = sorted(set(entry) - set(GROUP_KEYS))
            if unknown:
                raise GatewaySettingsError(
                    f"{PREFIX}.{path}: unknown key(s) {unknown}; expected any of "
                    f"{', '.join(GROUP_KEYS)}"
                )
            groups[str(group)] = {k: _limit(v, f"{path}.{k}", k) for k, v in entry.items()}

        image = gateway.get("image") or ""
        if not isinstance(image, str):
            raise GatewaySettingsError(f"{PREFIX}.gateway.image must be a string, got {image!r}")
        allowlist = gateway.get("imageAllowlist") or []
        if not isinstance(allowlist, list) or not all(isinstance(p, str) for p in allowlist):
            raise GatewaySettingsError(
                f"{PREFIX}.gateway.imageAllowlist must be a list of image patterns, "
                f"got {allowlist!r}"
            )
        stop_with_server = gateway.get("stopClustersWithServer", DEFAULT_STOP_WITH_SERVER)
        if not isinstance(stop_with_server, bool):
            raise GatewaySettingsError(
                f"{PREFIX}.gateway.stopClustersWithServer must be true or false, "
                f"got {stop_with_server!r}"
            )
        check = gateway.get("serverCheckSeconds", DEFAULT_SERVER_CHECK_SECONDS)
        check = _number(check, "gateway.serverCheckSeconds", minimum=1)

        return cls(
            worker_cores=Bounds.from_settings(
                gateway.get("workerCores"),
                DEFAULT_WORKER_CORES,
                "gateway.workerCores",
                integer=True,
            ),
            worker_memory_gib=Bounds.from_settings(
                gateway.get("workerMemoryGiB"),
                DEFAULT_WORKER_MEMORY_GIB,
                "gateway.workerMemoryGiB",
                integer=False,
            ),
            idle_timeout=idle,
            limits=Limits(
                cores=limits["clusterMaxCores"],
                memory_gib=limits["clusterMaxMemoryGiB"],
                workers=limits["clusterMaxWorkers"],
            ),
            group_limits=groups,
            image=image,
            image_allowlist=tuple(allowlist),
            scratch=dict(scratch),
            user_limits=UserLimits(
                clusters=limits["userMaxClusters"],
                cores=limits["userMaxCores"],
                memory_gib=limits["userMaxMemoryGiB"],
                workers=limits["userMaxWorkers"],
            ),
            stop_with_server=stop_with_server,
            server_check_seconds=check,
        )

    def _chosen(self, groups, keys: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
        """For each key: the user's groups that set it replace the default; most generous wins."""
        member = [self.group_limits[g] for g in sorted(set(groups)) if g in self.group_limits]
        chosen = {}
        for key in keys:
            values = [entry[key] for entry in member if key in entry]
            chosen[key] = _most_generous(values) if values else defaults[key]
        return chosen

    def user_limits_for(self, groups) -> UserLimits:  # any iterable of names
        """The per-user totals for a member of `groups` (as :meth:`limits_for`)."""
        u = self.user_limits
        defaults = {
            "userMaxClusters": u.clusters,
            "userMaxCores": u.cores,
            "userMaxMemoryGiB": u.memory_gib,
            "userMaxWorkers": u.workers,
        }
        chosen = self._chosen(groups, USER_LIMIT_KEYS, defaults)
        return UserLimits(
            clusters=chosen["userMaxClusters"],
            cores=chosen["userMaxCores"],
            memory_gib=chosen["userMaxMemoryGiB"],
            workers=chosen["userMaxWorkers"],
        )

    def limits_for(self, groups) -> Limits:  # any iterable of names
        """The caps for a member of `groups`.

        For each cap, the groups of the user that set it replace the default, and
        the most generous of them wins (unlimited beats any number).
        """
        defaults = {
            "clusterMaxCores": self.limits.cores,
            "clusterMaxMemoryGiB": self.limits.memory_gib,
            "clusterMaxWorkers": self.limits.workers,
        }
        chosen = self._chosen(groups, LIMIT_KEYS, defaults)
        return Limits(
            cores=chosen["clusterMaxCores"],
            memory_gib=chosen["clusterMaxMemoryGiB"],
            workers=chosen["clusterMaxWorkers"],
        )
