"""Configuration: load deployment files, layer values, validate them.

Data flows one way: files -> :mod:`model` (deployment.yaml) -> :mod:`layering`
(merged Helm values) -> helm or the local runtime. Nothing here touches a cluster.
"""

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.layering import Layer, merged_values, values_layers
from pangeo_cloud.config.model import Deployment, Stage, list_deployments, load_deployment
from pangeo_cloud.config.paths import Paths
from pangeo_cloud.config.target import Target, resolve_target

__all__ = [
    "ConfigError",
    "Deployment",
    "Layer",
    "Paths",
    "Stage",
    "Target",
    "list_deployments",
    "load_deployment",
    "merged_values",
    "resolve_target",
    "values_layers",
]
