"""What makes a ``passed/<deployment>/<stage>/<sha>`` tag a real pass.

A tag name alone proves nothing: anyone who can push a tag could name one after
any commit. A pass counts only if its tag

* is an *annotated* tag object (a lightweight tag is only a name),
* whose ``tag`` header is the ref's own name (not a tag object made under
  another name and pushed as this one),
* points directly at the commit its name ends with,
* was made by the deploy workflow's identity (:data:`DEPLOY_TAGGER`, the git
  identity `.github/workflows/deploy-release.yaml` configures before tagging), and
* carries the workflow run that made it (a ``run: .../actions/runs/<id>`` line).

The tagger of an unsigned tag is text that whoever creates the tag writes; the
checks here catch passes recorded by hand or by mistake and make every pass
traceable to a run. What stops a person from writing that text is the GitHub
tag ruleset on ``refs/tags/passed/*`` (README, "Security model"): only the
deploy workflow may create such tags, and nobody may update or delete them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pangeo_cloud.deploy.plan import git

# The git identity of GitHub Actions' bot, which the deploy workflow tags with.
DEPLOY_TAGGER_NAME = "github-actions[bot]"
DEPLOY_TAGGER_EMAIL = "41898282+github-actions[bot]@users.noreply.github.com"
DEPLOY_TAGGER = f"{DEPLOY_TAGGER_NAME} <{DEPLOY_TAGGER_EMAIL}>"
# The line record_pass writes into the message in a workflow run.
RUN_LINE = re.compile(r"^run: https://\S+/actions/runs/(?P<id>\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class TagObject:
    """The parsed headers and message of an annotated tag object."""

    object: str
    type: str
    tag: str
    tagger: str  # "Name <email>", without the date
    message: str


def read_tag(repo: Path, name: str) -> TagObject | None:
    """The annotated tag object of ref ``refs/tags/<name>``; None for a lightweight tag."""
    ref = f"refs/tags/{name}"
    if git(["cat-file", "-t", ref], repo).strip() != "tag":
        return None
    raw = git(["cat-file", "tag", ref], repo)
    head, _, message = raw.partition("\n\n")
    fields: dict[str, str] = {}
    for line in head.splitlines():
        key, _, value = line.partition(" ")
        fields.setdefault(key, value)
    # "Name <email> 1700000000 +0000": drop the date.
    tagger = re.sub(r"\s+\d+\s+[+-]\d{4}$", "", fields.get("tagger", "")).strip()
    return TagObject(
        object=fields.get("object", ""),
        type=fields.get("type", ""),
        tag=fields.get("tag", ""),
        tagger=tagger,
        message=message,
    )


def pass_problem(repo: Path, name: str, sha: str, tagger: str = DEPLOY_TAGGER) -> str | None:
    """Why tag ``name`` is not a real pass of commit ``sha`` (None: it is one)."""
    tag = read_tag(repo, name)
    if tag is None:
        return (
            f"tag {name} is a lightweight tag, not a pass: the deploy workflow records "
            "passes as annotated tags"
        )
    if tag.tag != name:
        return f"tag {name} is a tag object made as {tag.tag!r}, not as this name"
    if tag.type != "commit" or tag.object != sha:
        return (
            f"tag {name} points at {tag.type} {tag.object[:12]}, not at commit {sha[:12]} "
            "that its name claims"
        )
    if tag.tagger != tagger:
        return (
            f"tag {name} was made by {tag.tagger or 'nobody'!r}, not by the deploy "
            f"workflow ({tagger})"
        )
    if not RUN_LINE.search(tag.message):
        return (
            f"tag {name} names no workflow run (a 'run: .../actions/runs/<id>' line): "
            "it was not recorded by the deploy workflow"
        )
    return None


def run_id(repo: Path, name: str) -> str | None:
    """The workflow run id a pass tag names, if any."""
    tag = read_tag(repo, name)
    match = RUN_LINE.search(tag.message) if tag else None
    return match.group("id") if match else None
