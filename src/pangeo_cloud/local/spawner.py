"""A local-process spawner that offers the deployment's hardware profiles.

``PangeoLocalSpawner`` is JupyterHub's ``LocalProcessSpawner`` (the server is a
process of the hub's own user, as in ``SimpleLocalProcessSpawner``) with:

- a persistent home per user, ``<homes>/<escaped username>`` (the escaping of
  :func:`pangeo_cloud.scratch.escape_username`, so two names never share a
  home), used as HOME and as the server's root directory: the file browser
  cannot leave it;
- ``profile_list`` as in KubeSpawner (a list, or a callable of the spawner, as
  the hub code installs to offer group-restricted profiles only to their
  groups), shown as the spawn form; the chosen profile's
  ``kubespawner_override`` is applied in ``start()``, after ``pre_spawn_hook``,
  as KubeSpawner does: ``cpu_limit``, ``cpu_guarantee``, ``mem_limit``,
  ``mem_guarantee`` become the Spawner traits of the same names (JupyterHub
  passes limits to local servers as ``CPU_LIMIT`` / ``MEM_LIMIT``, it does not
  enforce them), ``environment`` merges into the environment (``None``
  deletes), ``default_url`` and ``args`` apply; pod-level keys (image, node
  selectors, volumes ...) have no meaning for a process and are logged and
  skipped;
- environment values formatted like KubeSpawner formats them (``{username}``,
  ``{servername}`` ...; ``{{`` for a literal brace), and ``JUPYTER_IMAGE_SPEC``
  / ``JUPYTER_IMAGE`` set to the configured image, as KubeSpawner sets them.
  So the chart's ``DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE: "{{JUPYTER_IMAGE_SPEC}}"``
  reaches the server as ``{JUPYTER_IMAGE_SPEC}``, which the dask-gateway client
  expands from the environment exactly as in a pod. Locally the image is only
  a label: the local gateway backend runs clusters from the hub's Python
  environment and ignores the ``image`` option.

Starts are queued: at most ``concurrent_starts`` servers start at once, each
holding its turn until it answers HTTP (a new Jupyter server costs seconds of
CPU). Without the queue, 50 users logging in together on 2 cores starve
configurable-http-proxy, whose API then times out and JupyterHub stops the
servers it could not route ("Failed to add ... to proxy"). Waiting users see
their server as pending, as in a cloud where a node is being added. Each
server gets a port no other server of the hub holds: JupyterHub's own choice
can hand one free port to two spawns at once, and the second user is then
routed to the first user's server.

No isolation between users beyond that: every server runs as the hub's user.
It is for one developer's machine, never for shared use.
"""

from __future__ import annotations

import asyncio
import copy
import html
import inspect
import os
import string
import time
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner
from jupyterhub.utils import random_port
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Any as AnyTrait
from traitlets import Integer, Unicode, default

from pangeo_cloud.scratch import escape_username

# Ports handed to servers of this hub process (see PangeoLocalSpawner._reserve_port).
_PORTS_IN_USE: set[int] = set()

# kubespawner_override keys applied to the traits of the same name.
TRAIT_OVERRIDES = (
    "cpu_limit",
    "cpu_guarantee",
    "mem_limit",
    "mem_guarantee",
    "default_url",
    "args",
    "environment",
)


def _format_value(template: str, values: dict[str, str]) -> str:
    """``template.format(**values)`` as KubeSpawner expands env values.

    Unknown fields are left as they are (with their braces), so a value meant
    for a later expansion (by the client, from its environment) survives.
    """

    class _Keep(dict):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    try:
        return string.Formatter().vformat(template, (), _Keep(values))
    except (ValueError, IndexError, AttributeError, KeyError):
        return template


