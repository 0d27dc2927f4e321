"""tasks.json (or .yaml) -> a validated Flow. Every problem is collected before reporting."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mflow.documents import Document, load_document
from mflow.envvars import unset_names
from mflow.errors import InvalidFilesError, Problem
from mflow.graph import Graph
from mflow.modelcheck import check_model, suggest
from mflow.tasktypes import TaskTypes
from mflow.tasktypes.base import TaskSpec

_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9_.@+=-]")


def log_name_part(task_id: str) -> str:
    """A task id made safe for a file name (the id itself may hold any character)."""
    return _UNSAFE_FILENAME.sub("_", task_id)


@dataclass(frozen=True)
class Flow:
    """A validated task file: tasks in file order, all dependencies known, no cycle."""

    path: Path
    tasks: dict[str, TaskSpec]
    graph: Graph
    warnings: tuple[Problem, ...] = ()

    @property
    def folder(self) -> Path:
        return self.path.parent


def load_flow(path: Path, types: TaskTypes, variables: Mapping[str, str]) -> Flow:
    """`variables`: what a task's env can use in ${VAR} (mflow's environment + config env)."""
    doc = load_document(path, "task file")
    problems: list[Problem] = []
    warnings: list[Problem] = []
    data = doc.data
    tasks_key = _find_key(data, "tasks") if isinstance(data, dict) else None
    if tasks_key is None or not isinstance(data[tasks_key], list):
        raise InvalidFilesError(
            [
                doc.problem(
                    message=(
                        'a task file holds {"tasks": [ {"id": ..., "type": ...}, ... ]}; '
                        + ("'tasks' is not a list" if tasks_key else "no 'tasks' key found")
                    )
                )
            ]
        )
    for key in data:
        if key != tasks_key:
            warnings.append(doc.problem(key, key=key, message="unknown key, ignored"))
    raw_tasks = [_common_keys_lowered(raw) for raw in data[tasks_key]]

    tasks: dict[str, TaskSpec] = {}
    ids = Counter(raw.get("id") for raw in raw_tasks if isinstance(raw, dict))
    for index, raw in enumerate(raw_tasks):
        spec = _check_task(doc, types, index, raw, raw_tasks, ids, problems, warnings)
        if spec is not None and spec.id not in tasks:
            tasks[spec.id] = spec

    depends = {task_id: spec.depends for task_id, spec in tasks.items()}
    known = set(ids)
    for index, raw in enumerate(raw_tasks):
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            problems += _check_depends(doc, index, raw, known)
    graph = Graph(depends)
    for cycle in graph.cycles():
        first = min(cycle, key=list(depends).index)
        index = next(
            i for i, raw in enumerate(raw_tasks) if isinstance(raw, dict) and raw.get("id") == first
        )
        problems.append(
            doc.problem(
                "tasks",
                index,
                "depends",
                task_id=first,
                key="depends",
                message="dependency cycle: "
                + " -> ".join(cycle)
                + " (each task depends on the next)",
            )
        )
    problems += _check_log_names(doc, raw_tasks, tasks)
    problems += _check_env(doc, raw_tasks, tasks, variables)
    if problems:
        raise InvalidFilesError(problems, warnings)
    return Flow(path.resolve(), tasks, graph, tuple(warnings))


def _check_task(
    doc: Document,
    types: TaskTypes,
    index: int,
    raw: Any,
    raw_tasks: list[Any],
    ids: Counter[Any],
    problems: list[Problem],
    warnings: list[Problem],
) -> TaskSpec | None:
    where = ("tasks", index)
    if not isinstance(raw, dict):
        problems.append(doc.problem(*where, message=f"task #{index + 1} must be an object {{...}}"))
        return None
    task_id = _key(raw, "id")
    if task_id is None:
        problems.append(
            doc.problem(
                *where,
                key="id",
                message=(
                    f"task #{index + 1}: required key is missing (every task needs a unique id)"
                ),
            )
        )
        return None
    if not isinstance(task_id, str) or not task_id.strip() or "\n" in task_id:
        problems.append(
            doc.problem(
                *where,
                "id",
                key="id",
                message=(
                    f"task #{index + 1}: 'id' must be a non-empty one-line string (got {task_id!r})"
                ),
            )
        )
        return None
    if ids[task_id] > 1:
        first = next(
            i
            for i, other in enumerate(raw_tasks)
            if isinstance(other, dict) and other.get("id") == task_id
        )
        if first != index:
            line, _ = doc.locate("tasks", first)
            problems.append(
                doc.problem(
                    *where,
                    "id",
                    task_id=task_id,
                    key="id",
                    message=(
                        f"duplicate id: task #{first + 1} (line {line}) has it too; ids must be unique"
                    ),
                )
            )
            return None
    type_name = _key(raw, "type")
    task_type = types.get(type_name) if isinstance(type_name, str) else None
    if task_type is None:
        known = ", ".join(types.names())
        problems.append(
            doc.problem(
                *where,
                "type",
                task_id=task_id,
                key="type",
                message=(
                    f"unknown task type {type_name!r}{suggest(str(type_name), types.names())};"
                    f" known types: {known}"
                ),
            )
        )
        return None
    spec, found, notes = check_model(doc, task_type.spec, raw, where, task_id)
    problems += found
    warnings += notes
    return spec


# Keys every task may have; the original's Go parser matched them in any case ("Depends").
_COMMON_KEYS = frozenset(TaskSpec.model_fields)


def _find_key(data: dict[str, Any], name: str) -> str | None:
    """The key of `data` that is `name` in any case (the exact spelling first)."""
    if name in data:
        return name
    return next((key for key in data if str(key).lower() == name), None)


def _common_keys_lowered(raw: Any) -> Any:
    """The task with its common keys spelt in lower case, so every check below finds them."""
    if not isinstance(raw, dict):
        return raw
    renamed = {}
    for key, value in raw.items():
        lowered = str(key).lower()
        if lowered in _COMMON_KEYS and key != lowered and lowered not in raw:
            renamed[lowered] = value
        else:
            renamed[key] = value
    return renamed


def _key(raw: dict[str, Any], name: str) -> Any:
    found = _find_key(raw, name)
    return None if found is None else raw[found]


def _check_depends(
    doc: Document, index: int, raw: dict[str, Any], known: set[Any]
) -> list[Problem]:
    depends = _key(raw, "depends")
    if not isinstance(depends, list):
        return []  # a wrong type was reported by the model check
    problems = []
    for position, dep in enumerate(depends):
        if not isinstance(dep, str) or dep in known:
            continue
        problems.append(
            doc.problem(
                "tasks",
                index,
                "depends",
                position,
                task_id=raw["id"],
                key="depends",
                message=(
                    f"depends on unknown task '{dep}'{suggest(dep, [k for k in known if isinstance(k, str) and k != raw['id']])}"
                ),
            )
        )
    return problems


def _check_env(
    doc: Document, raw_tasks: list[Any], tasks: dict[str, TaskSpec], variables: Mapping[str, str]
) -> list[Problem]:
    """Every ${VAR} in a task's env must be set (earlier keys of the same env count)."""
    problems = []
    for index, raw in enumerate(raw_tasks):
        spec = tasks.get(raw.get("id")) if isinstance(raw, dict) else None
        if spec is None or not spec.env or spec is not tasks[spec.id]:
            continue
        known = dict(variables)
        for name, value in spec.env.items():
            for missing in unset_names(value, known):
                problems.append(
                    doc.problem(
                        "tasks",
                        index,
                        "env",
                        task_id=spec.id,
                        key=f"env.{name}",
                        message=(
                            f"${{{missing}}} is not set in the environment nor in config.json's env"
                        ),
                    )
                )
            known[name] = value
    return problems


def _check_log_names(
    doc: Document, raw_tasks: list[Any], tasks: dict[str, TaskSpec]
) -> list[Problem]:
    """Two ids that differ only in characters a file name cannot hold would share a log file."""
    by_name: dict[str, str] = {}
    problems = []
    for task_id in tasks:
        name = log_name_part(task_id)
        if name in by_name:
            index = next(
                i
                for i, raw in enumerate(raw_tasks)
                if isinstance(raw, dict) and raw.get("id") == task_id
            )
            problems.append(
                doc.problem(
                    "tasks",
                    index,
                    "id",
                    task_id=task_id,
                    key="id",
                    message=(
                        f"its log file name would be the same as task '{by_name[name]}'s; "
                        "rename one (use letters, digits, _ . - only)"
                    ),
                )
            )
        by_name[name] = task_id
    return problems
