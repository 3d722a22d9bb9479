"""The per-user environment of every server, and readable spawn failures.

Every server gets ``scratch_env(custom.pangeo.scratch, user.name)``:
``PANGEO_SCRATCH`` (``gs://bucket/<escaped-username>/`` or ``s3://…``) plus the
provider variables.

Where it is set, and why there: KubeSpawner applies a profile's
``kubespawner_override`` in ``start()``, *after* ``pre_spawn_hook``, and merges
an ``environment`` override into the spawner's ``environment`` (a ``None``
value deletes a key). So a variable put into ``environment`` by the hook could
be replaced or dropped by a profile. Every spawner (KubeSpawner,
LocalProcessSpawner, anything derived from ``jupyterhub.spawner.Spawner``)
builds the server's environment by calling ``self.get_env()`` when it creates
the pod or process, after all overrides. The pre-spawn hook therefore pins the
variables on the spawner instance by wrapping its ``get_env``: whatever
``environment`` ends up holding, the pinned values are applied last. Values
added there bypass KubeSpawner's ``{…}`` expansion, so a brace in a bucket
name cannot break a spawn.

Failures: anything that goes wrong in the hook (ours, or a hook configured
before ours, which we chain) is logged with its traceback and reaches the user
as one sentence (:class:`SpawnPreparationError`); JupyterHub then stops the
half-made server, so nothing is left running.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from pangeo_cloud.scratch import scratch_env

_PINNED = "_pangeo_cloud_pinned_env"


class SpawnPreparationError(web.HTTPError):
    """Preparing a server failed; the message is what the user reads.

    An HTTPError so that the REST API answers with the message (JupyterHub's
    API shows only the generic reason for other exceptions); the spawn page
    shows ``jupyterhub_message``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(500, "%s", message)
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return self.jupyterhub_message


def pin_environment(spawner: Any, env: dict[str, str]) -> None:
    """Make ``env`` part of the server's environment, after any profile override.

    Also puts the values into ``spawner.environment`` so that code reading that
    trait (and spawners that do not call ``get_env``) sees them. Idempotent:
    spawners are reused across restarts, the wrapper is installed once and the
    pinned values are replaced on every call.
    """
    spawner.environment.update(env)
    already = spawner.__dict__.get(_PINNED)
    if already is not None:
        already.clear()
        already.update(env)
        return
    pinned = dict(env)
    original_get_env = spawner.get_env

    def get_env() -> dict[str, str]:
        result = original_get_env()
        result.update(pinned)
        return result

    spawner.__dict__[_PINNED] = pinned
    spawner.get_env = get_env


def user_environment(scratch_settings: dict[str, Any], username: str) -> dict[str, str]:
    """Everything pangeo-cloud adds to one user's server environment."""
    return scratch_env(scratch_settings, username)


BROKER_CHECK_TIMEOUT = 10.0


async def check_broker(scratch_settings: dict[str, Any]) -> None:
    """Refuse the spawn unless the scratch-credentials broker answers its health check.

    A server whose broker is down would start without working scratch access
    (and must never fall back to anything wider), so the user gets a clear
    refusal instead. No broker configured: nothing to check.
    """
    url = ((scratch_settings or {}).get("broker") or {}).get("url")
    if not url:
        return
    health = url.rstrip("/") + "/api/health"
    try:
        await AsyncHTTPClient().fetch(health, request_timeout=BROKER_CHECK_TIMEOUT)
    except HTTPClientError as exc:
        body = exc.response.body.decode("utf-8", "replace")[:300] if exc.response else ""
        raise SpawnPreparationError(
            "Your server was not started: the scratch-credentials service cannot issue "
            f"storage credentials (HTTP {exc.code} {body.strip()}); "
            "please tell the hub's operators."
        ) from exc
    except OSError as exc:
        raise SpawnPreparationError(
            f"Your server was not started: the scratch-credentials service at {url} does not "
            f"answer ({exc}); please tell the hub's operators."
        ) from exc


def pre_spawn_hook_for(
    scratch_settings: dict[str, Any], previous: Callable[..., Any] | None = None
) -> Callable[..., Any]:
    """``Spawner.pre_spawn_hook``: run ``previous`` (if any), then pin our env."""

    async def pangeo_pre_spawn_hook(spawner: Any) -> None:
        name = spawner.user.name
        try:
            if previous is not None:
                result = previous(spawner)
                if inspect.isawaitable(result):
                    await result
            env = user_environment(scratch_settings, name)
            await check_broker(scratch_settings)
            pin_environment(spawner, env)
        except Exception as e:
            spawner.log.exception("pangeo-cloud: preparing the server of %s failed", name)
            message = getattr(e, "jupyterhub_message", None) or (
                "Your server could not be prepared, so it was not started; "
                "please try again, and tell the hub's operators if it happens again."
            )
            raise SpawnPreparationError(message) from e
        spawner.log.info("pangeo-cloud: %s gets PANGEO_SCRATCH=%s", name, env.get("PANGEO_SCRATCH"))

    pangeo_pre_spawn_hook.pangeo_previous = previous
    return pangeo_pre_spawn_hook


def configure_spawn(c: Any, scratch_settings: dict[str, Any]) -> None:
    """Install the pre-spawn hook on every spawner config section that has one.

    Traitlets gives a subclass section priority over ``Spawner``; a hook set
    earlier on e.g. ``KubeSpawner`` would hide ours, so ours is installed
    there too, chaining the hook it replaces.
    """
    sections = ["Spawner"] + sorted(
        name
        for name in c
        if name != "Spawner" and name.endswith("Spawner") and "pre_spawn_hook" in c[name]
    )
    for name in sections:
        section = c[name]
        previous = section.get("pre_spawn_hook", None)
        if previous is not None and getattr(previous, "pangeo_previous", False) is not False:
            continue  # already ours (configure() called twice)
        section.pre_spawn_hook = pre_spawn_hook_for(scratch_settings, previous)
