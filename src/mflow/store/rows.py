"""Values both state writers put in rows: the schema version, this host, UTC timestamps."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

# Bump with a migration in store.migrations whenever tables.py changes.
SCHEMA_VERSION = 2

# Sizes of the text columns (tables.py). SQLite does not enforce them; PostgreSQL, MySQL
# and Oracle refuse a longer value, and with it the whole batch of records it is in.
PATH_CHARS = 1024
MESSAGE_CHARS = 2000
SCOPE_CHARS = 1000
NAME_CHARS = 255
LOG_NAME_ROOM = 260  # a task log's file name: master_<run>_task_<id>.attempt<n>.log


def fitted(text: str | None, limit: int) -> str | None:
    """`text` cut to `limit` characters, marked as cut; None and "" as None."""
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


HOST = socket.gethostname()


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def sqlite_timestamp(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text, microseconds always present so text order is time order."""
    return value.isoformat(" ", "microseconds")


@dataclass(frozen=True)
class TaskRow:
    """A task as a new run lists it: mf_tasks rows start PENDING."""

    task_id: str
    task_type: str
    max_attempts: int = 1
    depends_on: str = "[]"  # JSON
    digest: str = ""


def stored_depends(row: dict) -> list[str]:
    """The `depends` a task had when its run was recorded (mf_tasks.depends_on)."""
    try:
        found = json.loads(row.get("depends_on") or "[]")
    except ValueError:
        return []
    return [dep for dep in found if isinstance(dep, str)] if isinstance(found, list) else []
