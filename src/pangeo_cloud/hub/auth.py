"""GitHub team login: who gets in, who is admin, and what a refused user sees.

Everything that upstream OAuthenticator 17 already does is configured, not
re-implemented:

- ``GitHubOAuthenticator.allowed_organizations`` (``org:team-slug`` entries, set
  in ``hub.config`` by each deployment) decides who may log in; the membership is
  checked against GitHub's API at every login, and again at every auth refresh
  (``recheck_membership``), so a user removed from a team loses access within
  ``auth_refresh_age``. Existing users are not let in on their own
  (``allow_existing_users`` stays False).
- ``populate_teams_in_auth_state`` stores the user's teams in ``auth_state``;
  ``auth_state_groups_key`` (a callable, below) turns them into group names
  ``org:team-slug``, and ``Authenticator.manage_groups`` makes them JupyterHub
  groups (profiles and gateway limits are restricted by group).
- ``admin_groups`` (from ``custom.pangeo.auth.adminTeams``) makes members of those
  teams admins, and revokes admin from users who left them.

Ours is only the wording: ``custom_403_message`` says why the user was refused
and where to ask, and a ``403.html`` template (written at startup into a
directory added to ``JupyterHub.template_paths``, because the hub-code ConfigMap
carries only ``*.py`` files) renders it with a link.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from pangeo_cloud.hub.errors import HubConfigError
from pangeo_cloud.hub.service_users import DEFAULT_ISSUERS, issuer_tokens, ticket_issuer

# The error template for 403 responses. JupyterHub looks for "<status>.html"
# before "error.html"; "templates/error.html" is JupyterHub's own page (its
# template loader exposes the built-in templates under the "templates/" prefix).
TEMPLATE_403 = """\
{% extends "templates/error.html" %}
{% block h1_error %}
  <h1>Access denied</h1>
{% endblock h1_error %}
{% block error_detail %}
  <p class="pangeo-refusal">{{ message }}</p>
  {% if pangeo_access_help_url %}
  <p class="pangeo-access-help">To ask for access, use
    <a href="{{ pangeo_access_help_url }}">{{ pangeo_access_help_url }}</a>.</p>
  {% endif %}
{% endblock error_detail %}
"""

TEMPLATES = {"403.html": TEMPLATE_403}


def team_name(team: dict[str, Any]) -> str | None:
    """``org:team-slug`` for one team object of GitHub's ``GET /user/teams``."""
    org = (team.get("organization") or {}).get("login")
    slug = team.get("slug")
    if not org or not slug:
        return None
    return f"{org}:{slug}"


def teams_to_groups(
    auth_state: dict[str, Any] | None, orgs: Iterable[str] | None = None
) -> list[str]:
    """The JupyterHub group names for the teams stored in ``auth_state``.

    Only teams of the organizations in ``orgs`` become groups (the hub has no
    business knowing about a user's unrelated organizations); ``None`` keeps all.
    GitHub compares organization logins case-insensitively, and so do we.
    """
    wanted = None if orgs is None else {org.lower() for org in orgs}
    groups = set()
    for team in (auth_state or {}).get("teams") or []:
        name = team_name(team)
        if name is None:
            continue
        if wanted is not None and name.split(":", 1)[0].lower() not in wanted:
            continue
        groups.add(name)
    return sorted(groups)


def groups_key(orgs: Iterable[str] | None) -> Callable[[dict[str, Any]], list[str]]:
    """A callable for ``OAuthenticator.auth_state_groups_key``."""
    orgs = None if orgs is None else sorted(set(orgs))

    def auth_state_teams_to_groups(auth_state: dict[str, Any]) -> list[str]:
        return teams_to_groups(auth_state, orgs)

    return auth_state_teams_to_groups


def refusal_message(allowed: Iterable[str]) -> str:
    """The one sentence a refused user reads (the page adds the help link)."""
    teams = ", ".join(sorted(allowed))
    if not teams:
        return "Sorry, no GitHub team is allowed to use this hub yet, so you cannot log in."
    return (
        "Sorry, your GitHub account is not a member of any GitHub team allowed "
        f"to use this hub ({teams}), so you cannot log in."
    )


