"""The JupyterHub configuration of `pangeo-cloud up`, built the way z2jh builds it.

The hub runs ``jupyterhub -f <data>/run/jupyterhub_config.py``, a two-line file
written by :mod:`pangeo_cloud.local.runtime` that calls
:func:`configure_local_hub` with the runtime file (0600: it holds the
passwords). The order is z2jh's:

1. fixed settings: addresses, database, cookie secret, the proxy, the spawner;
2. the chart values mapped to traitlets as z2jh maps them
   (:func:`pangeo_cloud.hub.z2jh_values.apply_z2jh_values`, with
   ``get_config`` over the same merged values Helm receives);
3. our ``z2jh_entry.py``, executed exactly as z2jh executes it in the cluster
   (``c`` and ``get_config`` as globals): the same hook code, the same order;
4. what only exists locally: the KubeSpawner settings (profiles, environment,
   resources, hooks) handed to :class:`PangeoLocalSpawner`, the gateway as a
   hub-managed service, and the login (shared password or GitHub).

The values that name cluster addresses (scratch endpoint, gateway URLs) were
already replaced with loopback addresses by the runtime before it wrote them.
"""

from __future__ import annotations

import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from pangeo_cloud.hub.z2jh_values import apply_z2jh_values, values_get_config
from pangeo_cloud.local.monitoring import USAGE_SERVICE, usage_environment
from pangeo_cloud.local.runinfo import RunInfo
from pangeo_cloud.local.spawner import PangeoLocalSpawner

SPAWNER = f"{PangeoLocalSpawner.__module__}.{PangeoLocalSpawner.__name__}"
GATEWAY_SERVICE = "dask-gateway"
BROKER_SERVICE = "scratch-credentials"

# What z2jh maps to KubeSpawner and a local process can honour.
KUBESPAWNER_TO_LOCAL = (
    "profile_list",
    "options_from_form",
    "options_form",
    "environment",
    "cpu_limit",
    "cpu_guarantee",
    "mem_limit",
    "mem_guarantee",
    "image",
    "pre_spawn_hook",
    "apply_user_options",
    "default_url",
    "server_token_scopes",
)

# The server role's scopes (JupyterHub 5) plus the gateway: the token a notebook
# server gets must reach the gateway, which checks this scope.
SERVER_TOKEN_SCOPES = [
    "users:activity!user",
    "access:servers!server",
    f"access:services!service={GATEWAY_SERVICE}",
    f"access:services!service={BROKER_SERVICE}",
    "read:users:name!user",
    "read:users:groups!user",
]


def entry_script() -> Path:
    """src/pangeo_cloud/hub/z2jh_entry.py of the installed package."""
    spec = find_spec("pangeo_cloud.hub")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pangeo_cloud.hub is not importable")
    return Path(next(iter(spec.submodule_search_locations))) / "z2jh_entry.py"


def run_entry(c: Any, get_config: Any) -> None:
    """Execute z2jh_entry.py as z2jh does: a namespace with ``c`` and ``get_config``."""
    path = entry_script()
    # In the cluster this names the ConfigMap; locally the package is installed.
    os.environ.pop("PANGEO_CLOUD_HUB_CODE", None)
    namespace = {"c": c, "get_config": get_config, "__file__": str(path), "__name__": "z2jh"}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)


def apply_fixed(c: Any, rt: RunInfo) -> None:
    data = rt.data_dir
    ports = rt.ports
    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = ports["public"]
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = ports["hub"]
    c.JupyterHub.db_url = f"sqlite:///{data / 'hub' / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data / "hub" / "cookie_secret")
    c.JupyterHub.pid_file = str(data / "run" / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True
    c.ConfigurableHTTPProxy.should_start = True
    c.ConfigurableHTTPProxy.command = [rt.chp]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ports['proxy_api']}"
    c.ConfigurableHTTPProxy.auth_token = rt.proxy_auth_token
    c.ConfigurableHTTPProxy.pid_file = str(data / "run" / "proxy.pid")
    c.JupyterHub.spawner_class = SPAWNER
    c.PangeoLocalSpawner.homes_directory = str(data / "homes")
    bindir = os.path.dirname(rt.python)
    c.PangeoLocalSpawner.cmd = [os.path.join(bindir, "jupyterhub-singleuser")]
    # Starts are queued (PangeoLocalSpawner.concurrent_starts): the timeout
    # covers the wait for a turn when many users start at once on 2 cores.
    c.Spawner.start_timeout = 900
    c.Spawner.http_timeout = 180
    c.JupyterHub.log_level = rt.log_level


