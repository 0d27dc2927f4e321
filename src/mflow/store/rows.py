"""Values both state writers put in rows: the schema version, this host, UTC timestamps."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

# Bump with a migration in store.migrations whenever tables.py changes.
SCHEMA_VERSION = 2

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
