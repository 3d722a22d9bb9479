"""`pangeo-cloud up`: the whole service as local processes on loopback.

The same merged values that Helm receives drive real processes here:

- :mod:`.objectstore`: the S3-compatible scratch store (MinIO, else moto's
  server), with the bucket and its expiry lifecycle rule.
- :mod:`.hubconfig`: JupyterHub's config, built like z2jh builds it (mapped
  values, then our ``z2jh_entry.py``: the same hook code as the cluster).
- :mod:`.spawner`: a local-process spawner that honours the profile list.
- :mod:`.gateway`: dask-gateway-server as a hub-managed service, configured by
  :func:`pangeo_cloud.gateway.config.configure` with the local backend.
- :mod:`.values`: the merged values rewritten for this machine (loopback
  addresses, login mode, broker configuration).
- :mod:`.runtime`: prepares the data directory (:mod:`.datadir`) and runs,
  watches and stops all of it (:mod:`.processes` owns the process groups);
  :mod:`.runinfo` is the typed runtime.json it hands to the hub and gateway.

This package is CLI side: it may import :mod:`pangeo_cloud.config` and the
hub, gateway and broker code it runs, never :mod:`pangeo_cloud.deploy`; the
hub and gateway processes import only :mod:`.hubconfig`, :mod:`.spawner`,
:mod:`.gateway` and what they need (:mod:`.runinfo`).
"""
