#!/usr/bin/env python3
"""Write helm-chart/pangeo-cloud/Chart.lock from Chart.yaml without network.

`helm dependency update` needs the chart repositories to write the lock; these
machines cannot reach them. The lock only records the pinned versions and a
digest of (requirements, locked) computed as Helm does (sha256 over Go's JSON
encoding of the two lists), so we compute it here. `helm dependency build`
accepts the result and fetches exactly these versions on a machine with network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

import yaml

# Go's json.Marshal order and omitempty rules for helm's chart.Dependency.
FIELDS = [
    ("name", False),
    ("version", True),
    ("repository", False),
    ("condition", True),
    ("tags", True),
    ("enabled", True),
    ("import-values", True),
    ("alias", True),
]


def go_dependency(dep: dict) -> dict:
    out = {}
    for key, omitempty in FIELDS:
        value = dep.get(key, "" if key in ("name", "repository") else None)
        if omitempty and not value:
            continue
        out[key] = value
    return out


def digest(requirements: list[dict], locked: list[dict]) -> str:
    data = json.dumps(
        [[go_dependency(d) for d in requirements], [go_dependency(d) for d in locked]],
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def main() -> int:
    chart = Path(sys.argv[1] if len(sys.argv) > 1 else "helm-chart/pangeo-cloud")
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    reqs = [{k: v for k, v in d.items()} for d in meta.get("dependencies", [])]
    for d in reqs:
        d["version"] = str(d["version"])
    locked = [
        {"name": d["name"], "repository": d["repository"], "version": d["version"]} for d in reqs
    ]
    lock_file = chart / "Chart.lock"
    new_digest = digest(reqs, locked)
    if lock_file.is_file() and yaml.safe_load(lock_file.read_text()).get("digest") == new_digest:
        print(f"{lock_file} is up to date")
        return 0
    lock = {
        "dependencies": locked,
        "digest": new_digest,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z"),
    }
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))
    print(f"wrote {lock_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
