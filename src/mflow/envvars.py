"""`env` blocks: both the original's [{"key","value"}] list and a plain mapping; ${VAR} expansion."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


def expand(value: str, variables: Mapping[str, str]) -> str:
    """Replace each ${VAR} from `variables` (an unset one raises KeyError)."""
    if "${" not in value:
        return value
    return _VAR.sub(lambda match: variables[match.group(1)], value)


def unset_names(value: str, variables: Mapping[str, str]) -> list[str]:
    return [m.group(1) for m in _VAR.finditer(value) if m.group(1) not in variables]
