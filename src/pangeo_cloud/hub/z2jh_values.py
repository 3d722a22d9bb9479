"""What z2jh's own hub config does with values, for runtimes without z2jh.

Split of responsibilities (keep it this way):

- **In Kubernetes**, z2jh's ``jupyterhub_config.py`` (inside the k8s-hub image)
  maps ``singleuser.*``, ``hub.config``, ``hub.services``, ``hub.loadRoles`` and
  ``cull.*`` to traitlets config, then executes our ``z2jh_entry.py``, which calls
  :func:`pangeo_cloud.hub.config.configure`. ``configure()`` never repeats that
  mapping; it only adds what z2jh lacks.
- **Locally, in tests and for offline manifests**, nothing does z2jh's part, so
  :func:`apply_z2jh_values` does it here for the keys pangeo-cloud uses (image,
  resources, extraEnv, nodeSelector, serviceAccountName, storage, profileList,
  hub.config passthrough, services, roles, the idle culler). It is written from
  z2jh's documented behaviour and is not called by ``configure()``.

:func:`values_get_config` gives a ``get_config(key, default)`` over a values
mapping with z2jh's semantics (dotted keys relative to the ``jupyterhub:``
subchart values), for the same runtimes.
"""

from __future__ import annotations

import copy
import secrets
import sys
from collections.abc import Callable, Mapping
from typing import Any

_MISSING = object()


def values_get_config(values: Mapping[str, Any]) -> Callable[..., Any]:
    """``get_config("a.b.c", default)`` over z2jh values (a deep copy per call)."""

    def get_config(key: str, default: Any = None) -> Any:
        value: Any = values
        for level in key.split("."):
            if not isinstance(value, Mapping) or level not in value:
                return default
            value = value[level]
        return copy.deepcopy(value)

    return get_config


def _set(section: Any, trait: str, value: Any) -> None:
    if value is not None:
        section[trait] = value


def _env_dict(extra_env: Any) -> dict[str, Any]:
    if isinstance(extra_env, Mapping):
        return dict(extra_env)
    env = {}
    for item in extra_env or []:  # z2jh also accepts a list of EnvVar objects
        if not isinstance(item, Mapping) or "name" not in item:
            continue
        # KubeSpawner takes a mapping value as the EnvVar itself (e.g. valueFrom).
        env[item["name"]] = item["value"] if "value" in item else dict(item)
    return env


