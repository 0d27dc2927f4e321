"""Validate one object of an input file against a pydantic model, as Problems and warnings.

Keys match case-insensitively (the original Go tool accepted `Db` for `db`); unknown keys
are warnings with a "did you mean" hint, so files written for the original still load.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mflow.documents import Document
from mflow.errors import Problem

M = TypeVar("M", bound=BaseModel)


def suggest(word: str, choices: Any) -> str:
    """' (did you mean 'x'?)' for the closest choice, case aside, or ''."""
    choices = [str(choice) for choice in choices]
    same_but_case = [choice for choice in choices if choice.lower() == word.lower()]
    close = same_but_case or difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def known_keys(model: type[BaseModel]) -> dict[str, str]:
    """Lower-cased spelling -> the key as the file should write it."""
    keys = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        keys[key.lower()] = key
    return keys


def check_model(
    doc: Document,
    model: type[M],
    raw: dict[str, Any],
    where: tuple[str | int, ...],
    task_id: str | None = None,
) -> tuple[M | None, list[Problem], list[Problem]]:
    """Return (instance or None, problems, warnings) for `raw` found at `where` in `doc`."""
    keys = known_keys(model)
    data: dict[str, Any] = {}
    warnings: list[Problem] = []
    for key, value in raw.items():
        canonical = keys.get(str(key).lower())
        if canonical is None:
            warnings.append(
                doc.problem(
                    *where,
                    key,
                    task_id=task_id,
                    key=str(key),
                    message=f"unknown key, ignored{suggest(str(key), keys.values())}",
                )
            )
            continue
        data[canonical] = value
    try:
        return model.model_validate(data), [], warnings
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = [
                part
                for part in error["loc"]
                if not isinstance(part, str)
                or part in data
                or part not in ("function-after", "function-before")
            ]
            key = ".".join(str(part) for part in loc) or None
            message = _message(error)
            problems.append(doc.problem(*where, *loc, task_id=task_id, key=key, message=message))
        return None, problems, warnings


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "required key is missing"
    text = error["msg"]
    if text.startswith("Value error, "):
        text = text[len("Value error, ") :]
    if "input" in error and error["type"] not in ("value_error",):
        shown = repr(error["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        text += f" (got {shown})"
    return text
