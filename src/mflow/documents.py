"""Read a JSON or YAML input file; find the line and column of any value, on demand.

Parsing uses the fast C parser; positions are only worked out when a problem must be
reported, so valid files pay nothing for them.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from mflow.errors import InvalidFilesError, Problem

Path_ = tuple[str | int, ...]

_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")


@dataclass
class Document:
    """A parsed input file and the means to locate its values."""

    path: Path
    display: str
    text: str
    data: Any
    _positions: dict[Path_, int] | None = field(default=None, repr=False)
    _line_starts: list[int] | None = field(default=None, repr=False)

    def locate(self, *where: str | int) -> tuple[int, int]:
        """Line and column (1-based) of the value at `where`, or of its nearest parent."""
        if self._positions is None:
            self._positions = _positions(self.text, self.path.suffix)
        offsets = self._positions
        key: Path_ = tuple(where)
        while key and key not in offsets:
            key = key[:-1]
        if key not in offsets:
            return (0, 0)
        offset = offsets[key]
        if self._line_starts is None:  # found once, so a file with many problems stays fast
            self._line_starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def problem(
        self, *where: str | int, task_id: str | None = None, key: str | None = None, message: str
    ) -> Problem:
        line, column = self.locate(*where)
        return Problem(self.display, line, column, task_id, key, message)


def is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def load_document(path: Path, what: str) -> Document:
    """Parse `path`; a missing, unreadable or malformed file raises InvalidFilesError."""
    display = str(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise InvalidFilesError([Problem(display, message=f"{what} is not a regular file")])
        # utf-8-sig: a byte order mark (Windows editors write one) is dropped, not an error
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidFilesError([Problem(display, message=f"{what} not found")]) from None
    except IsADirectoryError:
        raise InvalidFilesError(
            [Problem(display, message=f"{what} is a folder, not a file")]
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidFilesError([_not_utf8(path, display, what, exc)]) from None
    except (OSError, ValueError) as exc:
        raise InvalidFilesError([Problem(display, message=f"cannot read {what}: {exc}")]) from None
    if is_yaml(path):
        data = _parse_yaml(text, display)
    else:
        try:
            data = _parse_json(text, display)
        except json.JSONDecodeError as exc:
            raise InvalidFilesError(
                [Problem(display, exc.lineno, exc.colno, message=f"malformed JSON: {exc.msg}")]
            ) from None
        except RecursionError:
            raise InvalidFilesError(
                [Problem(display, message="malformed JSON: nested too deeply")]
            ) from None
        except ValueError as exc:  # e.g. an integer of thousands of digits
            raise InvalidFilesError([Problem(display, message=f"malformed JSON: {exc}")]) from None
    return Document(path, display, text, data)


def _not_utf8(path: Path, display: str, what: str, exc: UnicodeDecodeError) -> Problem:
    """Where the first byte that is not UTF-8 is, and how to convert the file."""
    if exc.object[:2] in (b"\xff\xfe", b"\xfe\xff"):  # a UTF-16 byte order mark
        return Problem(
            display,
            message=(
                f"{what} is UTF-16; save it as UTF-8, e.g. iconv -f utf-16 -t utf-8 "
                f"{path.name} > {path.stem}.utf8{path.suffix}"
            ),
        )
    before = exc.object[: exc.start]
    line = before.count(b"\n") + 1
    column = exc.start - (before.rfind(b"\n") + 1) + 1
    return Problem(
        display,
        line,
        column,
        message=(
            f"{what} is not UTF-8 (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8, "
            f"e.g. from Latin-1: iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8"
            f"{path.suffix}"
        ),
    )


def _parse_json(text: str, display: str) -> Any:
    """json.loads, but a key given twice in one object is a problem: Python, like the
    original's Go, would silently keep the last (a second "tasks" key dropped every task)."""
    duplicated: list[str] = []

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        mapping = dict(pairs)
        if len(mapping) != len(pairs):
            keys = [key for key, _ in pairs]
            duplicated.extend(key for key in mapping if keys.count(key) > 1)
        return mapping

    data = json.loads(text, object_pairs_hook=unique)
    if duplicated:
        found: list[tuple[int, str, Path_]] = []
        try:
            _walk_json(text, _WS.match(text, 0).end(), (), {}, found)  # type: ignore[union-attr]
        except (ValueError, IndexError, RecursionError):
            pass
        line_starts = [0, *(m.end() for m in re.finditer("\n", text))]
        problems = []
        # Where the walk could not go (NaN before it, say), the key is named without a place
        for offset, key, where in found or [(-1, key, ()) for key in dict.fromkeys(duplicated)]:
            if offset < 0:
                problems.append(
                    Problem(display, key=key, message="given twice in one object; keep one")
                )
                continue
            line = bisect.bisect_right(line_starts, offset)
            problems.append(
                Problem(
                    display,
                    line,
                    offset - line_starts[line - 1] + 1,
                    _task_at(data, where),
                    key=key,
                    message="given twice in the same object; keep one (only the last would count)",
                )
            )
        raise InvalidFilesError(problems)
    return data