def apply_singleuser(c: Any, get_config: Callable[..., Any]) -> None:
    """``singleuser.*`` -> ``KubeSpawner`` traits, as z2jh maps them."""
    ks = c.KubeSpawner
    image = get_config("singleuser.image.name")
    if image:
        tag = get_config("singleuser.image.tag")
        ks.image = f"{image}:{tag}" if tag else image
    for trait, key in (
        ("cpu_guarantee", "cpu.guarantee"),
        ("cpu_limit", "cpu.limit"),
        ("mem_guarantee", "memory.guarantee"),
        ("mem_limit", "memory.limit"),
        ("node_selector", "nodeSelector"),
        ("service_account", "serviceAccountName"),
        ("profile_list", "profileList"),
        ("extra_pod_config", "extraPodConfig"),
        ("uid", "uid"),
        ("fs_gid", "fsGid"),
    ):
        _set(ks, trait, get_config(f"singleuser.{key}"))
    extra_env = get_config("singleuser.extraEnv")
    if extra_env is not None:
        ks.environment = _env_dict(extra_env)

    volumes: dict[str, Any] = {}
    mounts: dict[str, Any] = {}
    if get_config("singleuser.storage.type") == "dynamic":
        _set(ks, "pvc_name_template", get_config("singleuser.storage.dynamic.pvcNameTemplate"))
        ks.storage_pvc_ensure = True
        _set(ks, "storage_class", get_config("singleuser.storage.dynamic.storageClass"))
        _set(
            ks,
            "storage_access_modes",
            get_config("singleuser.storage.dynamic.storageAccessModes", ["ReadWriteOnce"]),
        )
        _set(ks, "storage_capacity", get_config("singleuser.storage.capacity"))
        name = get_config("singleuser.storage.dynamic.volumeNameTemplate", "volume-{user_server}")
        volumes[name] = {"name": name, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
        mount = {
            "mountPath": get_config("singleuser.storage.homeMountPath", "/home/jovyan"),
            "name": name,
        }
        sub_path = get_config("singleuser.storage.dynamic.subPath")
        if sub_path:
            mount["subPath"] = sub_path
        mounts[name] = mount
    ks.volumes = volumes
    ks.volume_mounts = mounts


def apply_hub_config(c: Any, get_config: Callable[..., Any]) -> None:
    """``hub.config.<Section>`` passthrough (section names start upper-case)."""
    for section, cfg in (get_config("hub.config", {}) or {}).items():
        if not section[:1].isupper():
            raise ValueError(f"hub.config section {section!r} must be a Configurable class name")
        c[section].update(cfg or {})


def apply_services_and_roles(c: Any, get_config: Callable[..., Any]) -> None:
    """``hub.services`` (with generated tokens) and ``hub.loadRoles``."""
    services = list(c.JupyterHub.services) if "services" in c.JupyterHub else []
    for name, service in (get_config("hub.services", {}) or {}).items():
        service = dict(service or {})
        service.setdefault("name", name)
        # As z2jh: an explicit token (apiToken or api_token) is kept, else one is generated.
        explicit = service.pop("apiToken", None) or service.get("api_token")
        service["api_token"] = explicit or secrets.token_hex(32)
        services.append(service)
    c.JupyterHub.services = services
    roles = list(c.JupyterHub.load_roles) if "load_roles" in c.JupyterHub else []
    for name, role in (get_config("hub.loadRoles", {}) or {}).items():
        role = dict(role or {})
        role.setdefault("name", name)
        roles.append(role)
    c.JupyterHub.load_roles = roles


def idle_culler(get_config: Callable[..., Any], hub_api_url: str) -> tuple[dict, dict] | None:
    """The idle-culler service and its role for ``cull.*``, or None if disabled."""
    if not get_config("cull.enabled", False):
        return None
    cmd = [sys.executable, "-m", "jupyterhub_idle_culler", f"--url={hub_api_url}"]
    for flag, key in (
        ("--timeout", "timeout"),
        ("--cull-every", "every"),
        ("--concurrency", "concurrency"),
        ("--max-age", "maxAge"),
    ):
        value = get_config(f"cull.{key}")
        if value:
            cmd.append(f"{flag}={value}")
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    if get_config("cull.users"):
        cmd.append("--cull-users")
        scopes.append("admin:users")
    if not get_config("cull.adminUsers", True):
        cmd.append("--cull-admin-users=false")
    if get_config("cull.removeNamedServers"):
        cmd.append("--remove-named-servers")
    service = {"name": "jupyterhub-idle-culler", "command": cmd}
    role = {"name": "jupyterhub-idle-culler", "scopes": scopes, "services": [service["name"]]}
    return service, role


def apply_fixed_settings(c: Any) -> None:
    """z2jh's fixed settings that change what users and API clients see.

    ``slow_spawn_timeout`` 0: the hub answers a spawn request (form or REST)
    as soon as the spawn starts, without waiting up to 10 s for it to finish.
    """
    settings = dict(c.JupyterHub.get("tornado_settings", {}) or {})
    settings["slow_spawn_timeout"] = 0
    c.JupyterHub.tornado_settings = settings


def apply_z2jh_values(
    c: Any, get_config: Callable[..., Any], *, hub_api_url: str | None = None
) -> None:
    """Everything above, in z2jh's order (fixed, singleuser, culler, services, hub.config)."""
    apply_fixed_settings(c)
    apply_singleuser(c, get_config)
    c.JupyterHub.services = []
    c.JupyterHub.load_roles = []
    culler = idle_culler(get_config, hub_api_url or "http://127.0.0.1:8081/hub/api")
    if culler:
        c.JupyterHub.services = [culler[0]]
        c.JupyterHub.load_roles = [culler[1]]
    apply_services_and_roles(c, get_config)
    apply_hub_config(c, get_config)
