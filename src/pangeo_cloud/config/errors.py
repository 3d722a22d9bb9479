"""Error types of the configuration layer: each names file, line and key path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pangeo_cloud.errors import PangeoError


def format_key_path(path: tuple[str | int, ...] | list[str | int]) -> str:
    """Render a key path as `a.b[0].c` (the form used in every message)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top>"


@dataclass
class ConfigError(PangeoError):
    """A problem in an operator's files, reported before any action is taken."""

    message: str
    file: Path | str | None = None
    line: int | None = None
    key_path: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key_path}: " if self.key_path else ""
        return f"{where}{key}{self.message}"


class ConfigErrors(ConfigError):
    """Several problems found at once (e.g. every plaintext value of a sops file)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.message, first.file, first.line, first.key_path)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


def error_list(exc: ConfigError) -> list[ConfigError]:
    """The single errors inside `exc` (itself unless it is a ConfigErrors)."""
    return list(exc.errors) if isinstance(exc, ConfigErrors) else [exc]
