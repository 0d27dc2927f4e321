"""${VAR} expansion in `env` values, and the variables mflow sets for every task.
(The model of an `env` block is in modelcheck.py: this module stays free of pydantic.)"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping

RUN_ID_VARIABLE = "MFLOW_RUN_ID"  # the run's id, set for every task

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: str, variables: Mapping[str, str]) -> str:
    """Replace each ${VAR} from `variables` (an unset one raises KeyError)."""
    if "${" not in value:
        return value
    return _VAR.sub(lambda match: variables[match.group(1)], value)


def unset_names(value: str, variables: Mapping[str, str]) -> list[str]:
    return [m.group(1) for m in _VAR.finditer(value) if m.group(1) not in variables]


def expand_in_order(
    entries: Mapping[str, str], variables: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """An `env` block expanded entry by entry, each seeing `variables` and the entries
    above it -> (the entries expanded, {entry: the first unset variable it names})."""
    known = dict(variables)
    expanded, unset = {}, {}
    for name, value in entries.items():
        missing = unset_names(value, known)
        if missing:
            unset[name] = missing[0]
        else:
            expanded[name] = known[name] = expand(value, known)
    return expanded, unset


# What a nested flow will inherit from its parent (config env, the task's env) on top of
# the environment: its files are checked with it (inherited() sets it meanwhile).
_inherited: list[Mapping[str, str]] = []


def environment() -> dict[str, str]:
    """The variables a file's ${VAR}s see: the environment, and a parent flow's."""
    merged = dict(os.environ)
    for layer in _inherited:
        merged.update(layer)
    return merged


@contextlib.contextmanager
def inherited(variables: Mapping[str, str]) -> Iterator[None]:
    _inherited.append(variables)
    try:
        yield
    finally:
        _inherited.pop()