def _task_at(data: Any, where: Path_) -> str | None:
    """The id of the task that is the object at `where`, if it is one (["tasks"][i])."""
    if len(where) != 2 or str(where[0]).lower() != "tasks":
        return None
    try:
        task = data[where[0]][where[1]]
    except (KeyError, IndexError, TypeError):
        return None
    task_id = task.get("id") if isinstance(task, dict) else None
    return task_id if isinstance(task_id, str) else None


def _parse_yaml(text: str, display: str) -> Any:
    import yaml  # only YAML users pay for the import

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader
    except (RecursionError, ValueError) as exc:
        raise InvalidFilesError([Problem(display, message=f"unusable YAML: {exc}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        reason = getattr(exc, "problem", None) or str(exc)
        raise InvalidFilesError(
            [Problem(display, line, column, message=f"malformed YAML: {reason}")]
        ) from None


def _positions(text: str, suffix: str) -> dict[Path_, int]:
    positions: dict[Path_, int] = {}
    try:
        if suffix.lower() in (".yaml", ".yml"):
            _yaml_positions(text, positions)
        else:
            _walk_json(text, _WS.match(text, 0).end(), (), positions)  # type: ignore[union-attr]
    except (ValueError, IndexError, RecursionError):
        pass  # the file parsed once already; keep what was found (deep nesting: the top)
    return positions


def _walk_json(
    text: str,
    pos: int,
    path: Path_,
    out: dict[Path_, int],
    duplicates: list[tuple[int, str, Path_]] | None = None,
) -> int:
    """Record the offset of the value at `pos` under `path`; return the offset after it.
    `duplicates`: also collect (offset, key, the object's path) of each key given twice
    in one object."""
    out[path] = pos
    char = text[pos]
    if char == '"':
        return scanstring(text, pos + 1)[1]
    if char in "{[":
        closing = "}" if char == "{" else "]"
        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        index = 0
        seen: set[str] = set()
        while text[pos] != closing:
            if char == "{":
                key_at = pos
                key, pos = scanstring(text, pos + 1)
                if duplicates is not None and key in seen:
                    duplicates.append((key_at, key, path))
                seen.add(key)
                pos = _WS.match(text, pos).end() + 1  # type: ignore[union-attr]  # skip ':'
                pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
                pos = _walk_json(text, pos, (*path, key), out, duplicates)
            else:
                pos = _walk_json(text, pos, (*path, index), out, duplicates)
                index += 1
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            if text[pos] == ",":
                pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        return pos + 1
    match = _SCALAR.match(text, pos)
    if not match:
        raise ValueError(pos)
    return match.end()


@functools.cache
def _unique_key_loader() -> Any:
    """PyYAML's SafeLoader, refusing a key given twice in one mapping (it keeps the last)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"key '{key_node.value}' is given twice in the same mapping; "
                            "keep one (only the last would count)",
                            key_node.start_mark,
                        )
                    seen.add(key_node.value)
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _yaml_positions(text: str, out: dict[Path_, int]) -> None:
    import yaml

    line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    seen: set[int] = set()

    def walk(node: Any, path: Path_) -> None:
        out[path] = line_starts[node.start_mark.line] + node.start_mark.column
        if id(node) in seen:  # an alias: its node was walked where the anchor is
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                walk(value_node, (*path, key_node.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
