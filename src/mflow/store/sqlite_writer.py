"""The run path's writer for the embedded SQLite backend, on the standard library's sqlite3.

Why not SQLAlchemy here: importing it costs about a third of a second, more than make
needs to run a thousand tasks; `mflow run` on SQLite needs only these few statements.
The schema itself is still created and migrated by SQLAlchemy (store.migrations), which
is imported only when the database is new or older than this mflow. Reads (runs, status,
logs, the API) go through the SQLAlchemy StateStore. tests/test_store.py checks that both
writers leave the same rows.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mflow.errors import EnvironmentFault
from mflow.states import RunState, TaskState
from mflow.store.rows import HOST, SCHEMA_VERSION, sqlite_timestamp, utcnow

_INSERT_RUN = (
    "INSERT INTO mf_runs (flow_path, config_path, state, started_at, heartbeat_at, pid, host,"
    " task_count, parent_run_id, parent_task_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TASK = (
    "INSERT INTO mf_tasks (run_id, task_id, position, task_type, state, attempts, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_ATTEMPT_COLUMNS = ("task_id", "attempt", "state", "started_at", "ended_at", "exit_code",
                    "message", "pid", "host", "log_path")
_INSERT_ATTEMPT = (
    f"INSERT INTO mf_attempts (run_id, {', '.join(_ATTEMPT_COLUMNS)})"
    f" VALUES (:run_id, {', '.join(':' + c for c in _ATTEMPT_COLUMNS)})"
)


class SqliteRunWriter:
    """create_run + write_batch, the same contract as StateStore's, for one SQLite file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.conn = sqlite3.connect(path, timeout=60, isolation_level=None,
                                        check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            if self._schema_version() != SCHEMA_VERSION:
                self._migrate()
        except sqlite3.Error as exc:
            raise EnvironmentFault(f"cannot use the state database {path}: {exc}") from None

    def _schema_version(self) -> int | None:
        try:
            row = self.conn.execute(
                "SELECT val FROM mf_meta WHERE name = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            return None  # a new database: no tables yet
        return int(row[0]) if row else None

    def _migrate(self) -> None:
        from mflow.store.store import StateStore, sqlite_url

        StateStore(sqlite_url(self.path)).close()  # creates or upgrades the schema

    def close(self) -> None:
        self.conn.close()

    def create_run(self, flow_path: Path, config_path: Path | None, task_rows: Sequence[Any],
                   *, parent_run_id: int | None = None, parent_task_id: str | None = None) -> int:
        now = sqlite_timestamp(utcnow())
        with _immediate(self.conn):
            cursor = self.conn.execute(_INSERT_RUN, (
                str(flow_path), str(config_path) if config_path else None, RunState.RUNNING,
                now, now, os.getpid(), HOST, len(task_rows), parent_run_id, parent_task_id))
            run_id = cursor.lastrowid
            assert run_id is not None
            self.conn.executemany(_INSERT_TASK, (
                (run_id, row.task_id, position, row.task_type, TaskState.PENDING, 0, now)
                for position, row in enumerate(task_rows)))
        return run_id

    def write_batch(self, run_id: int, new_attempts: list[dict[str, Any]],
                    changed_attempts: list[dict[str, Any]], task_changes: list[dict[str, Any]],
                    run_end: tuple[RunState, str | None] | None = None) -> None:
        now = sqlite_timestamp(utcnow())
        with _immediate(self.conn):
            if new_attempts:
                self.conn.executemany(_INSERT_ATTEMPT, (
                    {"run_id": run_id, **_text_times(row)} for row in new_attempts))
            for row in map(_text_times, changed_attempts):
                columns = [key for key in row if not key.startswith("b_")]
                self.conn.execute(
                    f"UPDATE mf_attempts SET {', '.join(f'{c} = :{c}' for c in columns)}"
                    " WHERE run_id = :b_run AND task_id = :b_task AND attempt = :b_attempt",
                    {"b_run": run_id, **row})
            if task_changes:
                self.conn.executemany(
                    "UPDATE mf_tasks SET state = :state, attempts = :attempts,"
                    " message = :message, updated_at = :now"
                    " WHERE run_id = :b_run AND task_id = :b_task",
                    ({"b_run": run_id, "now": now, **row} for row in task_changes))
            if run_end is None:
                self.conn.execute("UPDATE mf_runs SET heartbeat_at = ? WHERE run_id = ?",
                                  (now, run_id))
            else:
                self.conn.execute(
                    "UPDATE mf_runs SET heartbeat_at = ?, state = ?, ended_at = ?, message = ?"
                    " WHERE run_id = ?", (now, run_end[0], now, run_end[1], run_id))


def _text_times(row: dict[str, Any]) -> dict[str, Any]:
    return {key: sqlite_timestamp(value) if isinstance(value, datetime) else value
            for key, value in row.items()}


class _immediate:
    """BEGIN IMMEDIATE ... COMMIT: take the write lock up front (see store._make_engine)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
