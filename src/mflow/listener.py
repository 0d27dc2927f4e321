"""What the engine reports while a run goes on; the store, master log and terminal listen."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mflow.states import RunState, TaskState


class RunListener:
    """Every method is a no-op here; a listener overrides what it cares about."""

    def attempt_started(self, task_id: str, attempt: int, log_path: Path) -> None: ...

    def attempt_process(self, task_id: str, attempt: int, pid: int) -> None: ...

    def attempt_details(self, task_id: str, attempt: int, details: dict[str, Any]) -> None:
        """What the task type recorded of the attempt so far (all of it, each time)."""

    def attempt_ended(
        self, task_id: str, attempt: int, state: TaskState, exit_code: int | None, message: str
    ) -> None: ...

    def task_state(
        self, task_id: str, state: TaskState, attempt: int, message: str = ""
    ) -> None: ...

    def limit_changed(self, old: int, new: int) -> None: ...

    def notice(self, text: str) -> None:
        """Something the user should read that is not a state change (a bad config reload)."""

    def run_ended(self, state: RunState, message: str | None = None) -> None: ...

    def flush(self) -> None:
        """Write out what was buffered; called a few times a second and at the end."""


class Listeners(RunListener):
    """Fan every call out to several listeners, in order."""

    def __init__(self, listeners: Sequence[RunListener]):
        self.listeners = list(listeners)

    def attempt_started(self, task_id: str, attempt: int, log_path: Path) -> None:
        for listener in self.listeners:
            listener.attempt_started(task_id, attempt, log_path)

    def attempt_process(self, task_id: str, attempt: int, pid: int) -> None:
        for listener in self.listeners:
            listener.attempt_process(task_id, attempt, pid)

    def attempt_details(self, task_id: str, attempt: int, details: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener.attempt_details(task_id, attempt, details)

    def attempt_ended(
        self, task_id: str, attempt: int, state: TaskState, exit_code: int | None, message: str
    ) -> None:
        for listener in self.listeners:
            listener.attempt_ended(task_id, attempt, state, exit_code, message)

    def task_state(self, task_id: str, state: TaskState, attempt: int, message: str = "") -> None:
        for listener in self.listeners:
            listener.task_state(task_id, state, attempt, message)

    def limit_changed(self, old: int, new: int) -> None:
        for listener in self.listeners:
            listener.limit_changed(old, new)

    def notice(self, text: str) -> None:
        for listener in self.listeners:
            listener.notice(text)

    def run_ended(self, state: RunState, message: str | None = None) -> None:
        for listener in self.listeners:
            listener.run_ended(state, message)

    def flush(self) -> None:
        for listener in self.listeners:
            listener.flush()
