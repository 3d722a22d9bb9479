"""What runs inside dask-gateway-server: the federation's cluster policy.

The gateway pod runs the upstream dask-gateway-server image, without our wheel.
`pangeo_cloud.config.hooks` embeds the modules of this package (plus
``pangeo_cloud/__init__.py``, ``bundle.py`` and ``scratch.py``) as text in the
chart's ``gateway.extraConfig`` and calls
:func:`pangeo_cloud.gateway.config.configure` with the ``jupyterhub.custom.pangeo``
settings. `pangeo-cloud up` and the tests call the same function with
``backend="local"``.

Modules here may import only the standard library, ``traitlets``,
``dask_gateway_server`` (and its ``aiohttp``), :mod:`pangeo_cloud.scratch` and
each other.

- :mod:`.policy`: reads and checks ``custom.pangeo.gateway`` / ``.scratch``.
- :mod:`.options`: the user-facing cluster options and the handler that turns
  them into cluster configuration (bounds, image, environment with
  ``PANGEO_SCRATCH``, idle timeout, per-group cluster limits).
- :mod:`.heartbeat`: the local backend's heartbeat timeout fails a cluster only
  if its scheduler does not answer either (an upstream workaround: a stalled
  gateway or scheduler made idle clusters end FAILED instead of STOPPED).
- :mod:`.config`: wires it all into a traitlets ``Config`` (options, commands,
  defaults, JupyterHub authentication restricted to the ``dask-gateway``
  service's access scope).
- :mod:`.usage`: what a user's clusters use and what their limits still allow.
- :mod:`.backend`: the backend subclass behaviour (per-user limits over all of
  a user's clusters, clusters stopped with their owner's server unless kept,
  the admin cluster API) and ``PangeoLocalBackend``; :mod:`.kube` holds
  ``PangeoKubeBackend`` (kept apart: it imports ``kubernetes_asyncio``).
"""
