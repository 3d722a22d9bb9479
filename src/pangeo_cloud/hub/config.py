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

from pangeo_cloud.scratch import ScratchConfigError, check_scratch_settings


class HubConfigError(ValueError):
    """The values cannot make a working hub; the message names the key."""


CONFIG_ERRORS = (HubConfigError, ScratchConfigError)


def settings(get_config: Callable[..., Any]) -> dict[str, Any]:
    """``custom.pangeo`` as a dict (empty if unset)."""
    value = get_config("custom.pangeo", {}) or {}
    if not isinstance(value, dict):
        raise HubConfigError(f"jupyterhub.custom.pangeo must be a mapping, got {value!r}")
    return value


def configure(c: Any, get_config: Callable[..., Any]) -> None:
    """Apply scratch env, GitHub login, refusal page, profile rules, usage metrics to ``c``."""
    from pangeo_cloud.hub.auth import configure_auth
    from pangeo_cloud.hub.metrics import register_usage_metrics
    from pangeo_cloud.hub.nudges import configure_nudges
    from pangeo_cloud.hub.profiles import configure_profiles
    from pangeo_cloud.hub.spawn import configure_spawn

    pangeo = settings(get_config)
    scratch = pangeo.get("scratch") or {}
    check_scratch_settings(scratch)  # raises ScratchConfigError: the hub must not start
    configure_auth(c, get_config, pangeo.get("auth") or {})
    configure_profiles(c, get_config)
    configure_spawn(c, scratch)
    register_usage_metrics(get_config("singleuser.profileList", None))
    configure_nudges(c, pangeo.get("usage") or {})
