"""Pass-through configuration checked against the real traitlets classes.

z2jh hands ``hub.config.<Class>.<trait>`` and profiles' ``kubespawner_override``
to JupyterHub untouched, and our gateway hook turns ``jupyterhub.custom.pangeo``
into dask-gateway-server config: the charts' schemas cannot know those names.
This module imports the classes of the pinned packages (JupyterHub, KubeSpawner,
OAuthenticator, dask-gateway-server), looks every key up in
``class_traits(config=True)`` (with the closest name for a typo) and validates
each value with the trait itself, as the hub or gateway will when it starts.

When a package is not importable the check says it was skipped and why.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from pangeo_cloud.config.secrets import SOPS_MASK
from pangeo_cloud.config.yamlpos import KeyPath, dig

# Modules whose Configurable classes may appear as hub.config sections, in
# lookup order (the hub image of z2jh ships these packages).
HUB_MODULES = (
    "jupyterhub.app",
    "jupyterhub.auth",
    "jupyterhub.spawner",
    "jupyterhub.proxy",
    "jupyterhub.crypto",
    "kubespawner.spawner",
    "kubespawner.proxy",
    "oauthenticator.oauth2",
    "oauthenticator.github",
    "oauthenticator.generic",
    "oauthenticator.google",
    "oauthenticator.gitlab",
    "oauthenticator.cilogon",
    "oauthenticator.globus",
    "oauthenticator.bitbucket",
    "oauthenticator.auth0",
    "oauthenticator.azuread",
    "oauthenticator.openshift",
)
HUB_PACKAGES = ("jupyterhub", "jupyterhub-kubespawner", "oauthenticator")
GATEWAY_MODULES = (
    "dask_gateway_server.app",
    "dask_gateway_server.auth",
    "dask_gateway_server.backends.base",
    "dask_gateway_server.backends.kubernetes.backend",
    "dask_gateway_server.backends.local",
    # Our own gateway classes (backends, cluster configs, mixins) are configured
    # in the same Config, so their sections and traits are checked too.
    "pangeo_cloud.gateway.backend",
    "pangeo_cloud.gateway.kube",
    "pangeo_cloud.gateway.heartbeat",
)
GATEWAY_PACKAGES = ("dask-gateway-server",)


@dataclass(frozen=True)
class Problem:
    """A pass-through key or value the real class refuses."""

    path: KeyPath
    message: str


class Unavailable(Exception):
    """The packages holding the classes cannot be imported here."""


@dataclass(frozen=True)
class Classes:
    """Configurable classes by name, from the installed packages."""

    by_name: dict[str, type]
    versions: str

    def get(self, name: str) -> type | None:
        return self.by_name.get(name)

    def closest(self, name: str) -> str:
        match = difflib.get_close_matches(name, list(self.by_name), n=1)
        return f"; did you mean {match[0]}?" if match else ""


def _versions(packages: tuple[str, ...]) -> str:
    out = []
    for package in packages:
        try:
            out.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(out)


@functools.cache
def load_classes(modules: tuple[str, ...], packages: tuple[str, ...]) -> Classes:
    """Import `modules` and index their Configurable classes; Unavailable if none import."""
    try:
        from traitlets.config import Configurable
    except ImportError as exc:
        raise Unavailable(f"traitlets not installed ({exc})") from None
    by_name: dict[str, type] = {}
    failures = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # an optional provider's own dependency may be missing
            failures.append(f"{name}: {exc}")
            continue
        for attr, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, Configurable):
                by_name.setdefault(attr, value)
    if len(failures) == len(modules):
        raise Unavailable("; ".join(failures[:2]))
    return Classes(by_name, _versions(packages))


def hub_classes() -> Classes:
    return load_classes(HUB_MODULES, HUB_PACKAGES)


def gateway_classes() -> Classes:
    return load_classes(GATEWAY_MODULES, GATEWAY_PACKAGES)


@functools.cache
def _config_traits(cls: type) -> dict[str, Any]:
    return cls.class_traits(config=True)  # type: ignore[attr-defined]


@functools.cache
def _all_traits(cls: type) -> dict[str, Any]:
    return cls.class_traits()  # type: ignore[attr-defined]


def _subclass_has(classes: Classes, cls: type, name: str) -> bool:
    # traitlets applies a parent's section to subclass instances, trait by trait.
    return any(
        issubclass(other, cls) and name in _config_traits(other)
        for other in classes.by_name.values()
    )


def _closest(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.75)
    return f"; did you mean {match[0]}?" if match else ""


def value_problem(trait: Any, value: Any) -> str | None:
    """What the trait says about `value` (None if accepted or not checkable offline)."""
    from traitlets import TraitError

    if value == SOPS_MASK:
        return None
    try:
        # A Type trait names its base class as a string until an instance
        # resolves it; resolve it here so that the subclass check is real.
        resolve = getattr(trait, "_resolve_classes", None)
        if callable(resolve):
            resolve()
        trait.validate(None, value)
    except TraitError as exc:
        return str(exc).replace(" of None instance", "").replace(" of a None instance", "")
    except Exception:
        return None  # needs a live instance (cross-validation): the hub checks it
    return None


def check_section(
    classes: Classes, section: str, settings: Any, path: KeyPath, *, any_trait: bool = False
) -> list[Problem]:
    """Every key of one `<Class>: {trait: value}` section against the class."""
    cls = classes.get(section)
    if cls is None:
        return [
            Problem(
                path,
                f"{section!r} is not a configurable class of {classes.versions}"
                f"{classes.closest(section)}",
            )
        ]
    if not isinstance(settings, dict):
        return [Problem(path, f"must be a mapping of {section} options")]
    traits = _all_traits(cls) if any_trait else _config_traits(cls)
    problems = []
    for name, value in settings.items():
        trait = traits.get(name)
        if trait is None:
            if not any_trait and _subclass_has(classes, cls, name):
                continue
            problems.append(
                Problem(
                    (*path, name),
                    f"{section} has no option {name!r} ({classes.versions})"
                    f"{_closest(name, list(traits))}",
                )
            )
            continue
        problem = value_problem(trait, value)
        if problem:
            problems.append(Problem((*path, name), problem))
    return problems


def _overrides(values: dict[str, Any]) -> Iterator[tuple[KeyPath, Any]]:
    """Every kubespawner_override: in profiles and in their profile_options' choices."""
    base: KeyPath = ("jupyterhub", "singleuser", "profileList")
    profiles = dig(values, base)
    for i, profile in enumerate(profiles if isinstance(profiles, list) else []):
        if not isinstance(profile, dict):
            continue
        if "kubespawner_override" in profile:
            yield (*base, i, "kubespawner_override"), profile["kubespawner_override"]
        options = profile.get("profile_options")
        for oname, option in (options if isinstance(options, dict) else {}).items():
            choices = option.get("choices") if isinstance(option, dict) else None
            for cname, choice in (choices if isinstance(choices, dict) else {}).items():
                if isinstance(choice, dict) and "kubespawner_override" in choice:
                    yield (
                        (*base, i, "profile_options", oname, "choices", cname)
                        + ("kubespawner_override",),
                        choice["kubespawner_override"],
                    )
            if isinstance(option, dict) and "kubespawner_override" in option:
                yield (*base, i, "profile_options", oname), option["kubespawner_override"]


