"""The errors that stop the hub from starting on values that cannot work.

Kept apart from :mod:`pangeo_cloud.hub.config` so that the modules it wires
(auth, profiles) can raise them without importing the entry point back.
"""

from __future__ import annotations

from pangeo_cloud.scratch import ScratchConfigError


class HubConfigError(ValueError):
    """The values cannot make a working hub; the message names the key."""


# What z2jh_entry.py turns into one FATAL line and a non-zero exit.
CONFIG_ERRORS = (HubConfigError, ScratchConfigError)
