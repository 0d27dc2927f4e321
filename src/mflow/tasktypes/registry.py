"""Task types by name: one registry for the built-ins and the plugins.

A plugin is a distribution that declares, under the entry-point group `mflow.task_types`,
`name = "module:Class"` with Class a TaskType subclass. The built-ins are registered in
the same registry from the table below rather than from their own entry points: reading
the installed distributions' metadata costs ~0.1 s, so it happens only when a flow names
a type that is not built in (or for `mflow types`). Modules are imported only when a flow
uses their type, so `validate` stays light.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mflow.datasources import NO_DATASOURCES
from mflow.errors import MflowError
from mflow.tasktypes.base import TaskSpec, TaskType, TypeSetup

ENTRY_POINT_GROUP = "mflow.task_types"
BUILTIN = "built-in"

# name -> "module:Class"; an alias is one more name for the same class.
BUILTIN_TYPES = {
    "bash": "mflow.tasktypes.bash:BashType",
    "oracle": "mflow.tasktypes.sql:SqlType",
    "sql": "mflow.tasktypes.sql:SqlType",
    "spark": "mflow.tasktypes.spark:SparkType",
    "mflow": "mflow.tasktypes.nested:NestedFlowType",
    "http": "mflow.tasktypes.http:HttpType",
}


class TypeLoadError(MflowError):
    """A registered type could not be loaded (a broken plugin): said where the type is used."""


@dataclass(frozen=True)
class Registration:
    name: str
    target: str  # "module:Class"
    origin: str  # "built-in", or the plugin's distribution and version
    loader: Any = None  # an entry point (plugins), else None: imported from `target`

    def load(self) -> type[TaskType]:
        try:
            found = self.loader.load() if self.loader is not None else _import(self.target)
        except Exception as exc:  # a plugin's import may raise anything
            raise TypeLoadError(
                f"task type '{self.name}' ({self.origin}) cannot be loaded from "
                f"{self.target}: {type(exc).__name__}: {exc}"
            ) from None
        if not (isinstance(found, type) and issubclass(found, TaskType)):
            raise TypeLoadError(
                f"task type '{self.name}' ({self.origin}): {self.target} is not a "
                "subclass of mflow.tasktypes.base.TaskType"
            )
        if not (isinstance(found.spec, type) and issubclass(found.spec, TaskSpec)):
            raise TypeLoadError(
                f"task type '{self.name}' ({self.origin}): its spec is not a "
                "subclass of mflow.tasktypes.base.TaskSpec"
            )
        return found


def _import(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class TaskTypes:
    """Name (or alias) -> task type instance, created on first use with the run's setup."""

    def __init__(
        self,
        setup: TypeSetup | None = None,
        registrations: Iterable[Registration] | None = None,
        *,
        plugins: bool = True,
    ):
        self.setup = setup or TypeSetup(None, NO_DATASOURCES)
        self._registered: dict[str, Registration] = {}
        self.ignored: list[str] = []  # plugin registrations refused, with the reason
        for registration in registrations or builtin_registrations():
            self._registered[registration.name] = registration
        self._scanned = not plugins
        self._instances: dict[str, TaskType] = {}  # by name
        self._by_class: dict[type[TaskType], TaskType] = {}  # aliases share one instance

    def _scan_plugins(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            dist = entry.dist
            origin = f"plugin {dist.name} {dist.version}" if dist else "plugin"
            taken = self._registered.get(entry.name)
            if taken is not None:
                if taken.target != entry.value:
                    self.ignored.append(
                        f"'{entry.name}' of {origin} ({entry.value}) is ignored: "
                        f"{taken.origin} type '{entry.name}' has that name"
                    )
                continue
            self._registered[entry.name] = Registration(entry.name, entry.value, origin, entry)

    def get(self, name: str) -> TaskType | None:
        """The type called `name`, or None. A broken plugin raises TypeLoadError."""
        found = self._instances.get(name)
        if found is not None:
            return found
        registration = self._registered.get(name)
        if registration is None:
            self._scan_plugins()
            registration = self._registered.get(name)
            if registration is None:
                return None
        cls = registration.load()
        instance = self._by_class.get(cls)
        if instance is None:
            try:
                instance = cls(self.setup)
            except Exception as exc:  # a plugin's constructor may raise anything
                raise TypeLoadError(
                    f"task type '{name}' ({registration.origin}) failed to start: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            self._by_class[cls] = instance
        self._instances[name] = instance
        return instance

    def registrations(self) -> list[Registration]:
        self._scan_plugins()
        return sorted(self._registered.values(), key=lambda r: (r.origin != BUILTIN, r.name))

    def names(self) -> list[str]:
        self._scan_plugins()
        return sorted(self._registered)

    def close(self) -> None:
        """Every type's close(), each on its own: one that fails (a plugin's bug) is said
        on stderr, and the others are still closed."""
        for task_type in self._by_class.values():
            try:
                task_type.close()
            except Exception as exc:  # noqa: BLE001 - any bug of a plugin's
                print(
                    f"warning: task type '{task_type.name}' failed to close: {exc!r}",
                    file=sys.stderr,
                )


def builtin_registrations() -> list[Registration]:
    return [Registration(name, target, BUILTIN) for name, target in BUILTIN_TYPES.items()]
