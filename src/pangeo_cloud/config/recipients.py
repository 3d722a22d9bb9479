"""Who can decrypt a secrets file, compared with who `.sops.yaml` says should.

sops writes a file's recipients (age keys, AWS KMS keys, GCP KMS keys, ...) into
its metadata when it is encrypted, from the creation rule that matched, or from
command-line flags: ``sops encrypt --age KEY`` replaces the rule's keys. A file
encrypted that way for the operators' age key only cannot be decrypted by CI's
deploy identity, which holds the KMS key; the deploy then fails at its decrypt
step, far from the cause. This module lists, per file, the recipients the rule
names that the file lacks and those it has that the rule does not name, from
the files alone (no key needed). ``sops updatekeys FILE`` (with access to the
keys) makes a file match its rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from pangeo_cloud.config.secrets import matching_rule

# Recipient kinds as .sops.yaml names them -> (metadata key, the field naming the key).
_KINDS = {
    "age": ("age", "recipient"),
    "kms": ("kms", "arn"),
    "gcp_kms": ("gcp_kms", "resource_id"),
    "pgp": ("pgp", "fp"),
    "hc_vault_transit_uri": ("hc_vault", "vault_address"),
    "azure_keyvault": ("azure_kv", "vault_url"),
}

Recipient = tuple[str, str]  # (kind, key id), e.g. ("gcp_kms", "projects/.../cryptoKeys/sops")


def _split(value: Any) -> list[str]:
    """A rule's keys: a comma-separated string or a list."""
    items = value if isinstance(value, list) else str(value or "").split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _rule_keys(rule: dict[str, Any]) -> set[Recipient]:
    """Recipients of a creation rule: top-level keys and those of its key groups."""
    found: set[Recipient] = set()
    groups = [rule, *(g for g in rule.get("key_groups") or [] if isinstance(g, dict))]
    for group in groups:
        for kind, (_, field) in _KINDS.items():
            value = group.get(kind)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, dict):  # key_groups: kms: [{arn: ...}], gcp_kms: [...]
                    item = item.get(field)
                found |= {(kind, key) for key in _split(item)}
    # "arn+role" names a role to assume with the key; the key is the ARN.
    return {(kind, key.split("+", 1)[0]) if kind == "kms" else (kind, key) for kind, key in found}


def rule_recipients(path: Path) -> tuple[str, set[Recipient]] | None:
    """(which rule, its recipients) of the `.sops.yaml` creation rule for `path`."""
    found = matching_rule(path)
    return (found[0], _rule_keys(found[1])) if found else None


def file_recipients(meta: Any) -> set[Recipient]:
    """The recipients in a file's ``sops`` metadata (top level and key groups)."""
    if not isinstance(meta, dict):
        return set()
    found: set[Recipient] = set()
    groups = [meta, *(g for g in meta.get("key_groups") or [] if isinstance(g, dict))]
    for group in groups:
        for kind, (key, field) in _KINDS.items():
            for item in group.get(key) or []:
                if isinstance(item, dict) and item.get(field):
                    found.add((kind, str(item[field])))
    return found


def _names(recipients: Iterable[Recipient]) -> str:
    return ", ".join(f"{kind} {key}" for kind, key in sorted(recipients))


def recipient_problems(path: Path, display: str | None = None) -> list[str]:
    """One line per difference between `path`'s recipients and its creation rule."""
    rule = rule_recipients(path)
    if rule is None:
        return []
    source, wanted = rule
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # the values check reports an unreadable file
    have = file_recipients(data.get("sops") if isinstance(data, dict) else None)
    name = display or str(path)
    problems = []
    if missing := wanted - have:
        problems.append(
            f"{name}: not encrypted for {_names(missing)}, which {source} names: its holder "
            "(e.g. CI's deploy identity, for a KMS key) cannot decrypt the file; run "
            f"`sops updatekeys {name}` with access to the keys"
        )
    if extra := have - wanted:
        problems.append(
            f"{name}: also encrypted for {_names(extra)}, which {source} does not name; "
            f"run `sops updatekeys {name}` to remove it, or add it to the rule"
        )
    return problems


# Keys held by a cloud (and so by a deploy identity), as opposed to people's age/pgp keys.
CLOUD_KINDS = ("kms", "gcp_kms", "azure_keyvault", "hc_vault_transit_uri")


def _cloud_keys(files: Iterable[Path]) -> dict[Recipient, Path]:
    keys: dict[Recipient, Path] = {}
    for file in files:
        rule = rule_recipients(file)
        for recipient in rule[1] if rule else ():
            if recipient[0] in CLOUD_KINDS:
                keys.setdefault(recipient, file)
    return keys


def shared_cloud_keys(
    stages: dict[str, tuple[Path, ...]], stage: str, display: Any = str
) -> list[str]:
    """Cloud keys `stage`'s secrets rules share with another stage's (one line each).

    Each stage's deploy identity may use its KMS key: a key shared by two stages
    lets staging's identity decrypt prod's secrets file, which sits in the same
    repository, and so reach prod through its tokens.
    """
    own = _cloud_keys(stages[stage])
    problems = []
    for other, files in stages.items():
        if other == stage:
            continue
        for recipient, other_file in _cloud_keys(files).items():
            if recipient in own:
                problems.append(
                    f"{display(own[recipient])}: its .sops.yaml rule names {_names([recipient])}, "
                    f"which also encrypts stage {other!r} ({display(other_file)}): each stage's "
                    "deploy identity could decrypt the other's secrets; give each stage its own key"
                )
    return problems
