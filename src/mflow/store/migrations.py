"""Create the schema on first use and upgrade it in place; safe when several mflow start at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Connection, Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from mflow.errors import EnvironmentFault
from mflow.store import tables as t
from mflow.store.rows import SCHEMA_VERSION


def _add_columns(conn: Connection, *columns: Column[Any]) -> None:
    for column in columns:
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {column.table.name} ADD {column.name} {kind}"))


def _v1_to_v2(conn: Connection) -> None:
    """Nested flows and task details: mf_runs.parent_attempt, mf_attempts.details."""
    _add_columns(conn, t.runs.c.parent_attempt, t.attempts.c.details)
    for index in t.runs.indexes:
        if index.name == "mf_runs_parent":
            index.create(conn, checkfirst=True)


# version -> the step that upgrades a schema of that version to the next one.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2}


def ensure_schema(engine: Engine) -> None:
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                _upgrade(conn)
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            # Another mflow created the same table a moment before us: look again.
            if attempt == 2:
                raise


def _upgrade(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        # Several mflow starting at once on a new database: one creates, the others wait.
        conn.execute(text("SELECT pg_advisory_xact_lock(7270001)"))
    t.metadata.create_all(conn, checkfirst=True)
    row = conn.execute(select(t.meta.c.val).where(t.meta.c.name == "schema_version")).first()
    if row is None:
        conn.execute(insert(t.meta).values(name="schema_version", val=str(SCHEMA_VERSION)))
        return
    try:
        version = int(row[0])
    except ValueError:
        version = -1
    if version not in MIGRATIONS and version != SCHEMA_VERSION and version < SCHEMA_VERSION:
        raise EnvironmentFault(
            f"the state database has an unknown schema version {row[0]!r}; it was not made by mflow"
        )
    if version > SCHEMA_VERSION:
        raise EnvironmentFault(
            f"the state database has schema version {version}, newer than this mflow "
            f"understands ({SCHEMA_VERSION}); upgrade mflow"
        )
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
    conn.execute(update(t.meta).where(t.meta.c.name == "schema_version").values(val=str(version)))
