"""`env` blocks: both the original's [{"key","value"}] list and a plain mapping; ${VAR} expansion."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _to_mapping(value: Any) -> Any:
    """Accept [{"key": K, "value": V}, ...] (original) as well as {K: V}."""
    if isinstance(value, list):
        mapping = {}
        for number, item in enumerate(value, start=1):
            # keys in any case, as the original's Go parser read them
            entry = {str(k).lower(): v for k, v in item.items()} if isinstance(item, dict) else None
            if entry is None or set(entry) != {"key", "value"}:
                raise ValueError(
                    f'entry #{number} must be {{"key": "NAME", "value": "..."}}, got {item!r}'
                )
            mapping[entry["key"]] = entry["value"]
        return mapping
    return value


EnvBlock = Annotated[dict[str, str], BeforeValidator(_to_mapping)]


def expand(value: str, variables: Mapping[str, str]) -> str:
    """Replace each ${VAR} from `variables` (an unset one raises KeyError)."""
    if "${" not in value:
        return value
    return _VAR.sub(lambda match: variables[match.group(1)], value)


def unset_names(value: str, variables: Mapping[str, str]) -> list[str]:
    return [m.group(1) for m in _VAR.finditer(value) if m.group(1) not in variables]