async def recheck_membership(
    authenticator: Any, user: Any, auth_state: dict | None, issuers: dict[str, str] | None = None
) -> Any:
    """``refresh_user_hook``: a user removed from the allowed teams is logged out.

    OAuthenticator checks ``allowed_organizations`` only at login; its refresh
    (every ``auth_refresh_age`` seconds, and before each spawn) renews the token
    and groups but lets the user stay. This asks GitHub again with the user's
    token, through the authenticator's own ``check_allowed``: ``False`` forces a
    new login (which refuses them), ``None`` lets the normal refresh go on.

    The one exception is a throw-away user carrying a valid ticket of a service
    in ``issuers`` (:mod:`pangeo_cloud.hub.service_users`): it never logged in,
    so there is nothing to re-check; ``True`` keeps it as it is.
    """
    issuer = ticket_issuer(auth_state, user.name, issuers or {})
    if issuer is not None:
        authenticator.log.info("%s is a throw-away user of service %s", user.name, issuer)
        return True
    if not authenticator.allowed_organizations:
        return None
    model = {"name": user.name, "admin": None, "auth_state": auth_state or {}}
    try:
        allowed = await authenticator.check_allowed(user.name, model)
    except (KeyError, TypeError):
        # No token in auth_state (e.g. state from before enable_auth_state, or a
        # user created through the API without a valid ticket).
        return False
    if not allowed:
        authenticator.log.warning(
            "%s is no longer in an allowed GitHub team: their login has ended", user.name
        )
        return False
    return None


def membership_recheck(issuers: dict[str, str]) -> Callable[..., Any]:
    """A ``refresh_user_hook`` that knows the tokens of the ticket-issuing services."""
    issuers = dict(issuers)

    async def pangeo_recheck_membership(authenticator: Any, user: Any, auth_state: Any) -> Any:
        return await recheck_membership(authenticator, user, auth_state, issuers)

    return pangeo_recheck_membership


def _orgs(entries: Iterable[str]) -> set[str]:
    return {entry.split(":", 1)[0] for entry in entries if entry}


def write_templates(directory: str | None = None) -> str:
    """Write our page templates into ``directory`` (a new temporary one by default).

    A temporary directory is removed when the hub process exits, so restarts
    leave nothing behind.
    """
    if directory is None:
        directory = tempfile.mkdtemp(prefix="pangeo-cloud-templates-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for name, text in TEMPLATES.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write(text)
    return directory


def _configured(section: Any, name: str, default: Any = None) -> Any:
    """A value already present in a traitlets config section, or ``default``."""
    return section.get(name, default)


def configure_auth(c: Any, get_config: Callable[..., Any], auth: dict[str, Any]) -> None:
    """Apply the GitHub team login settings to the traitlets config ``c``."""
    github = get_config("hub.config.GitHubOAuthenticator", {}) or {}
    allowed = set(github.get("allowed_organizations") or [])
    # What an earlier config file (or a test) already set wins over the values.
    allowed |= set(_configured(c.GitHubOAuthenticator, "allowed_organizations", set()) or ())
    admin_teams = set(auth.get("adminTeams") or [])
    bad = sorted(t for t in admin_teams if ":" not in t)
    if bad:
        raise HubConfigError(
            "jupyterhub.custom.pangeo.auth.adminTeams entries must be org:team-slug, got "
            + ", ".join(repr(t) for t in bad)
        )

    # Groups come from teams; managing them is what makes admin_groups and
    # group-restricted profiles work, so it is not optional with GitHub login.
    # Only the GitHub section is touched: another authenticator (the local
    # runtime's shared password) keeps its own group and auth_state settings.
    c.GitHubOAuthenticator.manage_groups = True
    c.GitHubOAuthenticator.populate_teams_in_auth_state = True
    c.GitHubOAuthenticator.enable_auth_state = True
    scope = list(_configured(c.GitHubOAuthenticator, "scope", None) or github.get("scope") or [])
    if "read:org" not in scope:
        # Without it GitHub hides private team membership and /user/teams.
        scope.append("read:org")
    c.GitHubOAuthenticator.scope = scope
    c.GitHubOAuthenticator.auth_state_groups_key = groups_key(_orgs(allowed | admin_teams))
    # Membership is checked again at every auth refresh and before every spawn,
    # so removal from a team takes effect within auth_refresh_age (300 s).
    # Throw-away users of the services named in auth.serviceUserIssuers (the
    # health check) are exempt, by a ticket only those services can sign.
    names = auth.get("serviceUserIssuers", DEFAULT_ISSUERS)
    issuers = issuer_tokens(_configured(c.JupyterHub, "services", []), names)
    c.GitHubOAuthenticator.refresh_user_hook = membership_recheck(issuers)
    c.GitHubOAuthenticator.refresh_pre_spawn = True
    if admin_teams:
        c.GitHubOAuthenticator.admin_groups = admin_teams
    # The admin team is no way in for a newcomer: the page names only the others.
    c.GitHubOAuthenticator.custom_403_message = refusal_message(allowed - admin_teams)

    help_url = auth.get("accessHelpUrl") or ""
    template_vars = c.JupyterHub.template_vars
    template_vars.update({"pangeo_access_help_url": help_url})
    c.JupyterHub.template_vars = template_vars
    c.JupyterHub.template_paths.insert(0, write_templates())
