"""One deployment stage as a command resolves it, once: deployment, stage, repository paths.

Each command turns its DEPLOYMENT STAGE arguments into a :class:`Target` and
passes it down (validate, dry run, deploy, diff, the promotion check), so no
step looks the stage up by name again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pangeo_cloud.config.model import Deployment, Stage, load_deployment
from pangeo_cloud.config.paths import Paths


@dataclass(frozen=True)
class Target:
    """The deployment stage a command works on."""

    deployment: Deployment
    stage: Stage
    paths: Paths

    @property
    def name(self) -> str:
        """``deployment/stage``, as messages name it."""
        return f"{self.deployment.name}/{self.stage.name}"


def resolve_target(deployment: Deployment | str, stage: str, paths: Paths) -> Target:
    """The target for DEPLOYMENT STAGE; an unknown deployment or stage is a ConfigError."""
    if isinstance(deployment, str):
        deployment = load_deployment(deployment, paths)
    return Target(deployment, deployment.stage(stage), paths)
