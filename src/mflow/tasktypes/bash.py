"""`bash` tasks: the model of their keys, and the type that runs them (see shell.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from mflow.tasktypes.base import TaskContext, TaskResult, TaskSpec, TaskType
from mflow.tasktypes.shell import run_command, start_command

if TYPE_CHECKING:
    from mflow.tasktypes.process import Child


class BashSpec(TaskSpec):
    command: str = Field(description="run with bash -c (or exec'd directly when plain)")


class BashType(TaskType):
    """A shell command, run with bash (or exec'd directly when it is a plain command line);
    the task succeeds when it exits with 0."""

    name = "bash"
    spec = BashSpec
    checks_nul_itself = True  # its one key, below (and env, by the model)

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        # Here rather than as a pydantic validator: a Python validator costs microseconds
        # per task, which shows at 100,000 tasks.
        assert isinstance(task, BashSpec)
        if not task.command.strip():
            return [("command", "the command is empty")]
        if "\0" in task.command:
            return [("command", "the command holds a NUL character")]
        return []

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        assert isinstance(task, BashSpec)
        return await run_command(task.command, ctx)

    def start_now(self, task: TaskSpec, ctx: TaskContext) -> Child | TaskResult:
        """The engine's shortcut for an attempt without a timeout (see Engine._start)."""
        assert isinstance(task, BashSpec)
        return start_command(task.command, ctx)
