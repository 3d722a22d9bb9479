"""Unit tests of the hub modules: groups, refusals, hooks, configure() errors."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from hub_unit_support import build_config, fake_user, hub_values
from traitlets.config import Config

from pangeo_cloud.hub import auth, profiles, spawn
from pangeo_cloud.hub.config import HubConfigError, configure
from pangeo_cloud.hub.z2jh_values import values_get_config
from pangeo_cloud.scratch import ScratchConfigError


def team(org: str, slug: str) -> dict:
    return {"slug": slug, "name": slug.title(), "organization": {"login": org}}


# ---- auth --------------------------------------------------------------------
def test_teams_become_groups_of_known_orgs_only():
    state = {
        "teams": [
            team("pangeo-data", "users"),
            team("Pangeo-Data", "operators"),
            team("unrelated-org", "secret-project"),
            {"slug": "broken"},
        ]
    }
    assert auth.teams_to_groups(state, {"pangeo-data"}) == [
        "Pangeo-Data:operators",
        "pangeo-data:users",
    ]
    assert "unrelated-org:secret-project" in auth.teams_to_groups(state, None)
    assert auth.teams_to_groups({}, {"pangeo-data"}) == []


def test_configure_auth_uses_upstream_mechanisms():
    values = hub_values(
        custom={"pangeo": {"auth": {"adminTeams": ["pangeo-data:operators"]}}},
        hub={"config": {"GitHubOAuthenticator": {"allowed_organizations": ["pangeo-data:users"]}}},
    )
    c = build_config(values)
    gh = c.GitHubOAuthenticator
    assert gh.admin_groups == {"pangeo-data:operators"}
    assert gh.allowed_organizations == ["pangeo-data:users"]
    assert gh.populate_teams_in_auth_state is True
    assert gh.manage_groups is True and gh.enable_auth_state is True
    assert "read:org" in gh.scope
    state = {"teams": [team("pangeo-data", "users"), team("elsewhere", "x")]}
    assert gh.auth_state_groups_key(state) == ["pangeo-data:users"]
    assert "pangeo-data:users" in gh.custom_403_message
    assert c.JupyterHub.template_vars.get_value({}) == {
        "pangeo_access_help_url": "https://forms.gle/J3hVVBgobwpYVWHF8"
    }


def test_refusal_page_names_the_allowed_teams_but_not_the_admin_team():
    # The admin team is usually allowed too; it is no way in for a newcomer.
    values = hub_values(
        custom={"pangeo": {"auth": {"adminTeams": ["pangeo-data:operators"]}}},
        hub={
            "config": {
                "GitHubOAuthenticator": {
                    "allowed_organizations": ["pangeo-data:users", "pangeo-data:operators"]
                }
            }
        },
    )
    message = build_config(values).GitHubOAuthenticator.custom_403_message
    assert message == (
        "Sorry, your GitHub account is not a member of any GitHub team allowed "
        "to use this hub (pangeo-data:users), so you cannot log in."
    )


def test_throwaway_user_endpoints_and_scope_are_registered():
    values = hub_values(hub={"services": {"health-check": {"apiToken": "t" * 32}}})
    c = build_config(values)
    assert "custom:pangeo-cloud:create:service-users" in c.JupyterHub.custom_scopes
    routes = [h[0] for h in c.JupyterHub.extra_handlers]
    assert routes == [
        "/api/pangeo/service-users",
        "/api/pangeo/service-users/([^/]+)/tokens",
    ]
    # The creating endpoint knows the service's token, to sign the ticket.
    assert c.JupyterHub.extra_handlers[0][2] == {"issuers": {"health-check": "t" * 32}}


async def test_real_authenticator_accepts_our_config():
    """OAuthenticator validates traits (manage_groups before admin_groups etc.)."""
    from oauthenticator.github import GitHubOAuthenticator

    values = hub_values(custom={"pangeo": {"auth": {"adminTeams": ["o:admins"]}}})
    authenticator = GitHubOAuthenticator(config=build_config(values))
    state = {"teams": [team("o", "admins")]}
    groups = await authenticator.get_user_groups(state)
    assert groups == {"o:admins"}
    model = await authenticator._apply_managed_groups({"admin": None, "auth_state": state})
    assert model["admin"] is True and model["groups"] == ["o:admins"]
    model = await authenticator._apply_managed_groups(
        {"admin": None, "auth_state": {"teams": [team("o", "users")]}}
    )
    assert model["admin"] is False


def test_configure_leaves_other_authenticators_alone():
    values = hub_values()
    values["hub"]["config"].pop("Authenticator")
    c = build_config(values)
    assert "manage_groups" not in c.Authenticator
    assert "enable_auth_state" not in c.Authenticator


def test_bad_admin_team_is_refused():
    values = hub_values(custom={"pangeo": {"auth": {"adminTeams": ["operators"]}}})
    with pytest.raises(HubConfigError, match="adminTeams entries must be org:team-slug"):
        build_config(values)


def test_403_template_renders_message_and_help(tmp_path):
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader
    from jupyterhub._data import DATA_FILES_PATH

    builtin = f"{DATA_FILES_PATH}/templates"
    directory = auth.write_templates(str(tmp_path))
    env = Environment(
        autoescape=True,  # as JupyterHub's environment
        loader=ChoiceLoader(
            [
                PrefixLoader({"templates": FileSystemLoader([builtin])}, "/"),
                FileSystemLoader([directory, builtin]),
            ]
        ),
    )
    html = env.get_template("403.html").render(
        message="Sorry <you>.",
        pangeo_access_help_url="https://example.org/ask",
        static_url=lambda *a, **k: "",
        base_url="/hub/",
        logo_url="",
        no_spawner_check=True,
        xsrf="",
    )
    assert "Sorry &lt;you&gt;." in html
    assert '<a href="https://example.org/ask">' in html
    assert "Access denied" in html


# ---- profiles ----------------------------------------------------------------
PROFILES = [
    {"display_name": "Small", "slug": "small", "default": True},
    {"display_name": "GPU", "slug": "gpu", "allowed_groups": ["o:gpu"]},
    {"display_name": "Hidden default", "slug": "hd", "allowed_groups": ["o:x"], "default": True},
]


def test_offered_profiles_filter_by_group_and_strip_our_key():
    assert [p["slug"] for p in profiles.offered_profiles(PROFILES, set())] == ["small"]
    offered = profiles.offered_profiles(PROFILES, {"o:gpu"})
    assert [p["slug"] for p in offered] == ["small", "gpu"]
    assert all("allowed_groups" not in p for p in offered)
    assert "allowed_groups" in PROFILES[1]  # the configured list is untouched
    only_gpu = profiles.offered_profiles(PROFILES[1:2], {"o:gpu"})
    assert only_gpu[0]["default"] is True


def test_check_profile_message_is_one_readable_sentence():
    offered = profiles.offered_profiles(PROFILES, set())
    profiles.check_profile("small", offered)
    profiles.check_profile(None, offered)
    with pytest.raises(profiles.ProfileRefused) as err:
        profiles.check_profile("gpu", offered)
    message = str(err.value)
    assert message == (
        "The server size 'gpu' is not offered to you; please choose one of: Small (small)."
    )


async def test_options_from_form_refuses_and_parses(make_kubespawner):
    c = build_config(hub_values(singleuser={"profileList": PROFILES}))
    spawner = make_kubespawner(c, name="u", groups=("o:gpu",))
    assert spawner.options_from_form is c.KubeSpawner.options_from_form
    options = spawner.run_options_from_form({"profile": ["gpu"], "profile-option-gpu--x": ["1"]})
    assert options == {"profile": "gpu", "x": "1"}  # KubeSpawner's own parser ran
    other = make_kubespawner(c, name="v")
    with pytest.raises(profiles.ProfileRefused, match="'gpu' is not offered"):
        other.run_options_from_form({"profile": ["gpu"]})


def test_profile_allowed_groups_must_be_a_list():
    values = hub_values(
        singleuser={"profileList": [{"display_name": "A", "allowed_groups": "o:x"}]}
    )
    with pytest.raises(HubConfigError, match=r"profileList\[0\]\.allowed_groups"):
        build_config(values)


# ---- spawn hook --------------------------------------------------------------
class FakeSpawner:
    """Enough of a Spawner for the hook: environment, get_env, log."""

    def __init__(self, name="Alice"):
        self.user = fake_user(name)
        self.environment = {"KEEP": "1"}
        self.log = logging.getLogger("fake-spawner")

    def get_env(self):
        return dict(self.environment)


async def test_pre_spawn_hook_pins_env_once_and_chains():
    calls = []

    def previous(spawner):
        calls.append(spawner.user.name)

    hook = spawn.pre_spawn_hook_for({"url": "s3://b", "region": "r"}, previous)
    s = FakeSpawner()
    await hook(s)
    await hook(s)  # a restart: the wrapper must not stack
    assert calls == ["Alice", "Alice"]
    s.environment.pop("PANGEO_SCRATCH")  # as a profile override could
    env = s.get_env()
    assert env["PANGEO_SCRATCH"] == "s3://b/-41lice/"
    assert env["AWS_REGION"] == "r" and env["KEEP"] == "1"


async def test_pre_spawn_hook_failure_is_readable_and_logged(caplog):
    def previous(spawner):
        raise KeyError("internal detail")

    hook = spawn.pre_spawn_hook_for({"url": "gs://b"}, previous)
    s = FakeSpawner()
    with caplog.at_level(logging.ERROR), pytest.raises(spawn.SpawnPreparationError) as err:
        await hook(s)
    assert "internal detail" not in str(err.value)
    assert str(err.value).startswith("Your server could not be prepared")
    assert err.value.jupyterhub_message == str(err.value)
    assert "internal detail" in caplog.text  # the traceback is in the hub log
    assert "PANGEO_SCRATCH" not in s.environment


def test_configure_chains_hooks_set_on_subclass_sections():
    c = Config()
    marker = SimpleNamespace(called=False)

    def kube_hook(spawner):
        marker.called = True

    c.KubeSpawner.pre_spawn_hook = kube_hook
    configure(c, values_get_config(hub_values()))
    assert c.KubeSpawner.pre_spawn_hook.pangeo_previous is kube_hook
    assert c.Spawner.pre_spawn_hook.pangeo_previous is None
    configure(c, values_get_config(hub_values()))  # idempotent
    assert c.KubeSpawner.pre_spawn_hook.pangeo_previous is kube_hook


# ---- configure() refuses bad scratch settings ----------------------------------
@pytest.mark.parametrize(
    ("scratch", "words"),
    [
        ({"url": ""}, "no scratch bucket configured"),
        (None, "no scratch bucket configured"),
        ({"url": "https://bucket"}, "must be gs://BUCKET"),
        ({"url": "s3://"}, "must be gs://BUCKET"),
    ],
)
def test_configure_refuses_bad_scratch(scratch, words):
    values = hub_values()
    values["custom"]["pangeo"]["scratch"] = scratch
    with pytest.raises(ScratchConfigError, match=words):
        configure(Config(), values_get_config(values))
