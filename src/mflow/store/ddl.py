"""Write the schema as plain SQL, from tables.py: db/<dialect>.sql for DBAs who create
schemas by hand, and the SQLite script the run path uses to create a new database
without importing SQLAlchemy. `python -m mflow.store.ddl` regenerates them; a test
fails when they are out of date."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.dialects import mysql, oracle, postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from mflow.store import tables as t
from mflow.store.rows import SCHEMA_VERSION

DIALECTS = {"sqlite": sqlite, "postgresql": postgresql, "oracle": oracle, "mysql": mysql}
PACKAGED_SQLITE = Path(__file__).with_name("sqlite_schema.sql")


def render(dialect_name: str, *, if_not_exists: bool = False) -> str:
    dialect = DIALECTS[dialect_name].dialect()
    statements = [
        f"-- mflow state schema, version {SCHEMA_VERSION}, for {dialect_name}"
        " (generated from src/mflow/store/tables.py)"
    ]
    for table in t.metadata.sorted_tables:
        ddl = CreateTable(table, if_not_exists=if_not_exists).compile(dialect=dialect)
        statements.append(str(ddl).strip() + ";")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            create = CreateIndex(index, if_not_exists=if_not_exists).compile(dialect=dialect)
            statements.append(str(create).strip() + ";")
    insert = "INSERT OR IGNORE" if if_not_exists else "INSERT"
    statements.append(
        f"{insert} INTO mf_meta (name, val) VALUES ('schema_version', '{SCHEMA_VERSION}');"
    )
    return "\n\n".join(statements) + "\n"


def outputs(repo: Path) -> dict[Path, str]:
    files = {repo / "db" / f"{name}.sql": render(name) for name in DIALECTS}
    files[PACKAGED_SQLITE] = render("sqlite", if_not_exists=True)
    return files


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for path, text in outputs(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
