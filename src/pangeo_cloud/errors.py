"""The root of the errors the `pangeo-cloud` command reports as one line.

Config, tool, local-runtime, deploy, health and promotion errors all derive
from :class:`PangeoError`, so :func:`pangeo_cloud.cli.main` catches them in one
place; anything else escaping a command is a bug of ours (an internal error).
Hub- and gateway-side errors are not here: that code runs in the hub and
gateway processes and imports nothing from the CLI side.
"""

from __future__ import annotations


class PangeoError(Exception):
    """A problem the operator can fix; the message is one clear line."""
