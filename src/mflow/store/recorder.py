"""Recorder: buffers the engine's state changes and writes them to the store in batches.

A batch is one transaction a few times a second, so a 10,000-task run costs tens of
commits, not tens of thousands. Only what happened is written: a task is recorded SUCCESS
after it succeeded; a crash loses at most the last unflushed fraction of a second, and
those tasks then look unfinished, so resume runs them again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from mflow.errors import EnvironmentFault
from mflow.listener import RunListener
from mflow.states import RunState, TaskState
from mflow.store.rows import HOST, MESSAGE_CHARS, fitted, utcnow

# An idle run still says it is alive this often (one row updated). A run whose mflow was
# killed ends, in the records, at its last heartbeat: this is how far off that can be.
HEARTBEAT_S = 1.0


class RunWriter(Protocol):
    """What the recorder needs of a store: StateStore, or SqliteRunWriter on the run path."""

    def write_batch(
        self,
        run_id: int,
        new_attempts: list[dict[str, Any]],
        changed_attempts: list[dict[str, Any]],
        task_changes: list[dict[str, Any]],
        run_end: tuple[RunState, str | None] | None = None,
    ) -> None: ...

    def earlier_resumer(self, resumed_from: int, after: int, run_id: int) -> int | None: ...

    def forget_run(self, run_id: int) -> None: ...

    def close(self) -> None: ...


class Recorder(RunListener):
    def __init__(self, store: RunWriter, run_id: int):
        self.store = store
        self.run_id = run_id
        self._new: dict[tuple[str, int], dict[str, Any]] = {}  # attempts not yet inserted
        self._changed: dict[tuple[str, int], dict[str, Any]] = {}  # inserted, then changed
        self._tasks: dict[str, dict[str, Any]] = {}
        self._run_end: tuple[RunState, str | None] | None = None
        self._written_at = time.monotonic()
        self.error: EnvironmentFault | None = None  # the last write failed with this

    def attempt_started(self, task_id: str, attempt: int, log_path: Path) -> None:
        self._new[(task_id, attempt)] = {
            "task_id": task_id,
            "attempt": attempt,
            "state": TaskState.RUNNING,
            "started_at": utcnow(),
            "ended_at": None,
            "exit_code": None,
            "message": None,
            "pid": None,
            "host": HOST,
            "log_path": str(log_path),
            "details": None,
        }

    def attempt_details(self, task_id: str, attempt: int, details: dict[str, Any]) -> None:
        self._row(task_id, attempt)["details"] = json.dumps(details, default=str)

    def attempt_process(self, task_id: str, attempt: int, pid: int) -> None:
        self._row(task_id, attempt)["pid"] = pid

    def attempt_ended(
        self, task_id: str, attempt: int, state: TaskState, exit_code: int | None, message: str
    ) -> None:
        row = self._row(task_id, attempt)
        message = fitted(message, MESSAGE_CHARS)
        row.update(state=state, ended_at=utcnow(), exit_code=exit_code, message=message)

    def task_state(self, task_id: str, state: TaskState, attempt: int, message: str = "") -> None:
        self._tasks[task_id] = {
            "b_task": task_id,
            "state": state,
            "attempts": attempt,
            "message": fitted(message, MESSAGE_CHARS),
        }

    def run_ended(self, state: RunState, message: str | None = None) -> None:
        self._run_end = (state, fitted(message, MESSAGE_CHARS))
        self.flush()

    def _row(self, task_id: str, attempt: int) -> dict[str, Any]:
        key = (task_id, attempt)
        row = self._new.get(key)
        if row is not None:
            return row
        row = self._changed.get(key)
        if row is None:
            row = self._changed[key] = {"b_task": task_id, "b_attempt": attempt}
        return row

    def flush(self) -> None:
        idle = not (self._new or self._changed or self._tasks or self._run_end)
        now = time.monotonic()
        if idle and now - self._written_at < HEARTBEAT_S:
            return
        try:
            self.store.write_batch(
                self.run_id,
                list(self._new.values()),
                list(self._changed.values()),
                list(self._tasks.values()),
                self._run_end,
            )
        except EnvironmentFault as exc:
            # Keep everything buffered and try again at the next flush; the run goes on.
            self.error = exc
            return
        self.error = None
        self._new, self._changed, self._tasks = {}, {}, {}
        self._run_end = None
        self._written_at = now
