"""The provider interface of the broker and the registry keyed by URL scheme.

A provider turns (username, escaped prefix, lifetime) into credentials that
reach only ``<bucket>/<prefix>/`` of the scratch bucket:

- ``s3`` (:mod:`.s3`): the AWS ``credential_process`` JSON
  ``{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}``;
- ``gs`` (:mod:`.gcs`): ``{"access_token", "expires_in", "token_type": "Bearer"}``.

``prefix`` is the user's key prefix inside the bucket, without leading or
trailing slash, exactly as in ``$PANGEO_SCRATCH = <scheme>://<bucket>/<prefix>/``:
:func:`pangeo_cloud.scratch.scratch_key_prefix` (the escaped username, after the
bucket URL's path if it has one). The service computes it from the caller's
verified token; providers never see a prefix of the caller's choice.

Settings handed to a factory (a dict; providers read only their own keys and
raise :class:`ProviderError` naming a missing one):

- ``url``: the scratch bucket URL (``s3://BUCKET[/PATH]`` or ``gs://BUCKET[/PATH]``);
- ``bucket``: the bucket name (from ``url``);
- S3: ``roleArn`` (the scratch role to assume), ``region``, ``endpoint`` (S3,
  optional), ``stsEndpoint`` (optional: MinIO's STS locally; default AWS STS);
  the broker's own AWS credentials come from botocore's chain (IRSA in the
  cluster, the dedicated MinIO user's keys locally);
- GCS: ``project`` (optional), ``tokenUrl`` (optional: Google's token-exchange
  endpoint, https://sts.googleapis.com/v1/token by default); the broker's own
  source credentials come from ``google.auth.default()`` (its Workload Identity
  service account).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable


class ProviderError(RuntimeError):
    """The provider could not issue credentials (misconfigured or the cloud refused).

    The message is one line, safe to show the caller (no secrets).
    """


@runtime_checkable
class Provider(Protocol):
    """Issues prefix-scoped scratch credentials for one bucket."""

    scheme: str

    async def issue(self, username: str, prefix: str, lifetime: int) -> dict:
        """Credentials for ``username`` reaching only ``<bucket>/<prefix>/``.

        Valid for ``lifetime`` seconds (the provider may clamp it to what its
        cloud allows, and reports the real expiry in the returned dict).
        """
        ...


# A factory builds a provider from the scratch settings (``custom.pangeo.scratch``
# plus the broker's own settings); registered by scheme.
ProviderFactory = Callable[[dict[str, Any]], Provider]

_REGISTRY: dict[str, ProviderFactory] = {}


def register(scheme: str, factory: ProviderFactory) -> None:
    """Register the factory for URL scheme ``scheme`` ("s3", "gs").

    Each provider module calls this at import time, e.g. at the end of gcs.py:
    ``register("gs", GCSProvider.from_settings)``.
    """
    _REGISTRY[scheme] = factory


def _load_builtin(scheme: str) -> None:
    # Imported lazily so that a broker for one cloud does not need the other's libraries.
    import importlib

    module = {"s3": "pangeo_cloud.broker.s3", "gs": "pangeo_cloud.broker.gcs"}.get(scheme)
    if module is not None and scheme not in _REGISTRY:
        importlib.import_module(module)


def get_provider(scheme: str, settings: dict[str, Any]) -> Provider:
    """The provider for ``scheme`` built from ``settings``, or ProviderError."""
    try:
        _load_builtin(scheme)
    except ImportError as exc:  # e.g. the cloud's client library is missing from the image
        raise ProviderError(
            f"the {scheme}:// credential provider cannot be loaded: {exc}"
        ) from None
    factory = _REGISTRY.get(scheme)
    if factory is None:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ProviderError(f"no scratch credential provider for {scheme}:// (known: {known})")
    return factory(settings)


def schemes() -> list[str]:
    """The registered schemes (after loading the built-in ones that import)."""
    for scheme in ("s3", "gs"):
        with contextlib.suppress(ImportError):
            _load_builtin(scheme)
    return sorted(_REGISTRY)
