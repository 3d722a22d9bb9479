"""YAML loading that remembers where every key came from (file and line).

Values are returned as plain dicts and lists; a side table maps each key path to
its 1-based line so that any later check can point the operator at the spot.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from pangeo_cloud.config.errors import ConfigError, format_key_path

KeyPath = tuple[str | int, ...]


@dataclass
class Document:
    """A loaded YAML file: its data and the line of every key path in it."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key_path: KeyPath) -> int | None:
        """The line of the deepest known prefix of `key_path`."""
        for n in range(len(key_path), -1, -1):
            line = self.lines.get(tuple(key_path[:n]))
            if line is not None:
                return line
        return None

    def error(self, key_path: KeyPath, message: str) -> ConfigError:
        return ConfigError(
            message, file=self.path, line=self.line_of(key_path), key_path=format_key_path(key_path)
        )


def _plain(node: Any, path: KeyPath, lines: dict[KeyPath, int]) -> Any:
    """Convert ruamel's round-trip nodes to plain Python, recording lines."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            with contextlib.suppress(KeyError, TypeError):
                lines[child] = node.lc.key(key)[0] + 1
            out[str(key)] = _plain(value, child, lines)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            with contextlib.suppress(KeyError, TypeError, IndexError):
                lines[child] = node.lc.item(index)[0] + 1
            items.append(_plain(value, child, lines))
        return items
    if hasattr(node, "__class__") and node.__class__.__module__.startswith("ruamel"):
        # Scalars with style (ScalarFloat, LiteralScalarString, ...): plain types.
        for kind in (bool, int, float, str):
            if isinstance(node, kind):
                return kind(node)
    return node


def load_yaml(path: Path | str, *, text: str | None = None) -> Document:
    """Load one YAML document, or raise ConfigError naming file and line."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file not found", file=path) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=path) from None
    yaml = YAML(typ="rt")
    try:
        node = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {exc.problem}", file=path, line=line) from None
    lines: dict[KeyPath, int] = {(): 1}
    return Document(path=path, data=_plain(node, (), lines), lines=lines)
