"""Hardware profiles offered per user, and the refusal of any other choice.

``singleuser.profileList`` reaches KubeSpawner through z2jh unchanged. We add
one key to a profile, ``allowed_groups: [org:team, ...]``: such a profile is
offered only to members of one of those JupyterHub groups (groups are GitHub
teams, see :mod:`pangeo_cloud.hub.auth`). KubeSpawner 7 accepts a callable
``profile_list`` and evaluates it per user both to render the form and in
``load_user_options``, so :func:`profile_list_for` filters there and a
restricted profile can never be loaded by someone outside its groups.

A choice that names no offered profile is refused before anything starts,
with one sentence for the user:

- from the spawn form: ``options_from_form`` raises, and JupyterHub shows the
  form again with the message (no spawn begins);
- from the REST API (``POST /hub/api/users/<name>/server``): HTTP 400 with the
  same message, before the spawn begins. z2jh sets ``slow_spawn_timeout`` to 0,
  so JupyterHub answers 202 as soon as a spawn *starts*; anything that refuses
  inside the spawn (``apply_user_options``, ``pre_spawn_hook``, KubeSpawner's
  own profile loading) only reaches the log and the server's status. JupyterHub
  has no hook in the request before the spawn, so :func:`refuse_in_api`
  replaces its server API handler with a subclass that checks the profile
  first, then does exactly what JupyterHub does;
- from a stale saved choice (a spawn without options reuses the last ones):
  ``apply_user_options`` (JupyterHub 5.3+, runs before ``pre_spawn_hook`` and
  ``start``) raises an HTTP 400 carrying the same message, and the spawn fails.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

from tornado import web

from pangeo_cloud.hub.errors import HubConfigError

GROUPS_KEY = "allowed_groups"


class ProfileRefused(ValueError):
    """The user asked for a profile they are not offered."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # JupyterHub shows `jupyterhub_message` to the user when it is set.
        self.jupyterhub_message = message


def user_groups(spawner: Any) -> set[str]:
    """Names of the JupyterHub groups of the spawner's user."""
    groups = getattr(spawner.user, "groups", None) or []
    return {getattr(g, "name", g) for g in groups}


def _slugify(display_name: str) -> str:
    # KubeSpawner generates missing slugs from display_name; we only need a
    # stable label for messages, the spawner keeps its own slugs.
    return re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")


def slug_of(profile: dict[str, Any]) -> str:
    return profile.get("slug") or _slugify(profile.get("display_name", ""))


def offered_profiles(profile_list: list[dict[str, Any]], groups: set[str]) -> list[dict[str, Any]]:
    """The profiles this user may choose, without our ``allowed_groups`` key.

    If the user's default profile is not offered, the first offered one becomes
    the default (KubeSpawner needs exactly one default).
    """
    offered = []
    for profile in profile_list or []:
        allowed = profile.get(GROUPS_KEY)
        if allowed and not set(allowed) & groups:
            continue
        profile = copy.deepcopy(profile)
        profile.pop(GROUPS_KEY, None)
        offered.append(profile)
    if offered and not any(p.get("default") for p in offered):
        offered[0]["default"] = True
    return offered


def check_profile(slug: str | None, offered: list[dict[str, Any]]) -> None:
    """Raise :class:`ProfileRefused` unless ``slug`` is empty or offered."""
    if not slug or not offered:
        return
    slugs = [slug_of(p) for p in offered]
    if slug in slugs:
        return
    names = ", ".join(f"{p.get('display_name', slug_of(p))} ({slug_of(p)})" for p in offered)
    raise ProfileRefused(
        f"The server size {str(slug)[:80]!r} is not offered to you; please choose one of: {names}."
    )


def profile_list_for(profile_list: list[dict[str, Any]]) -> Callable[[Any], list[dict[str, Any]]]:
    """A callable ``KubeSpawner.profile_list``: the profiles offered to this user."""

    def pangeo_profile_list(spawner: Any) -> list[dict[str, Any]]:
        return offered_profiles(profile_list, user_groups(spawner))

    pangeo_profile_list.pangeo_profiles = profile_list  # for inspection and tests
    return pangeo_profile_list


def _selected_slug(user_options: Any) -> str | None:
    if not isinstance(user_options, dict):
        return None
    slug = user_options.get("profile")
    if isinstance(slug, list):  # passthrough form data: lists of strings
        slug = slug[0] if slug else None
    return slug if slug is None or isinstance(slug, str) else str(slug)


def options_from_form_for(
    profile_list: list[dict[str, Any]], parse: Callable[..., Any] | None = None
) -> Callable[..., Any]:
    """``Spawner.options_from_form`` that refuses profiles not offered to the user.

    ``parse`` is the spawner's own form parser; by default the spawner class's
    default (KubeSpawner's, which knows profile options), found at call time.
    """

    def pangeo_options_from_form(formdata: dict[str, list[str]], spawner: Any) -> Any:
        slug = (formdata.get("profile") or [None])[0]
        check_profile(slug, offered_profiles(profile_list, user_groups(spawner)))
        parser = parse or _default_parser(spawner)
        if parser is None:
            return formdata
        if "spawner" in inspect.signature(parser).parameters:
            return parser(formdata, spawner=spawner)
        return parser(formdata)

    return pangeo_options_from_form


