"""The single entry point: apply pangeo-cloud's hub behaviour to a traitlets config.

``configure(c, get_config)`` is called by ``z2jh_entry.py`` in Kubernetes (after
z2jh has mapped the chart values, see :mod:`pangeo_cloud.hub.z2jh_values` for
that split) and by the local runtime and tests with a ``get_config`` over the
same merged values. It reads ``custom.pangeo`` and, where it needs them,
``hub.config.GitHubOAuthenticator`` and ``singleuser.profileList``.

Invalid settings raise :class:`HubConfigError` (or ``ScratchConfigError``, also a
``ValueError``) with one line naming the key; the entry script turns that into
a single FATAL line and a non-zero exit, so the hub refuses to start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pangeo_cloud.hub.auth import configure_auth
from pangeo_cloud.hub.errors import CONFIG_ERRORS, HubConfigError
from pangeo_cloud.hub.metrics import register_usage_metrics
from pangeo_cloud.hub.nudges import configure_nudges
from pangeo_cloud.hub.profiles import configure_profiles
from pangeo_cloud.hub.service_user_api import configure_service_users
from pangeo_cloud.hub.service_users import DEFAULT_ISSUERS, issuer_tokens
from pangeo_cloud.hub.spawn import configure_spawn
from pangeo_cloud.scratch import check_scratch_settings

# Re-exported: the entry script and tests catch them by this module's names.
__all__ = ["CONFIG_ERRORS", "HubConfigError", "configure", "settings"]


def settings(get_config: Callable[..., Any]) -> dict[str, Any]:
    """``custom.pangeo`` as a dict (empty if unset)."""
    value = get_config("custom.pangeo", {}) or {}
    if not isinstance(value, dict):
        raise HubConfigError(f"jupyterhub.custom.pangeo must be a mapping, got {value!r}")
    return value


def configure(c: Any, get_config: Callable[..., Any]) -> None:
    """Apply scratch env, GitHub team login, refusal page, profile rules, the
    throw-away-user endpoint, usage metrics and nudges to ``c``."""
    pangeo = settings(get_config)
    scratch = pangeo.get("scratch") or {}
    check_scratch_settings(scratch)  # raises ScratchConfigError: the hub must not start
    configure_auth(c, get_config, pangeo.get("auth") or {})
    configure_profiles(c, get_config)
    # Throw-away users of the health check are created by the hub itself, so the
    # service needs no admin:users (service_user_api).
    names = (pangeo.get("auth") or {}).get("serviceUserIssuers", DEFAULT_ISSUERS)
    configure_service_users(c, issuer_tokens(c.JupyterHub.get("services", []), names))
    configure_spawn(c, scratch)
    register_usage_metrics(get_config("singleuser.profileList", None))
    configure_nudges(c, pangeo.get("usage") or {})
