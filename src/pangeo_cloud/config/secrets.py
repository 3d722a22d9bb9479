"""Offline checks of sops-encrypted values files, and keeping secrets out of output.

Without any key, a sops file can still be checked for the mistakes operators
make: a value left in plaintext under a key that sops encrypts (by the rule of
`.sops.yaml` for this path, or the rule recorded in the file's own metadata), a
malformed `ENC[...]` value (a truncated paste), and missing or malformed `sops`
metadata (`mac`, `version`, recipients). With a key, `sops decrypt` verifies the
MAC (see :mod:`pangeo_cloud.deploy.sops`). Messages never contain a value.

:func:`mask_secrets` is what every printing path uses before values reach a
terminal or a log.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pangeo_cloud.config.errors import ConfigError
from pangeo_cloud.config.yamlpos import Document, KeyPath

SOPS_MASK = "<sops-encrypted>"
# sops' value format: AES-256-GCM with a 32-byte IV and a 16-byte tag.
_ENC = re.compile(
    r"^ENC\[AES256_GCM,data:(?P<data>[^,\]]*),iv:(?P<iv>[^,\]]*),"
    r"tag:(?P<tag>[^,\]]*),type:(?P<type>[^,\]]*)\]$"
)
_ENC_TYPES = ("str", "int", "float", "bool", "bytes", "comment")
_RECIPIENT_KINDS = ("age", "kms", "gcp_kms", "azure_kv", "hc_vault", "pgp")
# sops' own default: keys ending in this suffix stay in plaintext.
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
# The keys masked in output when no sops rule is known.
DEFAULT_SECRET_KEYS = (
    r"^(client_id|client_secret|apiToken|api_token|.*[Tt]oken|.*[Ss]ecret|.*[Pp]assword)$"
)
_RULE_KEYS = ("encrypted_regex", "unencrypted_regex", "encrypted_suffix", "unencrypted_suffix")


@dataclass(frozen=True)
class SopsRule:
    """Which keys sops encrypts (the `*_regex` / `*_suffix` options of a creation rule)."""

    source: str
    encrypted_regex: str | None = None
    unencrypted_regex: str | None = None
    encrypted_suffix: str | None = None
    unencrypted_suffix: str | None = None

    @classmethod
    def from_mapping(cls, source: str, raw: dict[str, Any]) -> SopsRule:
        return cls(source, **{k: str(raw[k]) for k in _RULE_KEYS if raw.get(k)})

    def describe(self) -> str:
        for key in ("encrypted_regex", "encrypted_suffix", "unencrypted_regex"):
            if getattr(self, key):
                return f"{key} {getattr(self, key)!r} of {self.source}"
        suffix = self.unencrypted_suffix or DEFAULT_UNENCRYPTED_SUFFIX
        return f"{self.source} (every value is encrypted, except under keys ending in {suffix})"

    def encrypts(self, keys: list[str]) -> bool:
        """Whether sops encrypts a leaf reached through mapping keys `keys`."""
        if self.unencrypted_suffix and any(k.endswith(self.unencrypted_suffix) for k in keys):
            return False
        if self.encrypted_suffix:
            return any(k.endswith(self.encrypted_suffix) for k in keys)
        if self.unencrypted_regex:
            return not any(_search(self.unencrypted_regex, k) for k in keys)
        if self.encrypted_regex:
            return any(_search(self.encrypted_regex, k) for k in keys)
        return not any(k.endswith(DEFAULT_UNENCRYPTED_SUFFIX) for k in keys)


def _search(pattern: str, key: str) -> bool:
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return False


def find_sops_config(start: Path) -> Path | None:
    """The `.sops.yaml` sops would use for a file under `start` (nearest parent)."""
    for directory in [start, *start.parents]:
        candidate = directory / ".sops.yaml"
        if candidate.is_file():
            return candidate
    return None


def matching_rule(path: Path) -> tuple[str, dict[str, Any]] | None:
    """(its name, the rule) of the first `.sops.yaml` creation rule matching `path`."""
    config = find_sops_config(path.resolve().parent)
    if config is None:
        return None
    try:
        raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    rel = path.resolve().relative_to(config.parent.resolve()).as_posix()
    for index, rule in enumerate(raw.get("creation_rules") or []):
        if not isinstance(rule, dict):
            continue
        pattern = rule.get("path_regex")
        if pattern is None or _search(str(pattern), rel):
            return f".sops.yaml creation_rules[{index}]", rule
    return None


def creation_rule(path: Path) -> SopsRule | None:
    """The first `.sops.yaml` creation rule whose path_regex matches `path`."""
    found = matching_rule(path)
    return SopsRule.from_mapping(*found) if found else None


def enc_problem(value: str) -> str | None:
    """What is wrong with an `ENC[...]` value, or None if it is well formed."""
    match = _ENC.match(value)
    if not match:
        return (
            "malformed sops value: expected ENC[AES256_GCM,data:...,iv:...,tag:...,type:...] "
            "(truncated or edited by hand?); re-encrypt with `sops edit`"
        )
    sizes = {"iv": 32, "tag": 16}
    for part in ("data", "iv", "tag"):
        try:
            raw = base64.b64decode(match.group(part), validate=True)
        except (binascii.Error, ValueError):
            return f"malformed sops value: {part} is not base64; re-encrypt with `sops edit`"
        if part in sizes and len(raw) != sizes[part]:
            return (
                f"malformed sops value: {part} has {len(raw)} bytes, sops writes "
                f"{sizes[part]}; re-encrypt with `sops edit`"
            )
    if match.group("type") not in _ENC_TYPES:
        return (
            f"malformed sops value: type must be one of {', '.join(_ENC_TYPES)}; "
            "re-encrypt with `sops edit`"
        )
    return None


def _leaves(value: Any, path: KeyPath) -> list[tuple[KeyPath, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    return [(path, value)]


def _metadata_errors(doc: Document, meta: Any) -> list[ConfigError]:
    if not isinstance(meta, dict):
        return [doc.error(("sops",), "sops metadata must be a mapping; re-encrypt the file")]
    errors = []
    mac = meta.get("mac")
    if not isinstance(mac, str) or not mac:
        errors.append(
            doc.error(
                ("sops", "mac"),
                "missing sops MAC: the file cannot be verified; re-encrypt it with sops",
            )
        )
    elif (problem := enc_problem(mac)) is not None:
        errors.append(doc.error(("sops", "mac"), problem.replace("sops value", "sops MAC")))
    if not meta.get("version"):
        errors.append(doc.error(("sops",), "sops metadata has no `version`; re-encrypt the file"))
    groups = [meta, *(g for g in meta.get("key_groups") or [] if isinstance(g, dict))]
    if not any(group.get(kind) for group in groups for kind in _RECIPIENT_KINDS):
        errors.append(
            doc.error(
                ("sops",),
                "sops metadata lists no recipient (age, kms, gcp_kms, ...): nobody can "
                "decrypt it; re-encrypt with the rule of .sops.yaml",
            )
        )
    return errors


def sops_file_errors(doc: Document, rule: SopsRule | None = None) -> list[ConfigError]:
    """Every offline problem of one loaded sops file (values are never quoted)."""
    data = doc.data if isinstance(doc.data, dict) else {}
    meta = data.get("sops")
    errors = _metadata_errors(doc, meta)
    rules = [rule] if rule else []
    if isinstance(meta, dict):
        rules.append(SopsRule.from_mapping("the file's sops metadata", meta))
    for path, value in _leaves({k: v for k, v in data.items() if k != "sops"}, ()):
        if isinstance(value, str) and value.startswith("ENC["):
            problem = enc_problem(value)
            if problem is not None:
                errors.append(doc.error(path, problem))
            continue
        if value is None:
            continue
        keys = [k for k in path if isinstance(k, str)]
        wanting = [r for r in rules if r.encrypts(keys)]
        if wanting:
            errors.append(
                doc.error(
                    path,
                    "plaintext value in a sops file: this key is encrypted by the "
                    f"{wanting[0].describe()}; encrypt the file again (`sops edit` or "
                    "`sops encrypt`), and rotate the secret if it was pushed",
                )
            )
    return sorted(errors, key=lambda e: e.line or 0)


def plain_values_errors(doc: Document, key_regex: str = DEFAULT_SECRET_KEYS) -> list[ConfigError]:
    """Secrets in a plain values file: a sops file listed as values, or a secret-looking value."""
    data = doc.data if isinstance(doc.data, dict) else {}
    if "sops" in data:
        return [
            doc.error(
                ("sops",),
                "this is a sops-encrypted file: list it under the stage's secretsFiles, "
                "not valuesFiles (Helm would get the ciphertext)",
            )
        ]
    errors = []
    for path, value in _leaves(data, ()):
        keys = [k for k in path if isinstance(k, str)]
        if (
            isinstance(value, str | int | float)
            and not isinstance(value, bool)
            and str(value)
            and any(_search(key_regex, k) for k in keys)
        ):
            errors.append(
                doc.error(
                    path,
                    "looks like a secret in a plain values file: move it to the stage's "
                    "sops-encrypted secrets file (and rotate it if it was pushed)",
                )
            )
    return errors


def encrypted_paths(data: Any) -> list[KeyPath]:
    """Key paths of a sops file holding `ENC[...]` values."""
    return [
        path
        for path, value in _leaves(data, ())
        if path[:1] != ("sops",) and isinstance(value, str) and value.startswith("ENC[")
    ]


def mask_secrets(values: Any, paths: list[KeyPath], key_regex: str = DEFAULT_SECRET_KEYS) -> Any:
    """A copy of `values` with every secret leaf replaced by the mask.

    Secret leaves are those at `paths` (where a sops file had ciphertext) and
    every non-empty leaf under a key matching `key_regex`.
    """
    secret = {tuple(p) for p in paths}

    def walk(value: Any, path: KeyPath, inside: bool) -> Any:
        if isinstance(value, dict):
            return {
                k: walk(v, (*path, k), inside or _search(key_regex, str(k)))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v, (*path, i), inside) for i, v in enumerate(value)]
        if (inside or path in secret) and value not in (None, "", SOPS_MASK):
            return SOPS_MASK
        return value

    return walk(values, (), False)
