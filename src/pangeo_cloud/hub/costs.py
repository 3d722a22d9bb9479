"""The spawn page's nudge: each size's cost next to the cheapest, from the price table.

``custom.pangeo.costs`` (generated from deployment.yaml, see
:mod:`pangeo_cloud.config.costs`) gives each profile's node: its hourly price
and allocatable CPU and memory. A server reserves the larger of its CPU and
memory shares of that node (its ``cpu_guarantee`` and ``mem_guarantee``, read
as KubeSpawner reads them), so its hourly cost is that share of the price.
:func:`annotate_profiles` appends to each profile's description what it costs
relative to the cheapest (``2× the cost of Small, about USD 0.05/hour``), which
KubeSpawner's form and the local spawner's form show under each size.
"""

from __future__ import annotations

import copy
import re
from typing import Any

_BYTES = re.compile(r"^\s*([0-9.]+)\s*([KMGT]?)\s*$")
_POWER = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def byte_spec(value: Any) -> float:
    """JupyterHub's ByteSpecification: "2G" is 2 * 1024**3 bytes; a number is bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _BYTES.match(str(value))
    if not match:
        raise ValueError(f"not a size such as 2G: {value!r}")
    return float(match.group(1)) * 1024 ** _POWER[match.group(2)]


def hourly_cost(profile: dict[str, Any], entry: dict[str, Any] | None) -> float | None:
    """The hourly cost of one server of `profile`, or None if unpriced."""
    if not entry or entry.get("pricePerHour") is None:
        return None
    override = profile.get("kubespawner_override") or {}
    try:
        cpu = float(override.get("cpu_guarantee") or 0)
        memory = byte_spec(override.get("mem_guarantee") or 0)
    except (TypeError, ValueError):
        return None
    share = max(cpu / float(entry["nodeCpu"]), memory / float(entry["nodeMemory"]))
    return float(entry["pricePerHour"]) * share


def annotate_profiles(
    profile_list: list[dict[str, Any]], costs: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """A copy of `profile_list` whose descriptions say each size's relative cost."""
    if not costs or not profile_list:
        return profile_list
    entries = costs.get("profiles") or {}
    hourly = {id(p): hourly_cost(p, entries.get(str(p.get("slug")))) for p in profile_list}
    priced = [(cost, p) for p in profile_list if (cost := hourly[id(p)])]
    if not priced:
        return profile_list
    base_cost, base = min(priced, key=lambda item: item[0])
    base_name = base.get("display_name") or base.get("slug")
    currency = costs.get("currency", "USD")
    out = []
    for profile in profile_list:
        cost = hourly[id(profile)]
        profile = copy.deepcopy(profile)
        if cost:
            note = (
                f"{cost / base_cost:.2g}× the cost of {base_name}, about {currency} "
                f"{cost:.3g}/hour."
            )
            text = str(profile.get("description") or "").rstrip()
            profile["description"] = f"{text} {note}".strip()
        out.append(profile)
    return out
