"""Connections to the datasources that SQL tasks use: a pool per datasource, at most
`max_connections` sessions, and statements run in worker threads so the run loop goes on.

Each statement goes straight to the driver's cursor (no parameter parsing: `%` and `:x`
in SQL text stay as written), inside one transaction per task: commit on success,
rollback on any error. A cancel (timeout, Ctrl-C) stops the running statement at the
server and rolls back, unless the commit had already begun: then the task succeeded.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mflow.datasources import Datasource

Log = Callable[[str], None]
SHOWN_ROWS = 20
_QUERY = re.compile(r"^\s*(select|with|values|table)\b", re.IGNORECASE)


class StatementCancelled(Exception):
    """The statement was cancelled (timeout or Ctrl-C) before or while it ran."""


@dataclass
class Execution:
    """One task's use of a connection, shared with the thread that cancels it."""

    cancelled: bool = False
    committing: bool = False  # from here on a cancel comes too late: the work is done
    committed: bool = False
    connection: Any = None  # the driver's connection, once one is held
    on_started: Callable[[], None] = lambda: None  # both called from the worker thread
    on_connected: Callable[[], None] = lambda: None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        with self.lock:
            if self.cancelled:
                raise StatementCancelled()


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
        execution.on_started()
        try:
            raw = self.engine.raw_connection()  # a pooled session, or a new one
        except Exception as exc:  # connecting failed: nothing was sent
            log(f"ERROR: {str(exc).strip() or type(exc).__name__}")
            raise
        try:
            with execution.lock:
                execution.connection = raw.driver_connection
            execution.on_connected()
            execution.check()  # given up on while it connected
            self._transaction(raw, statements, log, execution)
        finally:
            with execution.lock:
                execution.connection = None
            raw.close()  # back to the pool

    def _transaction(self, raw: Any, statements: list[str], log: Log, execution: Execution) -> None:
        kind = self.datasource.kind
        driver = raw.driver_connection
        if kind == "postgresql":
            _send_notices(driver, log)
        try:
            if kind == "oracle":
                with raw.cursor() as cursor:
                    cursor.callproc("dbms_output.enable", [None])
            for number, statement in enumerate(statements, start=1):
                execution.check()  # a cancel between two statements is not lost
                if len(statements) > 1:
                    log(f"-- statement {number} of {len(statements)}")
                self._execute(raw, statement, log)
            with execution.lock:
                if execution.cancelled:
                    raise StatementCancelled()
                execution.committing = True
            raw.commit()
            execution.committed = True
            log("-- committed")
        except BaseException as exc:
            if not execution.committing:
                if not isinstance(exc, StatementCancelled):
                    log(f"ERROR: {str(exc).strip() or type(exc).__name__}")
                _rollback(raw, log)
            raise

    def _execute(self, raw: Any, statement: str, log: Log) -> None:
        kind = self.datasource.kind
        driver = raw.driver_connection
        if kind == "postgresql" and _QUERY.match(statement):
            # A server-side cursor: a query of millions of rows streams, never fills memory.
            cursor = driver.cursor(name="mflow_query")
        elif kind in ("mysql", "mariadb"):
            import pymysql.cursors

            cursor = driver.cursor(pymysql.cursors.SSCursor)  # unbuffered, likewise
        else:
            cursor = raw.cursor()
        try:
            cursor.execute(statement)
            _log_result(cursor, log)
            if kind == "oracle":
                _log_dbms_output(cursor, log)
        finally:
            cursor.close()

    def cancel(self, execution: Execution) -> None:
        """Ask the server to stop what `execution` is running (from any thread). Once the
        commit has begun it is let finish: the task's work is then done."""
        with execution.lock:
            if execution.committing:
                return
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

    def abandon(self, execution: Execution) -> None:
        """Stop waiting for a connection that does not answer: if it ever does, the worker
        stops there. (Its thread stays blocked until the network gives up.)"""
        with execution.lock:
            execution.cancelled = True

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
    """Each driver's own "give up connecting after N seconds" (the SQL task also stops
    waiting after that long, for a server that accepts the connection and says nothing)."""
    seconds = ds.connect_timeout
    if ds.kind == "postgresql":
        # the server stops a statement whose client has gone (mflow killed): PostgreSQL 14+
        return {
            "connect_timeout": max(1, round(seconds)),
            "options": "-c client_connection_check_interval=2000",
        }
    if ds.kind in ("mysql", "mariadb"):
        return {"connect_timeout": max(1, round(seconds))}
    if ds.kind == "oracle":
        return {"tcp_connect_timeout": seconds}
    if ds.kind == "sqlite":
        return {"timeout": seconds}
    return {}


def _log_result(cursor: Any, log: Log) -> None:
    if cursor.description:  # a query: the first rows, then how many there were in all
        log(" | ".join(d[0] for d in cursor.description))
        count = 0
        while batch := cursor.fetchmany(1000):
            for row in batch[: max(0, SHOWN_ROWS - count)]:
                log(" | ".join("NULL" if v is None else str(v) for v in row))
            count += len(batch)
        if count > SHOWN_ROWS:
            log(f"... ({count - SHOWN_ROWS} more)")
        log(f"({count} row{'s' if count != 1 else ''})")
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


# PostgreSQL notices go to the log of the task using the connection at the time; a pooled
# connection gets its handler once (psycopg adds, never replaces, notice handlers).
_notice_targets: weakref.WeakKeyDictionary[Any, Log] = weakref.WeakKeyDictionary()


def _send_notices(connection: Any, log: Log) -> None:
    if connection not in _notice_targets:
        connection.add_notice_handler(
            lambda notice: _notice_targets[connection](f"NOTICE: {notice.message_primary}")
        )
    _notice_targets[connection] = log
