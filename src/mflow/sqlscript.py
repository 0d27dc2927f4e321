"""Split a .sql script into statements the way the database's own client would."""

from __future__ import annotations

import re

import sqlparse

# An Oracle PL/SQL unit: SQL*Plus sends it whole, up to the "/" line, final "end;" included.
_PLSQL_START = re.compile(
    r"^\s*(declare|begin|create\s+(or\s+replace\s+)?(editionable\s+|noneditionable\s+)?"
    r"(procedure|function|package|trigger|type|library))\b",
    re.IGNORECASE,
)
_SLASH_LINE = re.compile(r"^\s*/\s*$", re.MULTILINE)


def split_script(text: str, kind: str) -> list[str]:
    """Statements of `text` for a database of `kind` (oracle, postgresql, mysql, ...)."""
    if kind == "oracle":
        return _split_oracle(text)
    if kind in ("mysql", "mariadb") and _DELIMITER.search(text):
        return _split_mysql_delimiters(text)
    return _split_plain(text)


def _split_plain(text: str) -> list[str]:
    return [s for s in (_strip_comments_only(p) for p in sqlparse.split(text)) if s]


_DELIMITER = re.compile(r"^\s*delimiter\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)


def _split_mysql_delimiters(text: str) -> list[str]:
    """The mysql client's DELIMITER command: `DELIMITER //` makes `//` end statements
    (so a procedure body can hold `;`) until `DELIMITER ;`. The command is not sent."""
    statements: list[str] = []
    delimiter, position = ";", 0
    for match in [*_DELIMITER.finditer(text), None]:
        end = match.start() if match else len(text)
        chunk = text[position:end]
        if delimiter == ";":
            statements += _split_plain(chunk)
        else:
            statements += [
                s for s in (_strip_comments_only(p) for p in chunk.split(delimiter)) if s
            ]
        if match:
            delimiter, position = match.group(1), match.end()
    return statements


def _split_oracle(text: str) -> list[str]:
    """SQL*Plus rules: a PL/SQL unit (begin/declare/create procedure ...) runs to the line
    holding only "/" and is sent whole; other statements end at ";", which is not sent
    (Oracle refuses it after plain SQL)."""
    statements = []
    for chunk in _SLASH_LINE.split(text):
        position = 0
        for part in sqlparse.split(chunk):
            start = chunk.find(part, position)
            position = start + len(part)
            code = sqlparse.format(part, strip_comments=True).strip()
            if not code:
                continue
            if _PLSQL_START.match(code):  # the rest of the chunk is this one unit
                statements.append(chunk[start:].strip())
                break
            statements.append(code[:-1].rstrip() if code.endswith(";") else code)
    return statements


def _strip_comments_only(statement: str) -> str:
    """The statement, or '' if it holds nothing but comments and blanks."""
    stripped = statement.strip()
    if not sqlparse.format(stripped, strip_comments=True).strip():
        return ""
    return stripped
