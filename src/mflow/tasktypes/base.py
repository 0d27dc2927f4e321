"""The task-type contract: a pydantic model of a type's keys and an async `run`.

Built-in types and plugins implement the same interface. Expected failures come back as a
TaskResult; only bugs raise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from pydantic import BaseModel, ConfigDict, Field

from mflow.envvars import EnvBlock

if TYPE_CHECKING:
    from mflow.datasources import Datasources
    from mflow.inputs import Backend
    from mflow.settings import Settings

MAX_SECONDS = 31 * 24 * 3600.0  # a month: longer is surely a mistake


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


@dataclass
class TaskContext:
    """What an attempt needs from the engine. The log file is opened by the type itself."""

    run_id: int
    task_id: str
    attempt: int
    log_path: Path
    cwd: Path
    env: dict[str, str]
    on_process: Callable[[int], None] = field(default=lambda pid: None)
    kill_grace_s: float = 10.0  # after SIGTERM, how long before SIGKILL
    # Facts about the attempt worth keeping beside its state (a Spark application id, a
    # nested run's id): stored as JSON on the attempt, shown by `status` and the API.
    record: Callable[[str, Any], None] = field(default=lambda key, value: None)
    resumed_from: int | None = None  # the run this run resumes, if it is a resume
    force: bool = False  # the resume was asked with --force


@dataclass(frozen=True)
class TaskResult:
    ok: bool
    exit_code: int | None = None
    message: str = ""  # one line; details go to the task log


class TaskType:
    """Base class of every task type. One instance serves every task of its type in a run."""

    name: ClassVar[str] = ""  # a plugin's name is the name of its entry point
    aliases: ClassVar[tuple[str, ...]] = ()
    spec: ClassVar[type[TaskSpec]] = TaskSpec

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


def open_log(ctx: TaskContext) -> TextIO:
    """The attempt's log as a line-buffered text file (for types that write it themselves)."""
    return open(create_log(ctx.log_path), "w", encoding="utf-8", errors="replace", buffering=1)


def create_log(path: Path) -> int:
    """A new attempt's log file. A file already there belongs to no run this database knows
    (run ids restart when a database is replaced): it is kept aside, never appended to."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileExistsError:
        os.replace(path, path.with_name(f"{path.name}.replaced-{time.time_ns()}"))
        return os.open(path, flags, 0o644)
