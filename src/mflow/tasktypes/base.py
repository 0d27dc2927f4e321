"""The task-type contract: a pydantic model of a type's keys and an async `run`.

Built-in types and plugins implement the same interface. Expected failures come back as a
TaskResult; only bugs raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from mflow.modelcheck import EnvBlock
from mflow.tasktypes.context import (  # re-exported: plugins import them from here
    MAX_SECONDS,
    TaskContext,
    TaskResult,
    create_log,
    open_log,
)

if TYPE_CHECKING:
    from mflow.datasources import Datasources
    from mflow.inputs import Backend
    from mflow.settings import Settings


def empty_list() -> list[Any]:
    """A default factory. Not `list` itself: pydantic reads a factory's signature, and for a
    builtin, inspect parses its text signature, which first compiles the tokenizer's large
    regular expression: ~2 ms of every start."""
    return []


def empty_dict() -> dict[str, Any]:
    """A default factory (see empty_list)."""
    return {}


class TaskSpec(BaseModel):
    """Keys common to every task type. A type subclasses this with its own keys."""

    # defer_build: a schema is built on first use, so types a flow does not use cost nothing.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)

    id: str
    type: str
    depends: list[str] = Field(default_factory=empty_list)
    env: EnvBlock = Field(default_factory=empty_dict)
    # Bounds keep arithmetic sane (a backoff of 1e200 would overflow) and catch typos.
    retries: int | None = Field(default=None, ge=0, le=1000)
    retry_delay: float | None = Field(default=None, ge=0, le=MAX_SECONDS)
    retry_backoff: float | None = Field(default=None, ge=1, le=100)
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    description: str | None = None


@dataclass(frozen=True)
class TypeSetup:
    """What a task type may need from the files of the run, given to its constructor.
    At validation time `backend` may be None (a broken config.json)."""

    settings: Settings | None
    datasources: Datasources
    backend: Backend | None = None


class TaskType:
    """Base class of every task type. One instance serves every task of its type in a run."""

    name: ClassVar[str] = ""  # a plugin's name is the name of its entry point
    aliases: ClassVar[tuple[str, ...]] = ()
    spec: ClassVar[type[TaskSpec]] = TaskSpec
    # Validation looks for NUL characters in every key of a task, unless its type's own
    # check() does (bash, whose 100,000-task flows would pay for the scan)
    checks_nul_itself: ClassVar[bool] = False

    def __init__(self, setup: TypeSetup):
        self.setup = setup

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        """Problems the model cannot see (an unknown datasource, a missing script), as
        (key, message); `folder` is the task file's. Called during validation."""
        return []

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the type holds (connection pools) at the end of a run."""


__all__ = [
    "MAX_SECONDS",
    "TaskContext",
    "TaskResult",
    "TaskSpec",
    "TaskType",
    "TypeSetup",
    "create_log",
    "empty_dict",
    "empty_list",
    "open_log",
]
