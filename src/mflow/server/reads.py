"""What the API reads: runs, tasks, attempts and logs, from the state store and log files.
Passwords of the datasources are masked in every text that leaves here."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mflow import views
from mflow.logs import log_is_current
from mflow.states import TaskState
from mflow.store.rows import stored_depends
from mflow.store.store import StateStore

REAP_EVERY_S = 5.0  # how often a read looks for runs whose mflow died
MAX_LOG_READ = 4 << 20  # bytes in one answer; ask again from the next offset


class NotFound(LookupError):
    """An unknown run, task or attempt: the API answers 404 with this message."""


@dataclass(frozen=True)
class LogChunk:
    data: bytes
    offset: int  # where `data` starts in the file
    size: int  # the file's size when read
    state: str  # the attempt's state (RUNNING: the log may still grow)


class NoRunsYet(NotFound):
    """The state database does not exist yet: no run was recorded where the server looks."""


class Reads:
    def __init__(
        self,
        open_store: Callable[[], StateStore | None],
        mask: Callable[[str], str] = lambda text: text,
    ):
        """`open_store`: the state store, or None while there is no database yet (the
        server does not create one: it may have been started in the wrong folder)."""
        self._open_store = open_store
        self._store: StateStore | None = None
        self.mask = mask
        self._reaped_at = 0.0
        self._lock = threading.Lock()

    @property
    def store(self) -> StateStore:
        gone = self._store is not None and self._store.sqlite_file_gone()
        if gone:  # removed or moved away while serving: not re-created empty
            with self._lock:
                if self._store is not None:
                    self._store.close()
                    self._store = None
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._open_store()
            if self._store is None:
                raise NoRunsYet("no runs recorded yet")
        return self._store

    def runs_recorded(self) -> bool:
        try:
            self.store.count_runs()  # the database answers
        except NoRunsYet:
            return False
        return True

    def _reap(self) -> None:
        """A run whose mflow was killed must not show RUNNING for ever."""
        with self._lock:
            if time.monotonic() - self._reaped_at < REAP_EVERY_S:
                return
            self._reaped_at = time.monotonic()
        self.store.reap_dead_runs()

    def _masked(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {key: self._masked(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._masked(item) for item in value]
        return value

    # -- runs -----------------------------------------------------------------------------
    def runs(self, limit: int, offset: int, **filters: Any) -> dict[str, Any]:
        state = filters.pop("state", None)
        try:
            self._reap()
            rows = self.store.list_runs(limit, state, offset=offset, **filters)
            total = self.store.count_runs(state, **filters)
        except NoRunsYet:
            rows, total = [], 0
        return {
            "runs": [self._masked(views.run_json(row)) for row in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }

    def run_row(self, run_id: int) -> dict[str, Any]:
        self._reap()
        row = self.store.get_run(run_id)
        if row is None:
            raise NotFound(f"no run {run_id}")
        return row

    def task_row(self, run_id: int, task_id: str) -> dict[str, Any]:
        for row in self.store.task_rows(run_id):
            if row["task_id"] == task_id:
                return row
        raise NotFound(f"run {run_id} has no task '{task_id}'")

    def run(self, run_id: int) -> dict[str, Any]:
        row = self.run_row(run_id)
        tasks = self.store.task_rows(run_id)
        data = views.status_json(row, tasks, self.store.attempt_rows(run_id))
        nested = self._nested_run_ids(run_id)
        depends = {task["task_id"]: stored_depends(task) for task in tasks}
        for task in data["tasks"]:
            task["depends"] = depends[task["task_id"]]
            task["nested_run_ids"] = nested.get(task["task_id"], [])
        return self._masked(data)

    def dag(self, run_id: int) -> dict[str, Any]:
        row = self.run_row(run_id)
        tasks = self.store.task_rows(run_id)
        nested = self._nested_run_ids(run_id)
        in_run = {task["task_id"] for task in tasks}
        return {
            "run_id": run_id,
            "state": row["state"],
            "nodes": [
                {
                    "id": task["task_id"],
                    "type": task["task_type"],
                    "state": task["state"],
                    "attempts": task["attempts"],
                    "max_attempts": task["max_attempts"],
                    "message": self.mask(task["message"]) if task["message"] else None,
                    "nested_run_ids": nested.get(task["task_id"], []),
                }
                for task in tasks
            ],
            # a partial run's tasks may depend on tasks it did not run: no edge to those
            "edges": [
                {"source": dep, "target": task["task_id"]}
                for task in tasks
                for dep in stored_depends(task)
                if dep in in_run
            ],
        }

    def _nested_run_ids(self, run_id: int) -> dict[str, list[int]]:
        """Task id -> the runs of the nested flow it started."""
        nested: dict[str, list[int]] = {}
        for child in self.store.child_runs(run_id):
            nested.setdefault(child["parent_task_id"], []).append(child["run_id"])
        return nested

    # -- tasks and attempts ---------------------------------------------------------------
    def attempts(self, run_id: int, task_id: str) -> list[dict[str, Any]]:
        self.run_row(run_id)
        self.task_row(run_id, task_id)
        rows = self.store.attempt_rows(run_id, task_id)
        return [self._masked(views.attempt_json(row)) for row in rows]

    def _attempt_row(self, run_id: int, task_id: str, attempt: int) -> dict[str, Any]:
        self.run_row(run_id)
        rows = self.store.attempt_rows(run_id, task_id)
        if not rows:
            self.task_row(run_id, task_id)  # no such task, or it has not started
        for row in rows:
            if row["attempt"] == attempt:
                return row
        raise NotFound(f"task '{task_id}' of run {run_id} has no attempt {attempt}")

    def log(
        self,
        run_id: int,
        task_id: str,
        attempt: int,
        *,
        offset: int | None = None,
        length: int | None = None,
        tail: int | None = None,
    ) -> LogChunk:
        """Bytes of an attempt's log: from `offset` (at most `length`), or the last `tail`
        lines. A task that printed nothing has no file: an empty chunk."""
        row = self._attempt_row(run_id, task_id, attempt)
        return read_log(row["log_path"], row["state"], offset, length, tail, row["started_at"])

    def attempt_state(self, run_id: int, task_id: str, attempt: int) -> AttemptLog:
        row = self._attempt_row(run_id, task_id, attempt)
        return AttemptLog(row["state"], row["log_path"], row["started_at"])


@dataclass(frozen=True)
class AttemptLog:
    """Where an attempt's log is, and what read_log needs to know of the attempt."""

    state: str
    path: str | None
    started_at: Any


