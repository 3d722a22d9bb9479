"""Sizes as each consumer reads them: Kubernetes quantities and KubeSpawner byte specs.

The same text means different things to different readers, so every size is
parsed with the rules of the program that will read it:

* Kubernetes quantities (PVC capacity, node allocatable memory): ``Ki``/``Mi``/
  ``Gi``/... are powers of 1024, ``k``/``M``/``G``/... powers of 1000 (``K`` is
  not a Kubernetes suffix);
* KubeSpawner memory traits (``mem_limit``/``mem_guarantee``, fed by z2jh's
  ``singleuser.memory.*`` and profiles' ``kubespawner_override``) are JupyterHub
  ``ByteSpecification`` traits: a number of bytes, or a number followed by one of
  K, M, G, T, each a power of 1024. ``8Gi`` raises a TraitError in the hub.

Error messages suggest only spellings the reader accepts.
"""

from __future__ import annotations

import math
import re
from typing import Any

_K8S_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(\d+(\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)
_K8S_UNITS = {
    None: 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
# jupyterhub.traitlets.ByteSpecification.UNIT_SUFFIXES
BYTE_SPEC_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_NUMBER_AND_UNIT = re.compile(r"^\s*([0-9.eE+-]+)\s*([A-Za-z]*)\s*$")


def _split(value: str) -> tuple[str, str] | None:
    match = _NUMBER_AND_UNIT.match(value)
    return (match.group(1), match.group(2)) if match else None


def parse_quantity(value: Any) -> float:
    """Bytes in a Kubernetes quantity ("8G" = 8e9, "7.5Gi", 1e9); ValueError if not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(
            f"must be a Kubernetes quantity such as 8Gi or 8G, got {type(value).__name__}"
        )
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite Kubernetes quantity, got {value!r}")
        return float(value)
    match = _K8S_QUANTITY.match(value.strip())
    if not match:
        raise ValueError(f"not a quantity Kubernetes reads: {value!r}{_quantity_hint(value)}")
    suffix = match.group("suffix")
    if suffix and suffix[0] in "eE":
        return float(match.group("num") + suffix)
    return float(match.group("num")) * _K8S_UNITS[suffix]


def _quantity_hint(value: str) -> str:
    parts = _split(value)
    if parts is None:
        return " (write e.g. 8Gi: Gi/Mi are powers of 1024, G/M powers of 1000)"
    number, unit = parts
    if unit == "K":
        return f" (Kubernetes writes {number}k for 1000s or {number}Ki for 1024s)"
    if unit.upper() in ("KB", "MB", "GB", "TB", "KIB", "MIB", "GIB", "TIB"):
        letter = unit[0].upper()
        return f" (write {number}{letter}i for powers of 1024 or {number}{letter} for 1000)"
    if unit.lower() in ("ki", "mi", "gi", "ti", "g", "t"):
        return f" (suffixes are case-sensitive: {number}{unit[0].upper()}i)"
    return " (write e.g. 8Gi: Gi/Mi are powers of 1024, G/M powers of 1000)"


def parse_byte_spec(value: Any) -> int:
    """Bytes as KubeSpawner's memory traits read `value`; ValueError with a hint if refused."""
    if isinstance(value, bool):
        # The hub would take True as 1 byte: never what an operator means.
        raise ValueError(f"must be a size such as 4G, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"must be a positive size such as 4G, got {value!r}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a size such as 4G, got {type(value).__name__}")
    try:
        number = float(value[:-1])
    except ValueError:
        number = None
    if number is not None and value[-1:] in BYTE_SPEC_UNITS:
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"must be a positive size such as 4G, got {value!r}")
        return int(number * BYTE_SPEC_UNITS[value[-1]])
    raise ValueError(f"KubeSpawner cannot read {value!r}{_byte_spec_hint(value)}")


def _byte_spec_hint(value: str) -> str:
    rule = "K, M, G, T are powers of 1024"
    parts = _split(value)
    if parts is None:
        return f": write a number of bytes or a number with K, M, G or T ({rule})"
    number, unit = parts
    letter = unit[:1].upper()
    if letter in BYTE_SPEC_UNITS and unit != letter:
        return f": write {number}{letter} ({rule}; 'i' suffixes and 'B' are refused)"
    if not unit:
        return f": write {number}G, or an unquoted number of bytes ({rule})"
    return f": write a number with K, M, G or T ({rule})"


def format_bytes(value: float) -> str:
    """`value` in GiB, for messages that compare sizes."""
    return f"{value / 2**30:.1f} GiB"
