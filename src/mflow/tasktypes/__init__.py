"""Task types by name: the built-ins plus plugins found under the `mflow.task_types` entry point."""

from __future__ import annotations

from collections.abc import Iterable

from mflow.datasources import NO_DATASOURCES, Datasources
from mflow.tasktypes.base import TaskType

ENTRY_POINT_GROUP = "mflow.task_types"


class TaskTypes:
    """Name (or alias) -> task type instance."""

    def __init__(self, types: Iterable[TaskType]):
        self._by_name: dict[str, TaskType] = {}
        for task_type in types:
            self.add(task_type)

    def add(self, task_type: TaskType) -> None:
        for name in (task_type.name, *task_type.aliases):
            self._by_name[name] = task_type

    def get(self, name: str) -> TaskType | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def close(self) -> None:
        for task_type in {id(t): t for t in self._by_name.values()}.values():
            task_type.close()


def builtin_types(datasources: Datasources = NO_DATASOURCES) -> TaskTypes:
    from mflow.tasktypes.bash import BashType
    from mflow.tasktypes.sql import SqlType

    return TaskTypes([BashType(), SqlType(datasources)])
