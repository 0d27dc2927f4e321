"""${VAR} expansion in `env` values, and the variables mflow sets for every task.
(The model of an `env` block is in modelcheck.py: this module stays free of pydantic.)"""

from __future__ import annotations

import re
from collections.abc import Mapping

RUN_ID_VARIABLE = "MFLOW_RUN_ID"  # the run's id, set for every task

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: str, variables: Mapping[str, str]) -> str:
    """Replace each ${VAR} from `variables` (an unset one raises KeyError)."""
    if "${" not in value:
        return value
    return _VAR.sub(lambda match: variables[match.group(1)], value)


def unset_names(value: str, variables: Mapping[str, str]) -> list[str]:
    return [m.group(1) for m in _VAR.finditer(value) if m.group(1) not in variables]