def render_profiles_form(profiles: list[dict[str, Any]], selected: str | None = None) -> str:
    """The spawn form: one radio button per profile (name ``profile``, value = slug)."""
    if not profiles:
        return ""
    chosen = selected or next(
        (profile_slug(p) for p in profiles if p.get("default")), profile_slug(profiles[0])
    )
    rows = []
    for profile in profiles:
        slug = html.escape(profile_slug(profile), quote=True)
        name = html.escape(str(profile.get("display_name", slug)))
        description = html.escape(str(profile.get("description", "")))
        checked = " checked" if profile_slug(profile) == chosen else ""
        rows.append(
            f'<label class="pangeo-profile" for="profile-item-{slug}" '
            'style="display:block; padding:0.6em; border:1px solid #ccc; margin:0.4em 0;">'
            f'<input type="radio" name="profile" id="profile-item-{slug}" value="{slug}"'
            f"{checked}> <strong>{name}</strong>"
            f'<div class="pangeo-profile-description">{description}</div></label>'
        )
    return (
        '<div class="pangeo-profiles"><p>Choose the size of your server:</p>'
        + "\n".join(rows)
        + "</div>"
    )


def profile_slug(profile: dict[str, Any]) -> str:
    if profile.get("slug"):
        return str(profile["slug"])
    name = str(profile.get("display_name", "")).lower()
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name).split())


def _profile_options_from_form(formdata: dict[str, list[str]]) -> dict[str, Any]:
    """The form data as KubeSpawner's default parser returns it: ``{"profile": slug}``."""
    values = formdata.get("profile") or []
    return {"profile": values[0]} if values else {}


