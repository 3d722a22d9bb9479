"""sops: decrypting the deployments' secrets files and containing the plaintext.

This module owns everything that touches decrypted secrets:

* running the real ``sops decrypt`` (keys come from sops' usual sources: an age
  key in ``SOPS_AGE_KEY_FILE`` / ``SOPS_AGE_KEY`` / ``~/.config/sops/age/keys.txt``,
  or cloud KMS credentials) and turning its failures into one clear line;
* :class:`SopsDecryptor`, the ``decrypt`` callable for
  :func:`pangeo_cloud.config.layering.values_layers`; plaintext stays in memory;
* :func:`plaintext_dir` / :func:`decrypted_files`, the only way plaintext reaches
  disk: 0600 files in a 0700 temporary directory (in ``/dev/shm`` when it exists,
  so in memory there too) that is removed on every exit path: normal return, an
  exception, SIGINT and SIGTERM (SIGTERM is turned into :class:`Terminated`, a
  ``KeyboardInterrupt``, while the directory exists).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pangeo_cloud.deploy.tools import ToolError, find_tool, run


class SopsError(ToolError):
    """A secrets file cannot be decrypted; the message is one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while decrypted secrets were on disk (cleanup still runs)."""


def sops_metadata(path: Path) -> dict[str, Any] | None:
    """The `sops` metadata block of an encrypted YAML file (None if absent)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    meta = data.get("sops") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else None


def recipients(path: Path) -> list[str]:
    """Who can decrypt `path`: age recipients and KMS keys, as `kind:id` strings."""
    meta = sops_metadata(path) or {}
    groups = [meta, *(meta.get("key_groups") or [])]
    out: list[str] = []
    for group in groups:
        for item in group.get("age") or []:
            out.append(f"age:{item.get('recipient')}")
        for item in group.get("gcp_kms") or []:
            out.append(f"gcp_kms:{item.get('resource_id')}")
        for item in group.get("kms") or []:
            out.append(f"aws_kms:{item.get('arn')}")
        for item in group.get("azure_kv") or []:
            out.append(f"azure_kv:{item.get('vaultUrl')}/{item.get('name')}")
        for item in group.get("hc_vault") or []:
            out.append(f"vault:{item.get('vault_address')}/{item.get('key_name')}")
        for item in group.get("pgp") or []:
            out.append(f"pgp:{item.get('fp')}")
    return out


def _explain(path: Path, stderr: str, env: dict[str, str]) -> str:
    """One line saying why sops could not decrypt `path`."""
    who = ", ".join(recipients(path)) or "unknown recipients"
    text = " ".join(line.strip(" |-") for line in stderr.splitlines())
    key_file = env.get("SOPS_AGE_KEY_FILE")
    if "sops metadata not found" in text:
        return f"{path}: not sops-encrypted (no `sops` metadata)"
    if "MAC mismatch" in text:
        return f"{path}: sops MAC mismatch: the file was changed without sops; re-encrypt it"
    if "did not match any of the recipients" in text or "incorrect identity" in text:
        where = f"SOPS_AGE_KEY_FILE={key_file}" if key_file else "the available age keys"
        return f"cannot decrypt {path}: the key in {where} is not one of its recipients ({who})"
    if "could not find default credentials" in text:
        return (
            f"cannot decrypt {path}: no age key and no Google credentials for its KMS "
            f"key ({who}); set SOPS_AGE_KEY_FILE or authenticate to GCP"
        )
    if "failed to load age identities" in text or "Did not find keys" in text:
        return (
            f"cannot decrypt {path}: no decryption key found; set SOPS_AGE_KEY_FILE to "
            f"an age key file or authenticate to the cloud KMS ({who})"
        )
    if key_file and not Path(key_file).is_file():
        return f"cannot decrypt {path}: SOPS_AGE_KEY_FILE={key_file} does not exist"
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "no output")
    return f"cannot decrypt {path} ({who}): sops: {first}"


class SopsDecryptor:
    """Decrypts sops YAML files with the real `sops`, caching plaintext in memory.

    Usable as ``values_layers(..., decrypt=SopsDecryptor())``. Call :meth:`clear`
    (or use it as a context manager) to drop the cached plaintext.
    """

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self._cache: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        path = Path(path)
        key = path.resolve()
        if key not in self._cache:
            self._cache[key] = self._decrypt(path)
        return self._cache[key]

    def _decrypt(self, path: Path) -> str:
        if not path.is_file():
            raise SopsError(f"secrets file not found: {path}")
        if sops_metadata(path) is None:
            raise SopsError(f"{path}: not sops-encrypted (no `sops` metadata)")
        key_file = self.env.get("SOPS_AGE_KEY_FILE")
        if key_file and not Path(key_file).is_file():
            raise SopsError(f"cannot decrypt {path}: SOPS_AGE_KEY_FILE={key_file} does not exist")
        result = run(
            [
                find_tool("sops"),
                "decrypt",
                "--input-type",
                "yaml",
                "--output-type",
                "yaml",
                str(path),
            ],
            check=False,
            env=self.env,
            timeout=120,
        )
        if result.returncode != 0:
            raise SopsError(_explain(path, result.stderr, self.env))
        return result.stdout

    def clear(self) -> None:
        self._cache.clear()

    def __enter__(self) -> SopsDecryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


@dataclass
class PlaintextDir:
    """A private temporary directory for decrypted files (see :func:`plaintext_dir`)."""

    path: Path
    files: list[Path] = field(default_factory=list)

    def write(self, name: str, text: str) -> Path:
        """Create `name` with mode 0600 (never readable by others, even briefly)."""
        target = self.path / name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        self.files.append(target)
        return target


def _memory_tmp() -> str | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return str(shm)
    return None


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"received signal {signal.Signals(signum).name}")


@contextmanager
def plaintext_dir(prefix: str = "pangeo-secrets-") -> Iterator[PlaintextDir]:
    """A 0700 temporary directory, removed on return, exception, SIGINT and SIGTERM."""
    handled = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if handled else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=_memory_tmp()))
    try:
        path.chmod(0o700)
        yield PlaintextDir(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if handled:
            signal.signal(signal.SIGTERM, previous)


def temp_name(source: Path) -> str:
    """Plaintext file name for `<deployment>/secrets/<stage>.enc.yaml`."""
    stem = source.name.removesuffix(".yaml").removesuffix(".enc")
    return f"{source.parent.parent.name}--{stem}.yaml"


@contextmanager
def decrypted_files(
    files: Iterable[Path], decrypt: SopsDecryptor | None = None
) -> Iterator[list[Path]]:
    """Decrypt each file into a 0600 temp file; all are removed on every exit path."""
    decrypt = decrypt or SopsDecryptor()
    with plaintext_dir() as tmp:
        yield [
            tmp.write(f"{index:02d}-{temp_name(Path(f))}", decrypt(Path(f)))
            for index, f in enumerate(files)
        ]
