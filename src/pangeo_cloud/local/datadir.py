"""The data directory of `pangeo-cloud up` and its secrets.json.

The directory (0700) keeps what survives a restart: homes, scratch objects, the
hub database, and the generated passwords and keys (secrets.json, 0600).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from pangeo_cloud.local.errors import LocalRuntimeError


def default_data_dir(repo_root: Path | None) -> Path:
    if repo_root is not None:
        return repo_root / ".pangeo-local"
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "pangeo-cloud"


def prepare_data_dir(path: Path) -> Path:
    """Create the data directory (0700) and prove it is writable."""
    path = path.expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in ("hub", "homes", "objectstore", "gateway", "logs", "run"):
            (path / sub).mkdir(exist_ok=True, mode=0o700)
        probe = path / "run" / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise LocalRuntimeError(
            f"cannot use data directory {path}: {exc.strerror or exc}; "
            "choose another with --data-dir"
        ) from None
    return path


def _token() -> str:
    return secrets.token_urlsafe(18)


def load_secrets(data_dir: Path, groups: list[str]) -> dict[str, Any]:
    """secrets.json: generated on first start (0600), completed when new keys appear."""
    file = data_dir / "secrets.json"
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise LocalRuntimeError(
                f"cannot read {file}: {exc}; fix or delete it (new passwords are then generated)"
            ) from None
    before = json.dumps(data, sort_keys=True)
    data.setdefault("user_password", _token())
    data.setdefault("group_passwords", {})
    for group in groups:
        data["group_passwords"].setdefault(group, _token())
    data.setdefault("store_access_key", "pangeo" + secrets.token_hex(6))
    data.setdefault("store_secret_key", secrets.token_urlsafe(30))
    # The scratch broker's own MinIO user (never the root key above).
    data.setdefault("broker_access_key", "scratch-broker-" + secrets.token_hex(4))
    data.setdefault("broker_secret_key", secrets.token_urlsafe(30))
    data.setdefault("proxy_auth_token", secrets.token_hex(32))
    data.setdefault("crypt_key", secrets.token_hex(32))
    data.setdefault("health_check_token", secrets.token_hex(32))
    data.setdefault("admin_token", secrets.token_hex(32))
    data.setdefault("metrics_token", secrets.token_hex(32))
    # The `admin` user's password (JupyterHub wants 32 characters or more).
    data.setdefault("admin_password", secrets.token_urlsafe(30))
    if json.dumps(data, sort_keys=True) != before:
        write_private(file, json.dumps(data, indent=2) + "\n")
    os.chmod(file, 0o600)
    return data


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (created 0600, never wider)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
