"""YAML loading that remembers where every key came from (file and line).

Values are returned as plain dicts and lists; a side table maps each key path to
its 1-based line so that any later check can point the operator at the spot.
"""

from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode
from ruamel.yaml.reader import ReaderError

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


# A values file this large is a mistake (a pasted binary, a log): Helm stores the
# release's values in a Secret limited to 1 MiB, so nothing bigger can deploy.
MAX_FILE_BYTES = 1024 * 1024
# Aliases can expand a small file into an enormous tree ("billion laughs").
MAX_NODES = 200_000


class _Budget:
    """Counts converted nodes so that alias bombs stop early."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.left = MAX_NODES

    def spend(self, key_path: KeyPath) -> None:
        self.left -= 1
        if self.left < 0:
            raise ConfigError(
                f"more than {MAX_NODES} values (aliases expanding?): values files are small "
                "mappings; remove the repeated anchors/aliases",
                file=self.path,
                key_path=format_key_path(key_path),
            )


def dig(values: Any, path: KeyPath, default: Any = None) -> Any:
    """The value at `path` in nested dicts and lists, or `default` if absent."""
    for key in path:
        in_map = isinstance(values, dict) and key in values
        in_list = isinstance(values, list) and isinstance(key, int) and 0 <= key < len(values)
        if not (in_map or in_list):
            return default
        values = values[key]
    return values


def _plain(node: Any, path: KeyPath, lines: dict[KeyPath, int], budget: _Budget) -> Any:
    """Convert ruamel's round-trip nodes to plain Python, recording lines."""
    budget.spend(path)
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            with contextlib.suppress(KeyError, TypeError):
                lines[child] = node.lc.key(key)[0] + 1
            out[str(key)] = _plain(value, child, lines, budget)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            child = (*path, index)
            with contextlib.suppress(KeyError, TypeError, IndexError):
                lines[child] = node.lc.item(index)[0] + 1
            items.append(_plain(value, child, lines, budget))
        return items
    if isinstance(node, TaggedScalar):
        raise ConfigError(
            f"unsupported YAML tag {node.tag.value!r}: Helm values are plain YAML "
            "(mappings, lists, strings, numbers, booleans)",
            file=budget.path,
            line=lines.get(path),
            key_path=format_key_path(path),
        )
    if isinstance(node, datetime.date | bytes):
        # Helm reads timestamps and !!binary differently; say which form to write.
        raise ConfigError(
            f"a {type(node).__name__} value: quote it to pass a string",
            file=budget.path,
            line=lines.get(path),
            key_path=format_key_path(path),
        )
    if hasattr(node, "__class__") and node.__class__.__module__.startswith("ruamel"):
        # Scalars with style (ScalarFloat, LiteralScalarString, ...): plain types.
        for kind in (bool, int, float, str):
            if isinstance(node, kind):
                return kind(node)
    return node


def _read(path: Path) -> str:
    """The file's text as UTF-8, or a ConfigError saying what is wrong with it."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"file is {size / 2**20:.1f} MiB; values files over "
                f"{MAX_FILE_BYTES // 2**20} MiB are refused (Helm keeps a release's values "
                "in a 1 MiB Secret): is this the right file?",
                file=path,
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
            "save the file as UTF-8",
            file=path,
            line=line,
        ) from None


def _duplicate_key(text: str) -> tuple[KeyPath, int, int] | None:
    """The first duplicate key: its key path, its line, and the first definition's line."""
    try:
        root = YAML(typ="rt").compose(text)
    except (YAMLError, RecursionError):
        return None
    stack: list[tuple[Node, KeyPath]] = [(root, ())] if root is not None else []
    while stack:
        node, path = stack.pop()
        if isinstance(node, MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    return (*path, key), line, seen[key]
                seen[key] = line
                stack.append((value_node, (*path, key)))
        elif isinstance(node, SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return None


def _hint(problem: str, text: str, line: int | None) -> str:
    """What to do about a YAML syntax error, in the operator's terms."""
    source = text.splitlines()[line - 1] if line and line <= len(text.splitlines()) else ""
    if "\t" in problem or "\t" in source[: len(source) - len(source.lstrip())]:
        return "a tab character: indent with spaces, not tabs"
    if "mapping values are not allowed" in problem:
        return f"{problem}: check this line's indentation, or quote a value that contains ': '"
    if "could not find expected ':'" in problem or "expected <block end>" in problem:
        return f"{problem}: check the indentation (keys of one mapping line up)"
    if "another document" in problem:
        return f"{problem}: a values file is one YAML document; remove the extra '---'"
    return problem


def _syntax_error(path: Path, text: str, exc: MarkedYAMLError) -> ConfigError:
    duplicate = _duplicate_key(text) if isinstance(exc, DuplicateKeyError) else None
    if duplicate is not None:
        key_path, line, first = duplicate
        return ConfigError(
            f"duplicate key, first defined at line {first}",
            file=path,
            line=line,
            key_path=format_key_path(key_path),
        )
    mark = exc.problem_mark
    line = mark.line + 1 if mark is not None else None
    return ConfigError(f"invalid YAML: {_hint(str(exc.problem), text, line)}", file=path, line=line)


def load_yaml(path: Path | str, *, text: str | None = None) -> Document:
    """Load one YAML document, or raise ConfigError naming file and line."""
    path = Path(path)
    if text is None:
        text = _read(path)
    yaml = YAML(typ="rt")
    try:
        node = yaml.load(text)
    except MarkedYAMLError as exc:
        raise _syntax_error(path, text, exc) from None
    except ReaderError as exc:  # a control character: the position is all we get
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        raise ConfigError(
            f"invalid YAML: control character #x{code:04x}: remove it (binary data pasted?)",
            file=path,
            line=line,
        ) from None
    except YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"invalid YAML: {first}", file=path) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=path) from None
    lines: dict[KeyPath, int] = {(): 1}
    return Document(path=path, data=_plain(node, (), lines, _Budget(path)), lines=lines)
