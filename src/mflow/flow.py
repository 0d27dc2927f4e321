"""tasks.json (or .yaml) -> a validated Flow. Every problem is collected before reporting."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mflow import nesting
from mflow.checked import Flow
from mflow.documents import Document, load_document
from mflow.envvars import unset_names
from mflow.errors import InvalidFilesError, Problem
from mflow.graph import Graph
from mflow.loading import without_cycle_collection
from mflow.logs import log_name_part
from mflow.modelcheck import check_model, env_of, key_in_any_case, lower_case_keys, suggest
from mflow.tasktypes.base import TaskSpec
from mflow.tasktypes.registry import TaskTypes, TypeLoadError

MAX_ID_LENGTH = 200  # a log file name holds it, and so does a VARCHAR(255) column
# logs.task_log_path of a retry: attempts 2, 3, ... (the first has no suffix)
_RETRY_LOG = re.compile(r"(.+)\.attempt([2-9]|[1-9][0-9]+)")


class _Checker:
    """Collects the problems of one task file; knows where each task stands in it."""

    def __init__(self, doc: Document, raw_tasks: list[Any]):
        self.doc = doc
        self.folder = doc.path.resolve().parent  # where the task file's relative paths start
        self.raw_tasks = raw_tasks
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.first_index: dict[str, int] = {}  # id -> index of its first task
        for index, raw in enumerate(raw_tasks):
            task_id = raw.get("id") if isinstance(raw, dict) else None
            if isinstance(task_id, str):
                self.first_index.setdefault(task_id, index)

    def add(
        self,
        index: int,
        *where: str | int,
        task_id: str | None = None,
        key: str | None = None,
        message: str,
    ) -> None:
        self.problems.append(
            self.doc.problem("tasks", index, *where, task_id=task_id, key=key, message=message)
        )


def load_flow(path: Path, types: TaskTypes, variables: Mapping[str, str] | None) -> Flow:
    """`variables`: what a task's env can use in ${VAR} (mflow's environment + config env);
    None when config.json could not be read, and its env is not known."""
    try:
        resolved = path.resolve()
    except RuntimeError:  # a symbolic link loop (Python 3.11): reading it says so below
        resolved = path.absolute()
    nesting.validating.append(str(resolved))
    try:
        with without_cycle_collection():
            return _load_flow(path, types, variables)
    finally:
        nesting.validating.pop()


def _load_flow(path: Path, types: TaskTypes, variables: Mapping[str, str] | None) -> Flow:
    doc = load_document(path, "task file")
    data = doc.data
    tasks_key = key_in_any_case(data, "tasks")
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
    raw_tasks = data[tasks_key]
    check = _Checker(doc, [_common_keys_lowered(raw) for raw in raw_tasks])
    for key in data:
        if key != tasks_key:
            check.warnings.append(doc.problem(key, key=key, message="unknown key, ignored"))
    if not raw_tasks:
        check.warnings.append(doc.problem(tasks_key, message="the flow has no tasks"))

    id_counts = Counter(
        raw.get("id")
        for raw in check.raw_tasks
        if isinstance(raw, dict) and isinstance(raw.get("id"), str)
    )
    tasks: dict[str, TaskSpec] = {}
    for index, raw in enumerate(check.raw_tasks):
        spec = _check_task(check, types, index, raw, id_counts)
        if spec is not None and spec.id not in tasks:
            tasks[spec.id] = spec

    for index, raw in enumerate(check.raw_tasks):
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            _check_depends(check, index, raw, id_counts.keys())
    graph = Graph({task_id: spec.depends for task_id, spec in tasks.items()})
    for cycle in graph.cycles():
        first = min(cycle, key=check.first_index.__getitem__)
        shown = cycle if len(cycle) <= 12 else [*cycle[:10], "...", cycle[-1]]
        check.add(
            check.first_index[first],
            "depends",
            task_id=first,
            key="depends",
            message=(
                (
                    "dependency cycle: "
                    if len(cycle) <= 12
                    else f"dependency cycle of {len(cycle) - 1} tasks: "
                )
                + " -> ".join(shown)
                + " (each task depends on the next)"
            ),
        )
    _check_log_names(check, tasks)
    if variables is not None:
        _check_env(check, tasks, variables)
    if check.problems:
        raise InvalidFilesError(check.problems, check.warnings)
    return Flow(path.resolve(), tasks, graph, tuple(check.warnings))


def _check_task(
    check: _Checker, types: TaskTypes, index: int, raw: Any, id_counts: Counter[str]
) -> TaskSpec | None:
    number = f"task #{index + 1}"
    if not isinstance(raw, dict):
        check.add(index, message=f"{number} must be an object {{...}}, not {type(raw).__name__}")
        return None
    task_id = raw.get("id")
    if task_id is None:
        check.add(
            index,
            key="id",
            message=f"{number}: required key is missing (every task needs a unique id)",
        )
        return None
    if not isinstance(task_id, str) or not task_id.strip() or "\n" in task_id or "\0" in task_id:
        check.add(
            index,
            "id",
            key="id",
            message=(f"{number}: 'id' must be a non-empty one-line string (got {task_id!r:.60})"),
        )
        return None
    if len(task_id) > MAX_ID_LENGTH:
        check.add(
            index,
            "id",
            key="id",
            message=(
                f"{number}: the id is {len(task_id)} characters long; at most {MAX_ID_LENGTH}"
            ),
        )
        return None
    first = check.first_index[task_id]
    if id_counts[task_id] > 1 and first != index:
        line, _ = check.doc.locate("tasks", first)
        check.add(
            index,
            "id",
            task_id=task_id,
            key="id",
            message=(
                f"duplicate id: task #{first + 1} (line {line}) has it too; ids must be unique"
            ),
        )
        return None
    type_name = raw.get("type")
    if not isinstance(type_name, str):
        check.add(
            index,
            "type",
            task_id=task_id,
            key="type",
            message=(
                "required key is missing"
                if type_name is None
                else f"must be the name of a task type, not {type_name!r:.40}"
            )
            + f"; known types: {', '.join(types.names())}",
        )
        return None
    try:
        task_type = types.get(type_name)
    except TypeLoadError as exc:
        check.add(index, "type", task_id=task_id, key="type", message=str(exc))
        return None
    if task_type is None:
        check.add(
            index,
            "type",
            task_id=task_id,
            key="type",
            message=(
                f"unknown task type '{type_name}'{suggest(type_name, types.names())}; "
                f"known types: {', '.join(types.names())}"
            ),
        )
        return None
    try:
        spec, found, notes = check_model(check.doc, task_type.spec, raw, ("tasks", index), task_id)
        check.problems += found
        check.warnings += notes
        if spec is not None:
            found = [] if task_type.checks_nul_itself else _nul_in(raw)
            # the type's own checks look at files and paths: not with a NUL in them
            for key, message in found or task_type.check(spec, check.folder):
                check.add(index, key, task_id=task_id, key=key, message=message)
    except Exception as exc:  # noqa: BLE001 - a bug in a task type (a plugin's) is its own
        check.add(
            index,
            "type",
            task_id=task_id,
            key="type",
            message=f"task type '{type_name}' failed to check this task (a bug in it): {exc!r}",
        )
        return None
    return spec


def _nul_in(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """A NUL character no program, path or URL can take: found in any string of the task,
    as its key, its list items and its mappings' keys and values."""

    def holds_nul(value: Any) -> bool:
        if isinstance(value, str):
            return "\0" in value
        if isinstance(value, dict):
            return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
        if isinstance(value, list):
            return any(holds_nul(item) for item in value)
        return False

    return [
        (str(key), "holds a NUL character, which no program, path or URL can take")
        for key, value in raw.items()
        if key != "id" and holds_nul(value)  # an id with NUL was refused as such
    ]


