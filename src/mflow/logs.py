"""Log files: the task-attempt log names of the original, and the master log `mflow.log`."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from mflow.clock import utc_clock
from mflow.errors import EnvironmentFault
from mflow.listener import RunListener
from mflow.states import RunState, TaskState

MASTER_LOG = "mflow.log"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9_.@+=-]")


def log_name_part(task_id: str) -> str:
    """A task id made safe for a file name (the id itself may hold any character)."""
    return _UNSAFE_FILENAME.sub("_", task_id)


def task_log_path(log_directory: Path, run_id: int, task_id: str, attempt: int) -> Path:
    """`master_<run>_task_<id>.log` as the original named it; later attempts get a suffix."""
    suffix = "" if attempt == 1 else f".attempt{attempt}"
    return log_directory / f"master_{run_id}_task_{log_name_part(task_id)}{suffix}.log"


# A log file last written this long before its attempt started is another run's. The margin
# is for a shared log folder whose file server's clock runs behind this host's.
STALE_MARGIN_S = 30.0


def log_is_current(log: os.stat_result, started_at: datetime | str | None) -> bool:
    """Whether a log file is the attempt's that started at `started_at` (UTC). A file last
    written well before then is an older run's: run ids restart when a database is
    replaced, and a task that prints nothing creates no file of its own to take that name."""
    if started_at is None:
        return True
    if isinstance(started_at, str):
        started_at = datetime.fromisoformat(started_at)
    if started_at.tzinfo is None:
        started_at = started_at.replace(tzinfo=UTC)
    return log.st_mtime >= started_at.timestamp() - STALE_MARGIN_S


def _last_run_in(path: Path) -> int:
    """The highest run id in the last lines of a master log (0: none, or no log)."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, os.fstat(log.fileno()).st_size - 8192))
            tail = log.read(8192)  # bounded: a link to /dev/zero has no end
    except OSError:
        return 0
    return max((int(found) for found in _RUN_ID_IN_LINE.findall(tail)), default=0)


_RUN_ID_IN_LINE = re.compile(rb"Z run (\d{1,18}) ")


class MasterLog(RunListener):
    """Appends one timestamped line per state change; written out with each flush."""

    def __init__(self, log_directory: Path):
        self.run_id = 0  # set once the run is recorded; the file is opened before, to fail early
        self.path = log_directory / MASTER_LOG
        self.write_error: str | None = None  # a write failed so: some lines are missing
        try:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise EnvironmentFault(
                f"cannot write the master log {self.path}: {exc.strerror or exc}"
            ) from None
        self._lines: list[str] = []
        self._clock = utc_clock()
        self._logs: dict[str, Path] = {}
        self.last_run_seen = _last_run_in(self.path)  # before this run writes its own

    def set_aside_older_logs(self) -> None:
        """Run ids start again when the database is replaced: if this log has seen this
        run id or a later one, task logs named for this run are an older run's. They are
        renamed now, before any task starts, so that a task that prints nothing shows no
        output rather than theirs."""
        if self.last_run_seen < self.run_id:
            return
        prefix = f"master_{self.run_id}_task_"
        stamp = time.time_ns()
        with os.scandir(self.path.parent) as entries:
            older = [
                e.path for e in entries if e.name.startswith(prefix) and ".replaced-" not in e.name
            ]
        for path in older:
            try:
                os.replace(path, f"{path}.replaced-{stamp}")
            except OSError:
                pass  # readers still tell an older file by its time (log_is_current)

    def write(self, text: str) -> None:
        self._lines.append(f"{self._clock.now()} run {self.run_id} {text}\n")

    # Two lines per attempt (started with pid and log; ended) keep the file readable.
    def attempt_started(self, task_id: str, attempt: int, log_path: Path) -> None:
        self._logs[task_id] = log_path

    def attempt_process(self, task_id: str, attempt: int, pid: int) -> None:
        self.write(f"task {task_id} attempt {attempt} RUNNING pid {pid} log {self._logs[task_id]}")

    def attempt_ended(
        self, task_id: str, attempt: int, state: TaskState, exit_code: int | None, message: str
    ) -> None:
        if state is not TaskState.SUCCESS:
            self.write(
                f"task {task_id} attempt {attempt} {state} exit code {exit_code}"
                + (f": {message}" if message else "")
            )

    def task_state(self, task_id: str, state: TaskState, attempt: int, message: str = "") -> None:
        if state is not TaskState.RUNNING:
            self.write(f"task {task_id} {state}" + (f": {message}" if message else ""))

    def limit_changed(self, old: int, new: int) -> None:
        self.write(f"max_process_concurrency changed from {old} to {new}")

    def notice(self, text: str) -> None:
        self.write(text)

    def run_ended(self, state: RunState, message: str | None = None) -> None:
        self.write(f"ended {state}" + (f": {message}" if message else ""))
        self.flush()
        try:
            self._file.close()
        except OSError:
            pass

    def flush(self) -> None:
        if self._lines and not self._file.closed:
            try:
                self._file.writelines(self._lines)
                self._file.flush()
            except OSError as exc:  # disk full, say: the database still has every change
                self.write_error = exc.strerror or str(exc)  # some lines are missing
            self._lines.clear()
