"""The state schema (SQLAlchemy Core). Short names, no Oracle reserved words; bump
rows.SCHEMA_VERSION and add a migration in store.migrations for any change."""

from __future__ import annotations

from sqlalchemy import (
    TIMESTAMP,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from mflow.store.rows import MESSAGE_CHARS, NAME_CHARS, PATH_CHARS, SCOPE_CHARS

metadata = MetaData()

# Oracle's DATE has no fractional seconds; its TIMESTAMP does.
Timestamp = DateTime().with_variant(TIMESTAMP(), "oracle")

meta = Table(
    "mf_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("val", String(255), nullable=False),
)

# One row per run (the original's "master").
runs = Table(
    "mf_runs",
    metadata,
    Column("run_id", Integer, Identity(), primary_key=True),
    Column("flow_path", String(PATH_CHARS), nullable=False),
    Column("config_path", String(PATH_CHARS)),
    Column("state", String(20), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp),
    Column("heartbeat_at", Timestamp),
    Column("pid", Integer),
    Column("host", String(NAME_CHARS)),
    Column("task_count", Integer, nullable=False),
    Column("parent_run_id", Integer),
    Column("parent_task_id", String(255)),
    Column("parent_attempt", Integer),  # a nested flow's run: the attempt that started it
    Column("resumed_from", Integer),  # the run this one resumes
    Column("scope", String(SCOPE_CHARS)),  # a partial run's selection ("--only a,b"); NULL: all
    Column("message", String(MESSAGE_CHARS)),
)
Index("mf_runs_state", runs.c.state)

# Current state of each task of a run (one row per task, updated in place).
tasks = Table(
    "mf_tasks",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("task_id", String(255), primary_key=True),
    Column("position", Integer, nullable=False),  # order in the task file
    Column("task_type", String(64), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),  # 1 + retries
    Column("updated_at", Timestamp, nullable=False),
    Column("message", String(MESSAGE_CHARS)),
    Column("depends_on", Text),  # JSON list of ids, to tell whether a resume is safe
    Column("digest", String(64)),  # of the task's definition, likewise
)

# Every attempt of every task, append-only: a retry is a new row, never an overwrite.
attempts = Table(
    "mf_attempts",
    metadata,
    Column("run_id", Integer, primary_key=True),
    Column("task_id", String(255), primary_key=True),
    Column("attempt", Integer, primary_key=True),  # 1-based
    Column("state", String(20), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp),
    Column("exit_code", Integer),
    Column("message", String(MESSAGE_CHARS)),
    Column("pid", Integer),
    Column("host", String(NAME_CHARS)),
    Column("log_path", String(PATH_CHARS)),
    Column("details", Text),  # JSON object a task type records (Spark app id, nested run id)
)
Index("mf_runs_parent", runs.c.parent_run_id)
