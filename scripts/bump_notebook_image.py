#!/usr/bin/env python3
"""Bump the notebook image tag everywhere it is pinned (used by .github/workflows/image-bump.yaml).

Updates, keeping comments and layout (plain text edits):
  * images/notebook/image.yaml: `tag:` and `base:`, and with --versions-from-image
    the `packages:` versions read from the image itself (needs docker);
  * images/notebook/Dockerfile: the `FROM` line;
  * helm-chart/pangeo-cloud/values.yaml and deployments/*/values/*.yaml: every
    `tag:` that follows a `name: <image>` line, and every `<image>:<old tag>`.

    scripts/bump_notebook_image.py --tag 2026.12.01 [--versions-from-image]
    scripts/bump_notebook_image.py --latest          # newest YYYY.MM.DD tag on Docker Hub

Prints `bumped OLD -> NEW (N files)` or `already at NEW`; exit 0 either way.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

DATE_TAG = re.compile(r"^\d{4}\.\d{2}\.\d{2}$")
HUB_TAGS = "https://hub.docker.com/v2/repositories/{name}/tags?page_size=100&ordering=last_updated"


def latest_tag(name: str) -> str:
    with urllib.request.urlopen(HUB_TAGS.format(name=name), timeout=30) as resp:
        tags = [t["name"] for t in json.load(resp)["results"]]
    dated = sorted(t for t in tags if DATE_TAG.match(t))
    if not dated:
        raise SystemExit(f"no YYYY.MM.DD tags for {name} on Docker Hub")
    return dated[-1]


def read_image(root: Path) -> tuple[str, str]:
    text = (root / "images" / "notebook" / "image.yaml").read_text()
    name = re.search(r"^name:\s*(\S+)", text, re.M).group(1).strip("\"'")
    tag = re.search(r"^tag:\s*(\S+)", text, re.M).group(1).strip("\"'")
    return name, tag


def bump_text(text: str, name: str, old: str, new: str) -> str:
    text = text.replace(f"{name}:{old}", f"{name}:{new}")
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if re.match(rf"^\s*name:\s*[\"']?{re.escape(name)}[\"']?\s*$", line):
            for j in range(i + 1, min(i + 4, len(lines))):
                if re.match(r"^\s*tag:", lines[j]):
                    lines[j] = re.sub(rf"([\"']?){re.escape(old)}\1", rf"\g<1>{new}\g<1>", lines[j])
                    break
    text = "".join(lines)
    return re.sub(rf"^tag:\s*[\"']?{re.escape(old)}[\"']?\s*$", f'tag: "{new}"', text, flags=re.M)


def image_versions(image: str, packages: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json; "
        f"print(json.dumps({{p: m.version(p) for p in {packages!r}}}))"
    )
    out = subprocess.run(
        ["docker", "run", "--rm", image, "python", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def set_versions(text: str, versions: dict[str, str]) -> str:
    for package, version in versions.items():
        text = re.sub(rf"^(\s+{re.escape(package)}:\s*)\S+", rf'\g<1>"{version}"', text, flags=re.M)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--tag", help="the new tag (YYYY.MM.DD)")
    which.add_argument("--latest", action="store_true", help="the newest tag on Docker Hub")
    parser.add_argument(
        "--versions-from-image",
        action="store_true",
        help="refresh image.yaml packages from the image (docker run)",
    )
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args(argv)
    root = args.root
    name, old = read_image(root)
    new = args.tag or latest_tag(name)
    if not DATE_TAG.match(new):
        parser.error(f"--tag must look like YYYY.MM.DD, got {new!r}")
    files = [
        root / "images" / "notebook" / "image.yaml",
        root / "images" / "notebook" / "Dockerfile",
        root / "helm-chart" / "pangeo-cloud" / "values.yaml",
        *sorted(root.glob("deployments/*/values/*.yaml")),
    ]
    changed = []
    for file in files:
        if not file.is_file():
            continue
        before = file.read_text()
        after = bump_text(before, name, old, new) if old != new else before
        if file.name == "image.yaml" and args.versions_from_image:
            packages = re.findall(
                r"^\s{2}([A-Za-z0-9_.-]+):", after.split("packages:", 1)[-1], re.M
            )
            after = set_versions(after, image_versions(f"{name}:{new}", packages))
        if after != before:
            file.write_text(after)
            changed.append(file.relative_to(root).as_posix())
    if old == new and not changed:
        print(f"already at {new}")
    else:
        print(f"bumped {old} -> {new} ({len(changed)} files): {', '.join(changed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