# Keys every task may have; the original's Go parser matched them in any case ("Depends").
_COMMON_KEYS = frozenset(TaskSpec.model_fields)


def _common_keys_lowered(raw: Any) -> Any:
    """The task with its common keys spelt in lower case, so every check below finds them."""
    if not isinstance(raw, dict):
        return raw
    return lower_case_keys(raw, _COMMON_KEYS)


def _check_depends(check: _Checker, index: int, raw: dict[str, Any], known: Any) -> None:
    depends = raw.get("depends")
    if not isinstance(depends, list):
        return  # a wrong type was reported by the model check
    for position, dep in enumerate(depends):
        if not isinstance(dep, str) or dep in known:
            continue
        others = [k for k in known if k != raw["id"]]
        check.add(
            index,
            "depends",
            position,
            task_id=raw["id"],
            key="depends",
            message=f"depends on unknown task '{dep}'{suggest(dep, others)}",
        )


def _check_env(check: _Checker, tasks: dict[str, TaskSpec], variables: Mapping[str, str]) -> None:
    """Every ${VAR} in a task's env must be set (entries above it in the same env count);
    also in a task with other problems, so that all are listed at once."""
    for index, raw in enumerate(check.raw_tasks):
        task_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(task_id, str) or check.first_index[task_id] != index:
            continue  # no id to name it by, or a duplicate (reported as such)
        spec = tasks.get(task_id)
        known = dict(variables)
        for name, value in (spec.env if spec is not None else env_of(raw) or {}).items():
            for missing in unset_names(value, known):
                check.add(
                    index,
                    "env",
                    task_id=task_id,
                    key=f"env.{name}",
                    message=(
                        f"${{{missing}}} is set neither in the environment, nor in "
                        "config.json's env, nor above it in this env"
                    ),
                )
            known[name] = value


def _check_log_names(check: _Checker, tasks: dict[str, TaskSpec]) -> None:
    """Two ids that differ only in characters a file name cannot hold would share a log file."""
    by_name: dict[str, str] = {}
    clashes: list[tuple[str, str]] = []  # (task, the log it would share)
    for task_id in tasks:
        name = log_name_part(task_id)
        if name in by_name:
            clashes.append(
                (task_id, f"task '{by_name[name]}'s; rename one (use letters, digits, _ . - only)")
            )
        by_name[name] = task_id
    for task_id in tasks:  # "a.attempt2" would also be the log of task a's second attempt
        retried = _RETRY_LOG.fullmatch(log_name_part(task_id))
        if retried and retried[1] in by_name:
            other = by_name[retried[1]]
            clashes.append((task_id, f"that of attempt {retried[2]} of task '{other}'; rename it"))
    for task_id, shared in clashes:
        check.add(
            check.first_index[task_id],
            "id",
            task_id=task_id,
            key="id",
            message=f"its log file name would be the same as {shared}",
        )
