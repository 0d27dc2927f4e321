"""Validate one object of an input file against a pydantic model, as Problems and warnings.

Keys match case-insensitively (the original Go tool accepted `Db` for `db`); unknown keys
are warnings with a "did you mean" hint, so files written for the original still load.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ValidationError

from mflow.documents import Document
from mflow.errors import Problem

M = TypeVar("M", bound=BaseModel)


def _to_mapping(value: Any) -> Any:
    """Accept [{"key": K, "value": V}, ...] (original) as well as {K: V}."""
    if isinstance(value, list):
        mapping = {}
        for number, item in enumerate(value, start=1):
            # keys in any case, as the original's Go parser read them
            entry = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else None
            if entry is None or set(entry) != {"key", "value"} or not isinstance(entry["key"], str):
                raise ValueError(
                    f'entry #{number} must be {{"key": "NAME", "value": "..."}}, got {item!r}'
                )
            if entry["key"] in mapping:
                raise ValueError(f"entry #{number}: {entry['key']!r} is given twice")
            mapping[entry["key"]] = entry["value"]
        return mapping
    return value


def _check_names(mapping: dict[str, str]) -> dict[str, str]:
    """What the operating system can take: a name without '=' or NUL, a value without NUL."""
    for name, value in mapping.items():
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"{name!r} is not a usable variable name (no '=', not empty)")
        if "\0" in value:
            raise ValueError(f"the value of {name} holds a NUL character")
    return mapping


EnvBlock = Annotated[dict[str, str], BeforeValidator(_to_mapping), AfterValidator(_check_names)]


@functools.cache
def _env_block() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(EnvBlock)


def env_of(raw: Any) -> dict[str, str] | None:
    """The `env` block of an entry whose model did not validate ({} if it has none), so
    that its unset ${VAR}s are reported with the entry's other problems; None if the
    block itself is invalid."""
    key = key_in_any_case(raw, "env") if isinstance(raw, dict) else None
    if key is None:
        return {}
    try:
        return _env_block().validate_python(raw[key])
    except ValidationError:
        return None


def suggest(word: str, choices: Any) -> str:
    """' (did you mean 'x'?)' for the closest choice, case aside, or ''."""
    choices = [str(choice) for choice in choices]
    same_but_case = [choice for choice in choices if choice.lower() == word.lower()]
    import difflib  # not at the top: only a mistake needs it, and every start would pay

    close = same_but_case or difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@functools.cache
def _spelt_as_written(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(known_keys(model).values())


@functools.cache  # per model class: a flow has thousands of tasks of a few types
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
    *,
    hide_input: bool = False,
) -> tuple[M | None, list[Problem], list[Problem]]:
    """Return (instance or None, problems, warnings) for `raw` found at `where` in `doc`."""
    keys = known_keys(model)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    if _spelt_as_written(model).issuperset(raw):
        # the common case, every key spelt as the model writes it: nothing to rename
        return _validated(doc, model, raw, where, task_id, hide_input, problems, warnings)
    data: dict[str, Any] = {}
    spelt: dict[str, str] = {}  # canonical key -> how the file wrote it
    for key, value in raw.items():
        canonical = keys.get(str(key).lower())
        if canonical in spelt:  # "command" and "Command": which one was meant is a guess
            problems.append(
                doc.problem(
                    *where,
                    key,
                    task_id=task_id,
                    key=str(key),
                    message=(f"given twice, as '{spelt[canonical]}' and as '{key}'; keep one"),
                )
            )
            continue
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
        spelt[canonical] = str(key)
    return _validated(doc, model, data, where, task_id, hide_input, problems, warnings)


def _validated(
    doc: Document,
    model: type[M],
    data: dict[str, Any],
    where: tuple[str | int, ...],
    task_id: str | None,
    hide_input: bool,
    problems: list[Problem],
    warnings: list[Problem],
) -> tuple[M | None, list[Problem], list[Problem]]:
    try:
        # strict: "3" is not a number, true is not 1 (the original's Go parser agreed)
        instance = model.model_validate(data, strict=True)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            loc = [
                part
                for part in error["loc"]
                if not isinstance(part, str)
                or part in data
                or part not in ("function-after", "function-before")
            ]
            key = ".".join(str(part) for part in loc) or None
            message = _message(error, hide_input)
            problems.append(doc.problem(*where, *loc, task_id=task_id, key=key, message=message))
        return None, problems, warnings
    return (None if problems else instance), problems, warnings


def key_in_any_case(data: Any, name: str) -> str | None:
    """The key of the mapping `data` that is `name` in any case (exact spelling first)."""
    if not isinstance(data, dict):
        return None
    if name in data:
        return name
    return next((key for key in data if str(key).lower() == name), None)


def lower_case_keys(raw: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """`raw` with the keys that are `names` in another case spelt in lower case (the file's
    own lower-case spelling wins; a clash is reported by check_model)."""
    try:
        if all(map(str.islower, raw)):
            return raw  # the common case: nothing to rename
    except TypeError:
        pass  # a key that is not a string (YAML allows them): looked at one by one
    renamed = {}
    for key, value in raw.items():
        lowered = str(key).lower()
        if lowered in names and key != lowered and lowered not in raw:
            renamed[lowered] = value
        else:
            renamed[key] = value
    return renamed


def _message(error: dict[str, Any], hide_input: bool = False) -> str:
    if error["type"] == "missing":
        return "required key is missing"
    text = error["msg"]
    if text.startswith("Value error, "):
        text = text[len("Value error, ") :]
    if "input" in error and error["type"] not in ("value_error",) and not hide_input:
        shown = repr(error["input"])
        if len(shown) > 60:
            shown = shown[:57] + "..."
        text += f" (got {shown})"
    return text
