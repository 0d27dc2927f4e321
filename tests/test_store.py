"""The state store: the shipped DDL matches the schema, both SQLite writers leave the same
rows, and a database from a newer mflow is refused rather than damaged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import Project, assert_exit, assert_no_traceback, bash
from mflow.states import RunState, TaskState
from mflow.store import ddl
from mflow.store.recorder import Recorder
from mflow.store.rows import TaskRow
from mflow.store.sqlite_writer import SqliteRunWriter
from mflow.store.store import StateStore, sqlite_url

REPO = Path(__file__).resolve().parents[1]


def test_shipped_ddl_files_match_the_schema():
    for path, text in ddl.outputs(REPO).items():
        assert path.read_text() == text, (
            f"{path.relative_to(REPO)} is out of date: run `python -m mflow.store.ddl`"
        )


def _record_a_run(writer, task_count: int = 3) -> int:
    """The same sequence of events, through the Recorder, on either writer."""
    rows = [
        TaskRow(f"t{i}", "bash", 2, f'["t{i - 1}"]' if i else "[]", f"d{i}")
        for i in range(task_count)
    ]
    run_id = writer.create_run(Path("/flows/nightly.json"), Path("/flows/config.json"), rows)
    recorder = Recorder(writer, run_id)
    recorder.attempt_started("t0", 1, Path("/logs/t0.log"))
    recorder.attempt_process("t0", 1, 4242)
    recorder.task_state("t0", TaskState.RUNNING, 1)
    recorder.flush()  # the start is written on its own ...
    recorder.attempt_ended("t0", 1, TaskState.FAILED, 3, "exit code 3")
    recorder.task_state("t0", TaskState.RETRYING, 1, "attempt 1 of 2 failed")
    recorder.attempt_started("t0", 2, Path("/logs/t0.attempt2.log"))  # ... the retry is merged
    recorder.attempt_process("t0", 2, 4343)
    recorder.attempt_ended("t0", 2, TaskState.SUCCESS, 0, "")
    recorder.task_state("t0", TaskState.SUCCESS, 2)
    recorder.task_state("t1", TaskState.UPSTREAM_FAILED, 0, "upstream task 'x' failed")
    recorder.run_ended(RunState.FAILED, "1 SUCCESS, 1 UPSTREAM_FAILED, 1 PENDING")
    return run_id


def _comparable(store: StateStore, run_id: int) -> dict:
    volatile = {"run_id", "started_at", "ended_at", "heartbeat_at", "updated_at", "pid", "host"}

    def strip(row: dict) -> dict:
        return {k: v for k, v in row.items() if k not in volatile}

    run = store.get_run(run_id)
    assert run is not None
    return {
        "run": strip(run),
        "tasks": [strip(row) for row in store.task_rows(run_id)],
        "attempts": [strip(row) | {"pid": row["pid"]} for row in store.attempt_rows(run_id)],
    }


def test_the_sqlite_writer_and_the_sqlalchemy_store_write_the_same_rows(tmp_path: Path):
    lean_db, full_db = tmp_path / "lean.db", tmp_path / "full.db"
    lean = SqliteRunWriter(lean_db)
    lean_run = _record_a_run(lean)
    lean.close()
    full = StateStore(sqlite_url(full_db))
    full_run = _record_a_run(full)
    lean_view = _comparable(StateStore(sqlite_url(lean_db)), lean_run)
    full_view = _comparable(full, full_run)
    assert lean_view == full_view
    attempts = lean_view["attempts"]
    assert [(a["attempt"], a["state"], a["exit_code"], a["pid"]) for a in attempts] == [
        (1, "FAILED", 3, 4242),
        (2, "SUCCESS", 0, 4343),
    ]
    # timestamps written by the lean writer read back as datetimes, in order
    rows = StateStore(sqlite_url(lean_db)).attempt_rows(lean_run)
    assert rows[0]["started_at"] <= rows[0]["ended_at"] <= rows[1]["started_at"]


def test_both_writers_share_one_database(tmp_path: Path):
    path = tmp_path / "mflow.db"
    first = _record_a_run(StateStore(sqlite_url(path)))
    second = _record_a_run(SqliteRunWriter(path))
    store = StateStore(sqlite_url(path))
    assert second == first + 1
    assert _comparable(store, first)["attempts"] == _comparable(store, second)["attempts"]


def test_a_database_from_a_newer_mflow_is_refused(project: Project):
    project.write_tasks([bash("a", "echo a")])
    assert_exit(project.mflow("run"), 0)
    conn = sqlite3.connect(project.db_path)
    conn.execute("UPDATE mf_meta SET val = '99' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    for args in (["run"], ["runs"]):
        result = project.mflow(*args)
        assert_exit(result, 3)
        assert_no_traceback(result)
        assert "schema version 99" in result.stderr and "upgrade mflow" in result.stderr
    assert project.db("SELECT count(*) AS n FROM mf_runs")[0]["n"] == 1  # nothing added
