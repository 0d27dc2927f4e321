"""What an attempt is given (TaskContext) and gives back (TaskResult), and its log file.

The engine and the process runner use these alone; they are kept apart from the models in
base.py so that the run path can start without pydantic (see warmstart.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

MAX_SECONDS = 31 * 24 * 3600.0  # a month: longer is surely a mistake


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


@dataclass(frozen=True)
class OutOfResources(TaskResult):
    """Not started for want of open files or processes (ulimit -n, ulimit -u), which a
    running task gives back when it ends: the start can wait for that."""

    reason: str = ""  # what ran out, and which limit


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
