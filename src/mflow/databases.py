"""Connections to the datasources that SQL tasks use: a pool per datasource, at most
`max_connections` sessions, and statements run in worker threads so the run loop goes on.

Each statement goes straight to the driver's cursor (no parameter parsing: `%` and `:x`
in SQL text stay as written), inside one transaction per task: commit on success,
rollback on any error. A running statement can be cancelled at the server.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mflow.datasources import Datasource

Log = Callable[[str], None]


class StatementCancelled(Exception):
    """The statement was cancelled (timeout or Ctrl-C) before or while it ran."""


class _Logged(Exception):
    """Carries an error already written to the task log."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


# PostgreSQL notices go to the log of the task using the connection at the time; a pooled
# connection gets its handler once (psycopg adds, never replaces, notice handlers).
_notice_targets: weakref.WeakKeyDictionary[Any, Log] = weakref.WeakKeyDictionary()


def _send_notices(connection: Any, log: Log) -> None:
    if connection not in _notice_targets:
        connection.add_notice_handler(
            lambda notice: _notice_targets[connection](f"NOTICE: {notice.message_primary}")
        )
    _notice_targets[connection] = log


@dataclass
class Execution:
    """One task's use of a connection, shared with the thread that cancels it."""

    cancelled: bool = False
    connection: Any = None  # the driver's connection, once one is held
    lock: threading.Lock = field(default_factory=threading.Lock)


class DatabasePool:
    """One datasource: its SQLAlchemy engine (the pool) and its worker threads."""

    def __init__(self, datasource: Datasource):
        self.datasource = datasource
        self.executor = ThreadPoolExecutor(
            max_workers=datasource.max_connections, thread_name_prefix=f"db-{datasource.name}"
        )
        self._engine: Any = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Any:
        with self._lock:
            if self._engine is None:
                from sqlalchemy import create_engine

                ds = self.datasource
                self._engine = create_engine(
                    ds.url,
                    pool_size=ds.max_connections,
                    max_overflow=0,
                    pool_pre_ping=True,
                    connect_args={**ds.connect_args, **_connect_timeout(ds)},
                )
            return self._engine

    def run_statements(self, statements: list[str], log: Log, execution: Execution) -> None:
        """In a worker thread: one transaction for every statement, logging what happens."""
        try:
            self._run_statements(statements, log, execution)
        except _Logged as logged:
            raise logged.error from None
        except StatementCancelled:
            raise
        except Exception as exc:  # connecting failed: nothing was sent
            log(f"ERROR: {str(exc).strip() or type(exc).__name__}")
            raise

    def _run_statements(self, statements: list[str], log: Log, execution: Execution) -> None:
        raw = self.engine.raw_connection()  # waits for a free pooled connection
        try:
            driver = raw.driver_connection
            with execution.lock:
                if execution.cancelled:
                    raise StatementCancelled()
                execution.connection = driver
            kind = self.datasource.kind
            if kind == "postgresql":
                _send_notices(driver, log)
            cursor = raw.cursor()
            if kind == "oracle":
                cursor.callproc("dbms_output.enable", [None])
            try:
                for number, statement in enumerate(statements, start=1):
                    if len(statements) > 1:
                        log(f"-- statement {number} of {len(statements)}")
                    cursor.execute(statement)
                    _log_result(cursor, log)
                    if kind == "oracle":
                        _log_dbms_output(cursor, log)
                raw.commit()
                log("-- committed")
            except BaseException as exc:
                if not isinstance(exc, StatementCancelled):
                    log(f"ERROR: {str(exc).strip() or type(exc).__name__}")
                _rollback(raw, log)
                raise _Logged(exc) from exc
            finally:
                cursor.close()
        finally:
            with execution.lock:
                execution.connection = None
            raw.close()  # back to the pool

    def cancel(self, execution: Execution) -> None:
        """Ask the server to stop what `execution` is running (from any thread)."""
        with execution.lock:
            execution.cancelled = True
            connection = execution.connection
        if connection is None:
            return
        kind = self.datasource.kind
        if kind in ("mysql", "mariadb"):
            self._kill_query(connection.thread_id())
        elif kind == "sqlite":
            connection.interrupt()
        else:  # psycopg, oracledb: the driver sends a cancel request on its own
            connection.cancel()

    def _kill_query(self, thread_id: int) -> None:
        # MySQL cancels from another session; not from the pool, which may be all in use.
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(
            self.datasource.url, poolclass=NullPool, connect_args=_connect_timeout(self.datasource)
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(f"KILL QUERY {int(thread_id)}")
        finally:
            engine.dispose()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self._engine is not None:
            self._engine.dispose()


def _connect_timeout(ds: Datasource) -> dict[str, Any]:
    """Each driver's own name for "give up connecting after N seconds"."""
    seconds = ds.connect_timeout
    if ds.kind == "postgresql":
        return {"connect_timeout": max(1, round(seconds))}
    if ds.kind in ("mysql", "mariadb"):
        return {"connect_timeout": max(1, round(seconds))}
    if ds.kind == "oracle":
        return {"tcp_connect_timeout": seconds}
    if ds.kind == "sqlite":
        return {"timeout": seconds}
    return {}


def _log_result(cursor: Any, log: Log) -> None:
    if cursor.description:  # a query: say how many rows, show the first few
        rows = cursor.fetchmany(21)
        columns = [d[0] for d in cursor.description]
        log(" | ".join(columns))
        for row in rows[:20]:
            log(" | ".join("NULL" if v is None else str(v) for v in row))
        more = len(rows) > 20
        log(f"({'more than 20' if more else len(rows)} row{'s' if len(rows) != 1 else ''})")
    elif cursor.rowcount is not None and cursor.rowcount >= 0:
        log(f"{cursor.rowcount} row{'s' if cursor.rowcount != 1 else ''} affected")


def _log_dbms_output(cursor: Any, log: Log) -> None:
    """Oracle's DBMS_OUTPUT.PUT_LINE lines, in the order they were written."""
    line = cursor.var(str)
    status = cursor.var(int)
    while True:
        cursor.callproc("dbms_output.get_line", (line, status))
        if status.getvalue() != 0:
            return
        log(line.getvalue() or "")


def _rollback(raw: Any, log: Log) -> None:
    try:
        raw.rollback()
        log("-- rolled back")
    except Exception as exc:  # the connection may be gone; the server rolls back then
        log(f"-- rollback failed ({exc}); the server rolls back a lost session itself")