class PangeoLocalSpawner(LocalProcessSpawner):
    """Local processes, persistent homes, the deployment's profiles (module docstring)."""

    homes_directory = Unicode(
        help="Directory holding one home directory per user (created when needed)."
    ).tag(config=True)

    profile_list = AnyTrait(
        [],
        help="KubeSpawner-style profiles: a list of dicts, or a callable(spawner) returning one.",
    ).tag(config=True)

    image = Unicode(
        "",
        help="The notebook image of the deployment: exported as JUPYTER_IMAGE_SPEC, a label only.",
    ).tag(config=True)

    concurrent_starts = Integer(
        help="Servers starting at the same time; later ones wait their turn, pending "
        "(default: the number of CPUs, at least 2).",
    ).tag(config=True)

    @default("concurrent_starts")
    def _default_concurrent_starts(self) -> int:
        return max(2, os.cpu_count() or 2)

    # One queue per hub process (the hub has one event loop).
    _start_gate: asyncio.Semaphore | None = None

    @default("options_from_form")
    def _default_options_from_form(self):
        return _profile_options_from_form

    @default("default_url")
    def _default_default_url(self):
        return "/lab"

    @property
    def home_dir(self) -> str:
        base = self.homes_directory or os.path.join(os.getcwd(), "homes")
        return os.path.join(base, escape_username(self.user.name))

    # -- profiles ---------------------------------------------------------------

    async def profiles(self) -> list[dict[str, Any]]:
        """The profiles offered to this user."""
        value = self.profile_list
        if callable(value):
            value = value(self)
            if inspect.isawaitable(value):
                value = await value
        return list(value or [])

    async def render_options_form(self) -> str:
        profiles = await self.profiles()
        selected = (self.user_options or {}).get("profile")
        return render_profiles_form(profiles, selected if isinstance(selected, str) else None)

    @default("options_form")
    def _default_options_form(self):
        async def form(spawner: PangeoLocalSpawner) -> str:
            return await spawner.render_options_form()

        return form

    async def chosen_profile(self) -> dict[str, Any] | None:
        profiles = await self.profiles()
        if not profiles:
            return None
        slug = (self.user_options or {}).get("profile")
        if isinstance(slug, list):
            slug = slug[0] if slug else None
        if slug:
            for profile in profiles:
                if profile_slug(profile) == slug:
                    return profile
            # The hub's apply_user_options refuses profiles not offered before
            # we get here; this is the last line of defence.
            raise ValueError(f"profile {slug!r} is not offered to {self.user.name}")
        return next((p for p in profiles if p.get("default")), profiles[0])

    def _base_traits(self) -> dict[str, Any]:
        """The configured values, captured once, so that profiles never accumulate."""
        base = self.__dict__.get("_pangeo_base_traits")
        if base is None:
            base = {name: copy.deepcopy(getattr(self, name)) for name in TRAIT_OVERRIDES}
            self.__dict__["_pangeo_base_traits"] = base
        return base

    async def apply_profile(self) -> dict[str, Any] | None:
        base = self._base_traits()
        for name, value in base.items():
            setattr(self, name, copy.deepcopy(value))
        profile = await self.chosen_profile()
        if profile is None:
            return None
        overrides = dict(profile.get("kubespawner_override") or {})
        for name, value in overrides.items():
            if name == "environment":
                env = dict(self.environment)
                for key, item in (value or {}).items():
                    if item is None:
                        env.pop(key, None)
                    else:
                        env[key] = item
                self.environment = env
            elif name in TRAIT_OVERRIDES:
                setattr(self, name, value)
            else:
                self.log.info(
                    "profile %s: %s=%r has no meaning for a local process; skipped",
                    profile_slug(profile),
                    name,
                    value,
                )
        self.log.info(
            "%s starts profile %s (cpu_limit=%s, mem_limit=%s)",
            self.user.name,
            profile_slug(profile),
            self.cpu_limit,
            self.mem_limit,
        )
        return profile

    # -- process ---------------------------------------------------------------

    def template_values(self) -> dict[str, str]:
        """KubeSpawner's fields for expanding environment values."""
        user = self.user.name
        servername = self.name or ""
        return {
            "username": escape_username(user),
            "unescaped_username": user,
            "userid": str(getattr(self.user, "id", "")),
            "servername": servername,
            "unescaped_servername": servername,
            "escaped_servername": servername,
            "user_server": escape_username(user) + (f"--{servername}" if servername else ""),
        }

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        values = self.template_values()
        for key in self.environment:
            if isinstance(env.get(key), str):
                env[key] = _format_value(env[key], values)
        if self.image:
            env.setdefault("JUPYTER_IMAGE_SPEC", self.image)
            env.setdefault("JUPYTER_IMAGE", self.image)
        return env

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["USER"] = self.user.name
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"
        return env

    def make_preexec_fn(self, name: str):  # JupyterHub API
        home = self.home_dir

        def preexec() -> None:
            os.chdir(home)

        return preexec

    def get_args(self) -> list[str]:
        args = super().get_args()
        # The file browser and the contents API stay inside the user's home.
        args = [*args, f"--ServerApp.root_dir={self.home_dir}"]
        if os.geteuid() == 0:
            # Servers run as the hub's user; Jupyter refuses root without this.
            args.append("--allow-root")
        return args

    def move_certs(self, paths):  # no internal SSL locally
        return paths

    def _gate(self) -> asyncio.Semaphore:
        cls = type(self)
        if cls._start_gate is None:
            cls._start_gate = asyncio.Semaphore(max(1, self.concurrent_starts))
        return cls._start_gate

    def _reserve_port(self) -> int:
        """A free port no other server of this hub holds or is about to bind.

        JupyterHub's ``random_port()`` asks the OS for a free port and releases
        it; two spawns at once can get the same one. The loser cannot bind and
        exits, and JupyterHub's check, answered by the winner, routes the loser's
        URL to the other user's server. So the hub keeps the ports it handed out.
        """
        for _ in range(100):
            port = random_port()
            if port not in _PORTS_IN_USE:
                break
        _PORTS_IN_USE.add(port)
        return port

    def _release_port(self) -> None:
        _PORTS_IN_USE.discard(self.port)

    async def start(self):  # JupyterHub API
        os.makedirs(self.home_dir, mode=0o700, exist_ok=True)
        await self.apply_profile()
        async with self._gate():
            self.port = self._reserve_port()
            try:
                started = await super().start()
                await self._wait_answering(started)
            except BaseException:
                self._release_port()
                raise
        return started

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            self._release_port()

    async def _wait_answering(self, started: Any) -> None:
        """Hold the start slot until this server answers at its own URL, or fail.

        ``started`` is what ``LocalProcessSpawner.start`` returned: ``(ip, port)``.
        A 404 is a stranger on the port (another server, another base URL): not ours.
        """
        ip, port = started
        probe = f"http://{ip}:{port}{self.server.base_url.rstrip('/')}/api"
        client = AsyncHTTPClient()
        deadline = time.monotonic() + self.http_timeout
        while time.monotonic() < deadline:
            status = await self.poll()
            if status is not None:
                raise RuntimeError(
                    f"the server process exited (status {status}) before it answered; "
                    "see the hub's log"
                )
            try:
                await client.fetch(probe, request_timeout=10)
                return
            except HTTPClientError as e:
                if e.code != 404:
                    return  # our server, answering (e.g. 403 without a token)
            except OSError:
                pass
            await asyncio.sleep(0.2)
