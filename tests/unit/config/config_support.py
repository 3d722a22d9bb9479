"""Helpers for config tests (imported by name): well-formed sops values for offline checks."""

from __future__ import annotations

import base64
import hashlib

AGE_RECIPIENT = "age133rraykxf9u7z6rrfecfsl7umsyh6nnd3e4tku0jp0nt7lx5aaqswpwmg7"


def enc(seed: str, size: int = 24, kind: str = "str") -> str:
    """A syntactically valid sops value (not decryptable: for offline checks only)."""

    def b64(label: str, n: int) -> str:
        raw = hashlib.sha512(f"{label}{seed}".encode()).digest() * 4
        return base64.b64encode(raw[:n]).decode()

    return f"ENC[AES256_GCM,data:{b64('d', size)},iv:{b64('i', 32)},tag:{b64('t', 16)},type:{kind}]"


def sops_block(
    mac: str | None = None,
    extra: str = "",
    rule: str = "  encrypted_regex: ^(client_id|client_secret|apiToken|.*[Tt]oken|.*[Ss]ecret)$\n",
) -> str:
    """The `sops:` metadata block of a file encrypted to the operators' age key."""
    mac = enc("mac", 128) if mac is None else mac
    return (
        "sops:\n"
        "  age:\n"
        f"    - recipient: {AGE_RECIPIENT}\n"
        "      enc: |\n"
        "        -----BEGIN AGE ENCRYPTED FILE-----\n"
        "        -----END AGE ENCRYPTED FILE-----\n"
        + rule
        + '  lastmodified: "2026-11-25T13:11:43Z"\n'
        + (f"  mac: {mac}\n" if mac else "")
        + "  version: 3.13.3\n"
        + extra
    )
