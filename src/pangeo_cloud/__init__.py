"""pangeo-cloud: a JupyterHub + Dask Gateway federation kept as code."""

__version__ = "0.1.0"