def read_log(
    path: str | None,
    state: str,
    offset: int | None,
    length: int | None,
    tail: int | None,
    started_at: Any = None,
) -> LogChunk:
    if not path:
        return LogChunk(b"", 0, 0, state)
    try:
        with open(path, "rb") as log:
            found = os.fstat(log.fileno())
            if not log_is_current(found, started_at):
                return LogChunk(b"", 0, 0, state)  # another run's file (see log_is_current)
            size = found.st_size
            if tail is not None:
                start = _tail_start(log, size, tail)
                if size - start > MAX_LOG_READ:  # lines too long for one answer: the end
                    start = _line_after(log, size - MAX_LOG_READ, size)
            else:
                start = min(offset or 0, size)
            log.seek(start)
            want = min(length if length is not None else MAX_LOG_READ, MAX_LOG_READ)
            data = log.read(want)
    except FileNotFoundError:
        return LogChunk(b"", 0, 0, state)
    if start + len(data) < size and length is None:  # cut by the cap, not by the asker
        data = data[: whole_lines(data)]
    return LogChunk(data, start, size, state)


HELD_BACK = 256  # bytes kept for the next read when a line is too long: a secret's length


def whole_lines(data: bytes) -> int:
    """How much of `data` to send when more follows: up to its last line break, so that
    no password is cut in two (a cut one would not be masked) and no UTF-8 character is;
    within a line longer than that, all but the last HELD_BACK bytes."""
    cut = data.rfind(b"\n") + 1
    if cut:
        return cut
    cut = max(len(data) - HELD_BACK, 0)
    while 0 < cut < len(data) and data[cut] & 0xC0 == 0x80:  # inside a UTF-8 character
        cut -= 1
    return cut


def _line_after(log: Any, position: int, size: int) -> int:
    """The first line that starts at or after `position` (or `position`, in one long line)."""
    log.seek(position)
    ahead = log.read(min(size - position, 65536))
    found = ahead.find(b"\n")
    return position + found + 1 if found >= 0 else position


def _tail_start(log: Any, size: int, lines: int) -> int:
    """The offset where the last `lines` lines of the file begin (read backwards in blocks)."""
    if lines <= 0:
        return size
    position = size
    found = 0
    block = 65536
    # a final newline ends the last line; it does not start another
    log.seek(max(size - 1, 0))
    skip_last = size > 0 and log.read(1) == b"\n"
    while position > 0:
        step = min(block, position)
        position -= step
        log.seek(position)
        data = log.read(step)
        end = len(data) - 1 if (skip_last and position + step == size) else len(data)
        index = end
        while True:
            index = data.rfind(b"\n", 0, index)
            if index < 0:
                break
            found += 1
            if found == lines:
                return position + index + 1
    return 0


def attempt_over(state: str) -> bool:
    return state != TaskState.RUNNING


def log_file_size(path: str | None) -> int:
    if not path:
        return 0
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0
