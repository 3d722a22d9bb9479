"""Hub-side behaviour of pangeo-cloud, executed inside JupyterHub.

:func:`pangeo_cloud.hub.config.configure` applies everything to a traitlets
config object: GitHub team login and groups, the refusal page, profiles
restricted to groups, and the per-user scratch environment.

In Kubernetes these modules reach the hub as source text (the hub-code
ConfigMap) and are loaded by ``z2jh_entry.py``; locally and in tests they are
imported from the installed package. Nothing here imports the CLI side
(``pangeo_cloud.config``, ``cli``, ``deploy``, ``local``), and this file
imports nothing at all, so that loading the package stays cheap.
"""
