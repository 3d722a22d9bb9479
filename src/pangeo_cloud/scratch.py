"""Per-user scratch locations: the username escaping and the environment.

Shared by the hub (sets the variables on the user's server) and the gateway
(sets the same variables on every scheduler and worker of that user). Standard
library only, because both ship it as source (see :mod:`pangeo_cloud.bundle`).

Escaping: a username becomes an object-store prefix made only of ``[a-z0-9-]``.
Lower-case ASCII letters and digits are kept; every other byte of the name's
UTF-8 encoding, including upper-case letters and ``-`` itself, becomes ``-xx``
(two lower-case hex digits). Because ``-`` always starts an escape, the mapping
is injective: two different usernames never share a prefix (``Alice`` ->
``-41lice``, ``alice`` -> ``alice``, ``a.b@x`` -> ``a-2eb-40x``).
"""

from __future__ import annotations

from urllib.parse import urlparse

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
SCHEMES = ("gs", "s3")


class ScratchConfigError(ValueError):
    """The deployment's scratch settings cannot produce a scratch location."""


def escape_username(name: str) -> str:
    """The collision-free, object-store-safe prefix for a JupyterHub username."""
    if not name:
        raise ValueError("username must not be empty")
    out = []
    for char in name:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"-{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def unescape_username(prefix: str) -> str:
    """Invert :func:`escape_username` (for operators mapping prefixes to users)."""
    data = bytearray()
    i = 0
    while i < len(prefix):
        if prefix[i] == "-":
            data.append(int(prefix[i + 1 : i + 3], 16))
            i += 3
        else:
            data.extend(prefix[i].encode("ascii"))
            i += 1
    return data.decode("utf-8")


def check_scratch_settings(settings: dict | None) -> tuple[str, str]:
    """Return (scheme, bucket) of `custom.pangeo.scratch`, or raise ScratchConfigError."""
    url = (settings or {}).get("url") or ""
    if not url:
        raise ScratchConfigError(
            "no scratch bucket configured: set jupyterhub.custom.pangeo.scratch.url "
            "(gs://BUCKET or s3://BUCKET) in the deployment's values"
        )
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in SCHEMES or not parsed.netloc:
        raise ScratchConfigError(
            f"jupyterhub.custom.pangeo.scratch.url must be gs://BUCKET[/PATH] or "
            f"s3://BUCKET[/PATH], got {url!r}"
        )
    return parsed.scheme, url.rstrip("/")


def scratch_url(settings: dict | None, username: str) -> str:
    """The user's scratch prefix, ending in '/', e.g. gs://pangeo-scratch/alice/."""
    _, base = check_scratch_settings(settings)
    return f"{base}/{escape_username(username)}/"


def scratch_key_prefix(settings: dict | None, username: str) -> str:
    """The user's key prefix inside the bucket, no slashes at the ends (e.g. ``alice``)."""
    url = scratch_url(settings, username)
    return urlparse(url).path.strip("/")


def broker_env(settings: dict | None) -> dict[str, str]:
    """Where clients fetch their scratch credentials (``scratch.broker``), if configured.

    ``PANGEO_SCRATCH_BROKER_URL`` is read by the broker's client
    (:mod:`pangeo_cloud.broker.client`). For ``s3://``, ``AWS_CONFIG_FILE`` names
    the config whose ``credential_process`` runs that client; botocore reads
    explicit keys (``AWS_ACCESS_KEY_ID`` ..., then ``~/.aws/credentials``) before
    ``credential_process``, so a user's own credentials still win. For ``gs://``,
    ``GOOGLE_APPLICATION_CREDENTIALS`` names the ``external_account`` file whose
    executable (:mod:`pangeo_cloud.broker.google_client`) hands google-auth the
    process's JupyterHub token to exchange at the broker; google-auth runs
    executables only when ``GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1``.
    Credentials passed explicitly (``gcsfs.GCSFileSystem(token=...)``) never
    read that variable, so they still win.
    """
    settings = settings or {}
    broker = settings.get("broker") or {}
    env = {}
    if broker.get("url"):
        env["PANGEO_SCRATCH_BROKER_URL"] = str(broker["url"])
        scheme = urlparse(str(settings.get("url") or "")).scheme
        if scheme == "s3" and broker.get("awsConfigFile"):
            env["AWS_CONFIG_FILE"] = str(broker["awsConfigFile"])
        if scheme == "gs" and broker.get("gcsCredentialsFile"):
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(broker["gcsCredentialsFile"])
            env["GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"] = "1"
            # gcsfs >= 2025.x defaults to its "extended" filesystem, which asks the
            # Storage Control API for the bucket's layout (get_storage_layout with no
            # prefix, a bucket-wide check: the request's `prefix` field is there for
            # callers with prefix-only permissions) before operations. A token downscoped
            # to one prefix is refused that, and gcsfs does not cache the failure, so
            # every operation would pay a failing call and log a warning; the scratch
            # bucket is neither zonal nor hierarchical, so the classic one is right.
            env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    return env


def scratch_env(settings: dict | None, username: str) -> dict[str, str]:
    """PANGEO_SCRATCH plus the provider variables the storage clients read."""
    settings = settings or {}
    scheme, _ = check_scratch_settings(settings)
    env = {"PANGEO_SCRATCH": scratch_url(settings, username)}
    env.update(broker_env(settings))
    if scheme == "s3":
        if settings.get("region"):
            env["AWS_DEFAULT_REGION"] = env["AWS_REGION"] = str(settings["region"])
        if settings.get("endpoint"):
            # Read by botocore >= 1.31 and so by s3fs: S3-compatible stores.
            env["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL_S3"] = str(settings["endpoint"])
            # fsspec's own configuration, for clients older than that.
            env["FSSPEC_S3_ENDPOINT_URL"] = str(settings["endpoint"])
    elif scheme == "gs" and settings.get("project"):
        env["GOOGLE_CLOUD_PROJECT"] = str(settings["project"])
    return env
