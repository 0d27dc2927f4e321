"""What the engine reports while a run goes on; the store, master log and terminal listen."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    """Fan every call out to several listeners, in order. A listener is called only for
    what its class overrides (found once, here): the engine reports several changes per
    task, and at 10,000 tasks each call to an empty method shows. So the listeners are
    fixed at construction, and a method must be defined on the class, not set on an
    instance."""

    def __init__(self, listeners: Sequence[RunListener]):
        self.listeners = list(listeners)
        self._started = self._overriding("attempt_started")
        self._process = self._overriding("attempt_process")
        self._details = self._overriding("attempt_details")
        self._ended = self._overriding("attempt_ended")
        self._state = self._overriding("task_state")
        self._limit = self._overriding("limit_changed")
        self._notice = self._overriding("notice")
        self._run_ended = self._overriding("run_ended")
        self._flush = self._overriding("flush")

    def _overriding(self, name: str) -> list[Callable[..., None]]:
        base = getattr(RunListener, name)
        return [
            getattr(listener, name)
            for listener in self.listeners
            if getattr(type(listener), name) is not base
        ]

    def attempt_started(self, task_id: str, attempt: int, log_path: Path) -> None:
        for call in self._started:
            call(task_id, attempt, log_path)

    def attempt_process(self, task_id: str, attempt: int, pid: int) -> None:
        for call in self._process:
            call(task_id, attempt, pid)

    def attempt_details(self, task_id: str, attempt: int, details: dict[str, Any]) -> None:
        for call in self._details:
            call(task_id, attempt, details)

    def attempt_ended(
        self, task_id: str, attempt: int, state: TaskState, exit_code: int | None, message: str
    ) -> None:
        for call in self._ended:
            call(task_id, attempt, state, exit_code, message)

    def task_state(self, task_id: str, state: TaskState, attempt: int, message: str = "") -> None:
        for call in self._state:
            call(task_id, state, attempt, message)

    def limit_changed(self, old: int, new: int) -> None:
        for call in self._limit:
            call(old, new)

    def notice(self, text: str) -> None:
        for call in self._notice:
            call(text)

    def run_ended(self, state: RunState, message: str | None = None) -> None:
        for call in self._run_ended:
            call(state, message)

    def flush(self) -> None:
        for call in self._flush:
            call()
