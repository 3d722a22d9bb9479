"""The scratch-credentials service: tornado app, authentication, configuration, main().

Routes (under the service prefix, ``/services/scratch-credentials/``):

- ``GET api/credentials``: with ``Authorization: token <JupyterHub token>``.
  The hub identifies the token (``GET /hub/api/user`` with it, no cache, so a
  deleted user or one the hub no longer accepts, e.g. after removal from the
  allowed teams, is refused at once); it must belong to a *user* and carry
  ``access:services!service=scratch-credentials``. The answer is the provider's
  credentials for that user's own prefix (:func:`pangeo_cloud.scratch.scratch_key_prefix`),
  never anything wider. Errors: 401 (no or unknown/expired token), 403 (not a
  user token, or the scope is missing), 503 (the provider failed); each with a
  one-line JSON ``{"error": ...}``.
- ``POST api/token/gcs`` (gs:// deployments only): the OAuth token endpoint
  google-auth refreshes users' Google credentials with
  (:mod:`pangeo_cloud.broker.google_client`, :class:`~.gcs.GCSTokenHandler`);
  the same token checks and the same prefix as ``api/credentials``, answered
  as OAuth errors.
- ``GET metrics``: ``pangeo_scratch_bytes{user}`` for Prometheus
  (:mod:`pangeo_cloud.broker.usage`), for tokens with the ``read:metrics`` scope.
- ``GET api/health``: no authentication; 200 when the provider could issue
  credentials for a probe prefix within the last 15 s (cached), else 503 with
  the reason. The hub checks it before each spawn, ``pangeo-cloud health`` reports it.

Configuration: the JSON file named by ``$PANGEO_BROKER_CONFIG``::

    {"scratch": {...custom.pangeo.scratch...}, "lifetime": 3600, "usageCacheSeconds": 300,
     "provider": {...provider keys, see providers.py...}}

The hub connection comes from the usual service variables (``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_NAME``, ``JUPYTERHUB_SERVICE_PREFIX``,
``JUPYTERHUB_SERVICE_URL`` for the listening address), set by the hub for a
managed service and by the chart's Deployment otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from typing import Any
from urllib.parse import urlparse

from tornado import web

from pangeo_cloud.broker import ACCESS_SCOPE, SERVICE_NAME
from pangeo_cloud.broker.providers import Provider, ProviderError, get_provider
from pangeo_cloud.broker.usage import CACHE_SECONDS, ScratchUsage, exposition, usage_for
from pangeo_cloud.scratch import ScratchConfigError, check_scratch_settings, scratch_key_prefix

log = logging.getLogger("pangeo_cloud.broker")

DEFAULT_LIFETIME = 3600
HEALTH_CACHE_SECONDS = 15.0
# No username escapes to this (escapes are '-' + two hex digits), so the health
# probe's credentials can never reach a user's data.
HEALTH_PREFIX = "-broker-health"
METRICS_SCOPE = "read:metrics"


class BrokerConfigError(ValueError):
    """The broker's configuration cannot work; one line naming the key."""


def load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise BrokerConfigError(f"cannot read broker configuration {path}: {exc}") from None
    if not isinstance(config, dict):
        raise BrokerConfigError(f"{path}: the broker configuration must be a JSON object")
    return config


