"""The cluster options users see, and the handler that enforces the policy.

``Gateway().cluster_options()`` shows these fields; ``GatewayCluster(**kwargs)``
and ``gateway.new_cluster(options)`` send them. dask-gateway-server validates
each field, then calls :func:`cluster_overrides` (through the ``Options``
handler), whose result becomes the cluster's ``ClusterConfig``. Any exception
raised here reaches the client as one ``ValueError`` with its message.
"""

from __future__ import annotations

import re
from typing import Any

from dask_gateway_server.options import Bool, Float, Integer, Mapping, Options, String

from pangeo_cloud.gateway.images import check_image
from pangeo_cloud.gateway.policy import GIB, Policy
from pangeo_cloud.gateway.scratch_token import worker_scratch_env
from pangeo_cloud.scratch import scratch_env

BACKENDS = ("kubernetes", "local")

# The option that keeps a cluster running after its owner's server stops (read
# by pangeo_cloud.gateway.backend from the cluster's stored options).
KEEP_OPTION = "keep_after_server_stops"

# Kubernetes accepts these environment variable names (and so do processes).
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class _BoundsMessage:
    """Bounds errors that read like the settings: ``must be <= 8, got 20``."""

    hint_max = ""

    def validate(self, x):  # dask_gateway_server API
        value = self._check_type(x)
        if self.min is not None and value < self.min:
            raise ValueError(f"{self.field} must be >= {self.min:g}, got {x!r}")
        if self.max is not None and value > self.max:
            raise ValueError(f"{self.field} must be <= {self.max:g}{self.hint_max}, got {x!r}")
        return value


class BoundedInteger(_BoundsMessage, Integer):
    """An integer option with readable bounds errors."""

    def _check_type(self, x):
        if not isinstance(x, int) or isinstance(x, bool):
            raise TypeError(f"{self.field} must be an integer, got {x!r}")
        return x


class BoundedFloat(_BoundsMessage, Float):
    """A float option with readable bounds errors (ints are accepted)."""

    def _check_type(self, x):
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise TypeError(f"{self.field} must be a number, got {x!r}")
        return float(x)


class IdleTimeout(BoundedFloat):
    hint_max = " seconds (the deployment's idle timeout: it may be lowered, not raised)"


def user_environment(requested: Any) -> dict[str, str]:
    """Check and stringify the user's `environment` option."""
    if not isinstance(requested, dict):
        raise TypeError(f"environment must be a mapping, got {requested!r}")
    env = {}
    for name, value in requested.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise ValueError(
                f"environment: {name!r} is not a valid environment variable name "
                "(letters, digits, '_', '-', '.'; not starting with a digit)"
            )
        if isinstance(value, str):
            env[name] = value
        elif isinstance(value, bool | int | float):
            # Dask config values such as False or 5 (see the user docs).
            env[name] = str(value)
        else:
            raise TypeError(f"environment[{name!r}] must be a string or a number, got {value!r}")
    return env


def cluster_overrides(
    policy: Policy,
    backend: str,
    options: Any,
    user: Any,
    base_environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ClusterConfig overrides for `user`'s validated `options`.

    `base_environment` is the operator's ``ClusterConfig.environment`` (e.g. the
    chart's ``gateway.backend.environment``), which the returned `environment`
    replaces and so must include.
    """
    cores = options.worker_cores
    memory = int(options.worker_memory * GIB)
    limits = policy.limits_for(getattr(user, "groups", ()) or ())
    if limits.cores is not None and cores > limits.cores:
        raise ValueError(
            f"worker_cores={cores} does not fit in your cluster limit of {limits.cores:g} cores"
        )
    if limits.memory_gib is not None and options.worker_memory > limits.memory_gib:
        raise ValueError(
            f"worker_memory={options.worker_memory:g} GiB does not fit in your cluster limit "
            f"of {limits.memory_gib:g} GiB"
        )

    requested_image = options.image.strip()
    if requested_image and requested_image != policy.image:
        # The operator's default needs no check. Checked on every backend (the
        # local one ignores images) so that a refusal reads the same everywhere.
        check_image(requested_image, policy.image_allowlist)

    env = dict(base_environment or {})
    env.update(user_environment(options.environment))
    # Last, so that nobody can point PANGEO_SCRATCH at another user's prefix
    # or hand workers another user's broker token.
    env.update(scratch_env(policy.scratch, user.name))
    env.update(worker_scratch_env(policy.scratch, user.name))

    out: dict[str, Any] = {
        "worker_cores": cores,
        "worker_memory": memory,
        "environment": env,
        "idle_timeout": float(options.idle_timeout),
        **limits.cluster_config(),
    }
    if backend == "kubernetes":
        # The chart sets separate limits (gateway.backend.worker.*.limit); a
        # request above its limit would make the pod invalid, so pin both.
        out["worker_cores_limit"] = cores
        out["worker_memory_limit"] = memory
        image = requested_image or policy.image
        if image:
            out["image"] = image
    return out


def make_options(
    policy: Policy, backend: str, base_environment: dict[str, str] | None = None
) -> Options:
    """The ``c.Backend.cluster_options`` value for `policy`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    cores, memory = policy.worker_cores, policy.worker_memory_gib
    idle = policy.idle_timeout
    if idle > 0:
        idle_field = IdleTimeout(
            "idle_timeout",
            default=float(idle),
            min=min(1.0, float(idle)),
            max=float(idle),
            label="Idle timeout (seconds)",
        )
    else:  # no deployment-wide timeout: users may still set one (0 = none)
        idle_field = IdleTimeout(
            "idle_timeout", default=0.0, min=0.0, label="Idle timeout (seconds, 0 = none)"
        )

    def handler(options, user):  # dask_gateway_server API
        return cluster_overrides(policy, backend, options, user, base_environment)

    return Options(
        BoundedInteger(
            "worker_cores",
            default=int(cores.default),
            min=int(cores.min),
            max=int(cores.max),
            label="Worker cores",
        ),
        BoundedFloat(
            "worker_memory",
            default=float(memory.default),
            min=float(memory.min),
            max=float(memory.max),
            label="Worker memory (GiB)",
        ),
        String("image", default=policy.image, label="Image (default: your notebook's)"),
        Mapping("environment", default={}, label="Environment variables"),
        idle_field,
        Bool(
            KEEP_OPTION,
            default=False,
            label="Keep running after my server stops (still stopped when idle)",
        ),
        handler=handler,
    )
