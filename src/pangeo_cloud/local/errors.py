"""The error of `pangeo-cloud up`: one line naming the option or file that fixes it."""

from __future__ import annotations


class LocalRuntimeError(RuntimeError):
    """A problem to report as one line, naming the option or file that fixes it."""
