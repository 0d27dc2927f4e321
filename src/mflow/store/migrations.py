"""Create the schema on first use and upgrade it in place; safe when several mflow start at once."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from mflow.errors import EnvironmentFault
from mflow.store import tables as t
from mflow.store.rows import SCHEMA_VERSION

# version -> the step that upgrades a schema of that version to the next one.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


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