def provider_settings(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(scheme, settings for the provider factory) from the broker configuration."""
    scratch = config.get("scratch") or {}
    try:
        scheme, base = check_scratch_settings(scratch)
    except ScratchConfigError as exc:
        raise BrokerConfigError(str(exc)) from None
    settings = {
        "url": base,
        "bucket": urlparse(base).netloc,
        "region": scratch.get("region") or "",
        "endpoint": scratch.get("endpoint") or "",
        "project": scratch.get("project") or "",
    }
    settings.update(config.get("provider") or {})
    return scheme, settings


def lifetime_of(config: dict[str, Any]) -> int:
    value = config.get("lifetime", DEFAULT_LIFETIME)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BrokerConfigError(
            f"broker configuration: lifetime must be seconds >= 1, got {value!r}"
        )
    return value


class Broker:
    """What the handlers share: the provider, the scratch settings, the hub client."""

    def __init__(
        self,
        provider: Provider,
        scratch: dict[str, Any],
        lifetime: int,
        hub_auth: Any,
        usage: ScratchUsage | None = None,
    ) -> None:
        self.provider = provider
        self.usage = usage
        self.scratch = scratch
        self.lifetime = lifetime
        self.hub_auth = hub_auth
        self._health: tuple[float, str | None] | None = None

    async def authenticate(self, token: str) -> str:
        """The username of a user token carrying the broker's scope; else HTTPError 401/403.

        Asks the hub every time (no cache), so a revoked token or a removed user
        is refused at once. The message is one line, safe to show the caller.
        """
        if not token:
            raise web.HTTPError(
                401, "no JupyterHub token: send 'Authorization: token <JUPYTERHUB_API_TOKEN>'"
            )
        model = await self.hub_auth.user_for_token(token, use_cache=False, sync=False)
        if not model:
            raise web.HTTPError(
                401,
                "the hub does not accept this token "
                "(unknown, expired, revoked, or its user was removed)",
            )
        if model.get("kind", "user") != "user":
            raise web.HTTPError(
                403, f"only user tokens get scratch credentials, not a {model.get('kind')} token"
            )
        if not self.hub_auth.check_scopes({ACCESS_SCOPE}, model):
            raise web.HTTPError(403, f"this token lacks the scope {ACCESS_SCOPE}")
        return model["name"]

    async def issue_for(self, name: str) -> dict:
        """The provider's credentials for ``name``'s own prefix, never anything wider."""
        prefix = scratch_key_prefix(self.scratch, name)
        try:
            creds = await self.provider.issue(name, prefix, self.lifetime)
        except ProviderError as exc:
            log.error("credentials for %s refused: %s", name, exc)
            raise
        log.info("issued %s credentials for %s (prefix %s/)", self.provider.scheme, name, prefix)
        return creds

    async def health(self) -> str | None:
        """None when the provider can issue credentials, else why not (cached 15 s)."""
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_CACHE_SECONDS:
            return self._health[1]
        try:
            await self.provider.issue("broker-health", HEALTH_PREFIX, self.lifetime)
            problem = None
        except ProviderError as exc:
            problem = str(exc)
        except Exception as exc:  # a provider bug must still show up as unhealthy
            log.exception("health probe failed")
            problem = f"{type(exc).__name__}: {exc}"
        self._health = (now, problem)
        return problem


class BaseHandler(web.RequestHandler):
    def initialize(self, broker: Broker) -> None:
        self.broker = broker

    def fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"error": message}))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # e.g. HubAuth's "Failed to connect to Hub API at ..." when the hub is down.
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) else None
        self.fail(status_code, message or self._reason)

    def check_xsrf_cookie(self) -> None:  # token-only API: no cookies accepted
        return None


class CredentialsHandler(BaseHandler):
    async def get(self) -> None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            token = ""
        # A refused token raises HTTPError, answered by write_error in one line.
        name = await self.broker.authenticate(token.strip())
        try:
            creds = await self.broker.issue_for(name)
        except ProviderError as exc:
            return self.fail(503, f"the scratch credential provider failed: {exc}")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(creds))


class MetricsHandler(BaseHandler):
    async def get(self) -> None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.strip():
            return self.fail(401, "metrics need a JupyterHub token with read:metrics")
        model = await self.broker.hub_auth.user_for_token(token.strip(), sync=False)
        if not model or not self.broker.hub_auth.check_scopes({METRICS_SCOPE}, model):
            return self.fail(403, f"metrics need the scope {METRICS_SCOPE}")
        if self.broker.usage is None:
            return self.fail(404, "this broker has no scratch usage listing")
        try:
            sizes, truncated = await self.broker.usage.sizes()
        except Exception as exc:  # the store refused or is down: say so, keep serving
            log.warning("listing the scratch bucket failed: %s", exc)
            return self.fail(503, f"listing the scratch bucket failed: {exc}")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(exposition(sizes, truncated))


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        problem = await self.broker.health()
        if problem:
            return self.fail(503, problem)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok", "scheme": self.broker.provider.scheme}))


def make_app(broker: Broker, prefix: str) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    args = {"broker": broker}
    routes: list[tuple[str, type[web.RequestHandler], dict[str, Any]]] = [
        (prefix + "api/credentials", CredentialsHandler, args),
        (prefix + "api/health", HealthHandler, args),
        (prefix + "metrics", MetricsHandler, args),
    ]
    if broker.provider.scheme == "gs":
        # google-auth refreshes users' Google credentials here (see google_client).
        # Imported for a gs:// bucket only: an S3 broker needs none of the Google code.
        from pangeo_cloud.broker.gcs import GCSTokenHandler
        from pangeo_cloud.broker.google_client import TOKEN_ROUTE

        gcs_args = {"authenticate": broker.authenticate, "issue": broker.issue_for}
        routes.append((prefix + TOKEN_ROUTE, GCSTokenHandler, gcs_args))
    return web.Application(routes)


def build(config: dict[str, Any], hub_auth: Any = None) -> Broker:
    """The broker for ``config`` (provider built, settings checked)."""
    scheme, settings = provider_settings(config)
    try:
        provider = get_provider(scheme, settings)
    except ProviderError as exc:
        raise BrokerConfigError(str(exc)) from None
    if hub_auth is None:
        # Imported only without a given hub_auth (tests pass their own): the real one.
        from jupyterhub.services.auth import HubAuth

        # No cache: every request asks the hub, so revocation is immediate.
        hub_auth = HubAuth(cache_max_age=0)
    usage = usage_for(scheme, settings, config.get("usageCacheSeconds", CACHE_SECONDS))
    return Broker(provider, config.get("scratch") or {}, lifetime_of(config), hub_auth, usage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pangeo_cloud.broker.service")
    parser.add_argument("--config", default=os.environ.get("PANGEO_BROKER_CONFIG", ""))
    parser.add_argument("--log", default="", help="append output to this file (pangeo-cloud up)")
    args = parser.parse_args(argv)
    if args.log:
        fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(asctime)s broker] %(message)s")
    if not args.config:
        print("FATAL: scratch broker: no configuration (set PANGEO_BROKER_CONFIG)", file=sys.stderr)
        return 2
    try:
        broker = build(load_config(args.config))
    except BrokerConfigError as exc:
        print(f"FATAL: scratch broker: {exc}", file=sys.stderr)
        return 2
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{SERVICE_NAME}/")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8000"))
    app = make_app(broker, prefix)

    async def serve() -> None:
        app.listen(url.port or 8000, url.hostname or "127.0.0.1", xheaders=True)
        log.info(
            "scratch broker (%s) listening on %s%s", broker.provider.scheme, url.geturl(), prefix
        )
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
