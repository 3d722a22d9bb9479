"""The error of `pangeo-cloud up`: one line naming the option or file that fixes it."""

from __future__ import annotations

from pangeo_cloud.errors import PangeoError


class LocalRuntimeError(PangeoError):
    """A problem to report as one line, naming the option or file that fixes it."""
