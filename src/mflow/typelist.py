"""`mflow types`: every registered task type (built-in or plugin) with its keys, as stable
JSON and as text. A plugin that cannot be loaded is listed with its error; one refused
because its name is taken is a warning."""

from __future__ import annotations

import re
import sys
import types as pytypes
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from mflow.tasktypes.base import TaskSpec, TaskType
from mflow.tasktypes.registry import BUILTIN, Registration, TaskTypes, TypeLoadError
from mflow.views import _columns


def types_json(registry: TaskTypes | None = None) -> dict[str, Any]:
    """The documented, stable shape of `mflow types --json`."""
    registry = registry or TaskTypes()
    groups: dict[tuple[str, str], list[Registration]] = {}
    for registration in registry.registrations():  # built-ins first, then by name
        groups.setdefault((registration.target, registration.origin), []).append(registration)
    return {
        "types": [_type_json(group) for group in groups.values()],
        "common_keys": [_key_json(name, field) for name, field in TaskSpec.model_fields.items()],
        "ignored": list(registry.ignored),
    }


def _type_json(group: list[Registration]) -> dict[str, Any]:
    first = group[0]
    dist = getattr(first.loader, "dist", None)
    entry: dict[str, Any] = {
        "name": first.name,
        "aliases": [],
        "origin": BUILTIN if first.origin == BUILTIN else "plugin",
        "distribution": dist.name if dist is not None else None,
        "version": dist.version if dist is not None else None,
        "class": first.target,
        "description": "",
        "keys": [],
        "error": None,
    }
    names = [registration.name for registration in group]
    try:
        cls = first.load()
        spec = cls.spec
        if not (isinstance(spec, type) and issubclass(spec, TaskSpec)):
            raise TypeLoadError(
                f"task type '{first.name}' ({first.origin}): {first.target}.spec is not a "
                "subclass of mflow.tasktypes.base.TaskSpec"
            )
        entry["keys"] = [
            _key_json(name, field)
            for name, field in spec.model_fields.items()
            if name not in TaskSpec.model_fields
        ]
        entry["description"] = describe(cls)
    except TypeLoadError as exc:
        entry["error"] = str(exc)
    except Exception as exc:  # a plugin's class may break in any way; list it, go on
        entry["error"] = (
            f"task type '{first.name}' ({first.origin}): {first.target}: "
            f"{type(exc).__name__}: {exc}"
        )
    else:
        if cls.name in names:  # the class's own name comes first, its aliases after
            names.remove(cls.name)
            names.insert(0, cls.name)
    entry["name"], entry["aliases"] = names[0], names[1:]
    return entry


def describe(cls: type[TaskType]) -> str:
    """The first sentence of the class docstring, else of its module's, on one line."""
    for doc in (
        cls.__dict__.get("__doc__"),
        getattr(sys.modules.get(cls.__module__), "__doc__", None),
    ):
        if doc and doc.strip():
            paragraph = " ".join(doc.strip().split("\n\n")[0].split())
            return re.split(r"(?<=[.!?])\s+(?=[A-Z`])", paragraph, maxsplit=1)[0]
    return ""


def _key_json(name: str, field: FieldInfo) -> dict[str, Any]:
    required = field.is_required()
    return {
        "key": field.alias or name,
        "field": name,
        "type": type_text(field.annotation),
        "constraints": _constraints(field),
        "required": required,
        "default": None if required else _default(field),
        "description": field.description,
    }


def _default(field: FieldInfo) -> Any:
    from pydantic_core import to_jsonable_python

    try:
        value = field.get_default(call_default_factory=True, validated_data={})
        return to_jsonable_python(value)
    except Exception:  # a factory that needs other keys, a value JSON cannot hold
        return "(computed)"


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of"))
_LENGTHS = (("min_length", "min length"), ("max_length", "max length"), ("pattern", "pattern"))


def _constraints(field: FieldInfo) -> list[str]:
    found = []
    for item in field.metadata:
        for attribute, text in (*_BOUNDS, *_LENGTHS):
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{text} {value}")
    return found


def type_text(annotation: Any) -> str:
    """An annotation as people write it: `str | None`, `list[str]`, `'a' | 'b'`."""
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Union or origin is pytypes.UnionType:
        return " | ".join(type_text(arg) for arg in args)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is Annotated:
        return type_text(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(arg) for arg in args)}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


# -- text -------------------------------------------------------------------------------


def types_text(data: dict[str, Any]) -> str:
    blocks = [_type_text(entry) for entry in data["types"]]
    common = ", ".join(
        f"{key['key']} (required)" if key["required"] else key["key"] for key in data["common_keys"]
    )
    broken = [entry["name"] for entry in data["types"] if entry["error"]]
    plugins = sum(1 for entry in data["types"] if entry["origin"] != BUILTIN)
    summary = (
        f"{len(data['types'])} task types ({len(data['types']) - plugins} built-in, "
        f"{plugins} from plugins)"
    )
    if broken:
        summary += f"; cannot be loaded: {', '.join(broken)}"
    return "\n\n".join([*blocks, f"Keys every type has: {common}.\n{summary}"])


def _type_text(entry: dict[str, Any]) -> str:
    title = entry["name"]
    if entry["aliases"]:
        title += f" (alias {', '.join(entry['aliases'])})"
    origin = entry["origin"]
    if entry["distribution"]:
        origin = f"plugin {entry['distribution']} {entry['version']}"
    lines = [f"{title}  [{origin}]  {entry['class']}"]
    if entry["error"]:
        lines.append(f"  BROKEN: {entry['error']}")
        return "\n".join(lines)
    if entry["description"]:
        lines.append(f"  {entry['description']}")
    if not entry["keys"]:
        lines.append("  (no keys of its own)")
        return "\n".join(lines)
    table = [["KEY", "TYPE", "REQUIRED / DEFAULT", "DESCRIPTION"]]
    for key in entry["keys"]:
        kind = key["type"]
        if key["constraints"]:
            kind += f" ({', '.join(key['constraints'])})"
        table.append([key["key"], kind, _requirement(key), key["description"] or ""])
    lines += ["  " + line.rstrip() for line in _columns(table, right=set()).splitlines()]
    return "\n".join(lines)


def _requirement(key: dict[str, Any]) -> str:
    if key["required"]:
        return "required"
    if key["default"] is None:
        return "optional"
    import json

    return f"default {json.dumps(key['default'])}"