def apply_login(c: Any, rt: RunInfo, get_config: Any) -> None:
    github = rt.github
    if github:
        c.JupyterHub.authenticator_class = "github"
        c.GitHubOAuthenticator.client_id = github.client_id
        c.GitHubOAuthenticator.client_secret = github.client_secret
        c.GitHubOAuthenticator.oauth_callback_url = (
            f"http://127.0.0.1:{rt.ports['public']}/hub/oauth_callback"
        )
        if github.url:
            c.GitHubOAuthenticator.github_url = github.url
        # Admin teams may log in too (their members become admins).
        extra = [*github.allowed_organizations, *github.admin_teams]
        if extra:
            values = get_config("hub.config.GitHubOAuthenticator.allowed_organizations", []) or []
            c.GitHubOAuthenticator.allowed_organizations = set(values) | set(extra)
        return
    passwords = rt.passwords
    c.JupyterHub.authenticator_class = "shared-password"
    c.SharedPasswordAuthenticator.user_password = passwords.user
    c.SharedPasswordAuthenticator.allow_all = True
    if passwords.admin:
        # One admin (the usage page, the admin panel), with a password of its own.
        c.SharedPasswordAuthenticator.admin_users = {rt.admin_user}
        c.SharedPasswordAuthenticator.admin_password = passwords.admin
    groups: dict[str, list[str]] = {}
    for group, password in passwords.groups.items():
        groups.setdefault(password, []).append(group)
    if groups:
        c.SharedPasswordAuthenticator.password_groups = groups
        c.SharedPasswordAuthenticator.manage_groups = True


def hand_to_local_spawner(c: Any) -> None:
    """What z2jh and our hooks put on KubeSpawner, for the local spawner."""
    source = c.KubeSpawner
    target = c.PangeoLocalSpawner
    for name in KUBESPAWNER_TO_LOCAL:
        if name in source and name not in target:
            target[name] = source[name]
    if "server_token_scopes" not in target and "server_token_scopes" not in c.Spawner:
        target.server_token_scopes = SERVER_TOKEN_SCOPES


def apply_services(c: Any, rt: RunInfo) -> None:
    """Make the gateway a hub-managed service (the hub starts and stops it)."""
    services = []
    for service in c.JupyterHub.services:
        service = dict(service)
        if service.get("name") == BROKER_SERVICE:
            broker = rt.broker
            service["command"] = [
                rt.python,
                "-m",
                "pangeo_cloud.broker.service",
                "--config",
                broker.config,
                "--log",
                str(rt.data_dir / "logs" / "broker.log"),
            ]
            service["url"] = f"http://127.0.0.1:{rt.ports['broker']}"
            service["environment"] = {
                "PANGEO_LOCAL_RUN": rt.run_id,
                # The broker's own MinIO user (bucket-only policy), never the root key;
                # no config files: nothing else may change its identity.
                "AWS_ACCESS_KEY_ID": broker.access_key,
                "AWS_SECRET_ACCESS_KEY": broker.secret_key,
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        elif service.get("name") == GATEWAY_SERVICE:
            service["command"] = [rt.python, "-m", "pangeo_cloud.local.gateway", rt.file]
            service["url"] = f"http://127.0.0.1:{rt.ports['gateway']}"
            service["environment"] = {"PANGEO_LOCAL_RUN": rt.run_id}
            service["cwd"] = str(rt.data_dir / "gateway")
        elif service.get("name") == USAGE_SERVICE:
            service["command"] = [rt.python, "-m", "pangeo_cloud.hub.usage_page"]
            service["environment"] = {"PANGEO_LOCAL_RUN": rt.run_id, **usage_environment(rt)}
        elif "command" in service:
            env = dict(service.get("environment") or {})
            env["PANGEO_LOCAL_RUN"] = rt.run_id
            service["environment"] = env
        services.append(service)
    c.JupyterHub.services = services


def configure_local_hub(c: Any, runtime_file: str) -> None:
    """Configure ``c`` for the local hub described by ``runtime_file`` (module docstring)."""
    rt = RunInfo.read(runtime_file)
    values = rt.values["jupyterhub"]
    get_config = values_get_config(values)

    apply_fixed(c, rt)
    hub_api = f"http://127.0.0.1:{rt.ports['hub']}/hub/api"
    apply_z2jh_values(c, get_config, hub_api_url=hub_api)
    apply_login(c, rt, get_config)
    run_entry(c, get_config)
    hand_to_local_spawner(c)
    apply_services(c, rt)
    # The tag lets `pangeo-cloud up` find every process of this run at exit.
    env = dict(c.PangeoLocalSpawner.get("environment", {}) or {})
    env["PANGEO_LOCAL_RUN"] = rt.run_id
    c.PangeoLocalSpawner.environment = env
    print(
        f"pangeo-cloud local hub: {len(c.JupyterHub.services)} services, "
        f"login {c.JupyterHub.authenticator_class}",
        file=sys.stderr,
        flush=True,
    )
