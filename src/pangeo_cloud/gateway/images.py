"""Which images a user's Dask cluster may run: the deployment's allowlist.

``jupyterhub.custom.pangeo.gateway.imageAllowlist`` holds patterns such as
``pangeo/pangeo-notebook:*`` (pangeo-cloud's generated layer fills in the
notebook image's repository when it is unset). ``*`` stands for any run of the
characters of a tag or a digest (letters, digits, ``_ . -``), never ``/ : @``,
so a pattern cannot be stretched to another repository. An image that matches
no pattern is refused with one message naming the patterns; with no patterns
at all, only the deployment's default image runs (an empty ``image`` option).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WILDCARD = "[A-Za-z0-9_.-]*"


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "".join(
            _WILDCARD if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)
        )
    )


def check_image(image: str, patterns: Iterable[str]) -> None:
    """Raise ValueError (shown to the user) unless ``image`` matches a pattern."""
    patterns = list(patterns)
    if any(_compile(p).fullmatch(image) for p in patterns):
        return
    allowed = ", ".join(repr(p) for p in patterns) or "none (leave `image` empty)"
    raise ValueError(
        f"image {image!r} is not allowed on this deployment; allowed images: {allowed}"
    )