def _default_parser(spawner: Any) -> Callable[..., Any] | None:
    """The spawner class's default ``options_from_form`` (ours replaced it)."""
    if "options_from_form" not in spawner.traits():
        return None
    return spawner.trait_defaults("options_from_form")


def apply_user_options_for(
    profile_list: list[dict[str, Any]], previous: Callable[..., Any] | None = None
) -> Callable[..., Any]:
    """``Spawner.apply_user_options``: refuse (HTTP 400) a profile not offered."""

    async def pangeo_apply_user_options(spawner: Any, user_options: dict[str, Any]) -> None:
        try:
            check_profile(
                _selected_slug(user_options), offered_profiles(profile_list, user_groups(spawner))
            )
        except ProfileRefused as e:
            spawner.log.warning("Refusing spawn for %s: %s", spawner.user.name, e)
            error = web.HTTPError(400, str(e))
            error.jupyterhub_message = str(e)
            raise error from None
        if previous is not None:
            result = previous(spawner, user_options)
            if inspect.isawaitable(result):
                await result

    return pangeo_apply_user_options


def refuse_in_api(profile_list: list[dict[str, Any]]) -> bool:
    """Check the profile in JupyterHub's server API handler, before any spawn starts.

    Must run while the hub loads its config (before it builds its handlers).
    Returns False, leaving JupyterHub's handler in place, if this JupyterHub has
    no ``UserServerAPIHandler`` in ``jupyterhub.apihandlers.default_handlers``;
    the refusal then still happens, inside the spawn.
    """
    # Imported here, not at the top: jupyterhub.apihandlers pulls in the hub's whole
    # web application, which only this wiring step needs.
    from jupyterhub import apihandlers
    from jupyterhub.apihandlers.users import UserServerAPIHandler
    from jupyterhub.scopes import needs_scope

    class ProfileCheckingServerAPIHandler(UserServerAPIHandler):
        """JupyterHub's handler, refusing a profile not offered with 400 first."""

        pangeo_profiles = profile_list

        @needs_scope("servers")
        async def post(self, user_name: str, server_name: str = "") -> None:
            user = self.find_user(user_name)
            options = self.get_json_body() if self.request.body else None
            if user is not None and isinstance(options, dict):
                spawner = user.get_spawner(server_name, replace_failed=True)
                try:
                    check_profile(
                        _selected_slug(options),
                        offered_profiles(self.pangeo_profiles, user_groups(spawner)),
                    )
                except ProfileRefused as e:
                    self.log.warning("Refusing spawn for %s: %s", user_name, e)
                    raise web.HTTPError(400, str(e)) from None
            await super().post(user_name, server_name)

    replaced = False
    for i, (pattern, handler, *rest) in enumerate(apihandlers.default_handlers):
        if handler is UserServerAPIHandler or getattr(handler, "pangeo_profiles", None):
            apihandlers.default_handlers[i] = (pattern, ProfileCheckingServerAPIHandler, *rest)
            replaced = True
    return replaced


def configure_profiles(c: Any, get_config: Callable[..., Any]) -> None:
    """Wire the group filter and the refusals for ``singleuser.profileList``."""
    profile_list = get_config("singleuser.profileList", None)
    if not profile_list:
        return
    from pangeo_cloud.hub.costs import annotate_profiles

    # The nudge: each size's relative cost, from the generated price table.
    profile_list = annotate_profiles(profile_list, get_config("custom.pangeo.costs", None))
    for i, profile in enumerate(profile_list):
        groups = profile.get(GROUPS_KEY)
        if groups is not None and (
            not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)
        ):
            raise HubConfigError(
                f"jupyterhub.singleuser.profileList[{i}].{GROUPS_KEY} must be a list of "
                f"group names (org:team-slug), got {groups!r}"
            )
    c.KubeSpawner.profile_list = profile_list_for(profile_list)
    c.KubeSpawner.options_from_form = options_from_form_for(profile_list)
    if not refuse_in_api(profile_list):
        logging.getLogger("pangeo_cloud").warning(
            "JupyterHub's server API handler was not found: a profile not offered is "
            "refused inside the spawn (202, then a failed server), not with 400"
        )
    previous = c.Spawner.get("apply_user_options", None)
    if callable(previous):
        c.Spawner.apply_user_options = apply_user_options_for(profile_list, previous)
    elif previous is None:
        c.Spawner.apply_user_options = apply_user_options_for(profile_list)
    else:
        raise HubConfigError(
            "Spawner.apply_user_options is already set to a mapping; pangeo-cloud "
            "needs it to check profiles, so set a callable instead"
        )