def hub_problems(values: dict[str, Any]) -> list[Problem]:
    """hub.config sections and kubespawner_override keys; Unavailable if not importable."""
    classes = hub_classes()
    problems: list[Problem] = []
    base: KeyPath = ("jupyterhub", "hub", "config")
    config = dig(values, base)
    for section, settings in (config if isinstance(config, dict) else {}).items():
        problems += check_section(classes, section, settings, (*base, section))
    for path, override in _overrides(values):
        if override is None:
            continue
        problems += [
            Problem(
                p.path,
                p.message.replace("KubeSpawner has no option", "KubeSpawner has no trait"),
            )
            for p in check_section(classes, "KubeSpawner", override, path, any_trait=True)
        ]
    return problems


def gateway_problems(values: dict[str, Any]) -> list[Problem]:
    """The config our gateway hook sets, against dask-gateway-server's classes."""
    classes = gateway_classes()
    # The gateway's packages are optional for the CLI: without them this check is skipped.
    try:
        from traitlets.config import Config

        from pangeo_cloud.gateway.config import configure
    except ImportError as exc:
        raise Unavailable(str(exc)) from None
    base: KeyPath = ("jupyterhub", "custom", "pangeo")
    settings = dig(values, base)
    config = Config()
    try:
        configure(config, settings if isinstance(settings, dict) else None, backend="kubernetes")
    except ValueError as exc:
        return [Problem(base, f"the gateway would refuse to start: {exc}")]
    except Exception as exc:  # the gateway would crash the same way at start
        return [Problem(base, f"the gateway would fail to start: {type(exc).__name__}: {exc}")]
    problems = []
    for section, options in config.items():
        for p in check_section(classes, section, dict(options), ("dask-gateway", section)):
            problems.append(
                Problem(
                    base, f"generated gateway config {'.'.join(map(str, p.path[1:]))}: {p.message}"
                )
            )
    return problems
