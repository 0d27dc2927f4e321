"""Real database servers for the tests: a fresh PostgreSQL database and MariaDB database
per test module, on the servers this machine runs on 127.0.0.1. Without them the tests
skip, unless MFLOW_REQUIRE_SERVICES=1 (as .ci/run sets): then they fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN = os.environ.get("MFLOW_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1/postgres")
MARIA_ADMIN = os.environ.get("MFLOW_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1/")


def _unavailable(what: str, exc: Exception) -> None:
    reason = f"{what} not reachable: {exc}"
    if os.environ.get("MFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _scratch_database(admin_url: str, what: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"mflow_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # noqa: BLE001 - any failure means: no server here
        engine.dispose()
        _unavailable(what, exc)
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with engine.connect() as conn:
            if what == "PostgreSQL":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    yield from _scratch_database(PG_ADMIN, "PostgreSQL")


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    yield from _scratch_database(MARIA_ADMIN, "MariaDB")
