"""StateStore: the one place that reads and writes run state, on SQLite, PostgreSQL or Oracle."""

from __future__ import annotations

import functools
import os
import signal
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Engine, bindparam, create_engine, event, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from mflow.errors import EnvironmentFault
from mflow.liveness import same_process, signal_group
from mflow.states import RunState, TaskState
from mflow.store import tables as t
from mflow.store.rows import HOST, TaskRow, utcnow

R = TypeVar("R")

# A run on another host whose heartbeat is older than this is taken for dead.
STALE_AFTER_S = 120.0


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def safe_url(url: str) -> str:
    """The URL with its password masked, fit for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def _reporting_db_errors(method: Callable[..., R]) -> Callable[..., R]:
    """A database error in a store method is the environment's fault (exit 3), not a bug."""

    @functools.wraps(method)
    def wrapper(self: StateStore, *args: Any, **kwargs: Any) -> R:
        try:
            return method(self, *args, **kwargs)
        except SQLAlchemyError as exc:
            raise EnvironmentFault(f"state database {self.display}: {_reason(exc)}") from None

    return wrapper


class StateStore:
    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        connect_args: dict[str, Any] | None = None,
        display: str = "",
    ):
        """`read_only`: only look (a SQLite file this user may not write, say): no schema
        upgrade, no fixing up of dead runs. `display`: how errors name the database (the
        datasource and its address, say); by default its URL without the password."""
        self.url = url
        self.read_only = read_only
        self.display = display or safe_url(url)
        self._sqlite_file = _sqlite_file(url)
        try:
            self.engine = _make_engine(url, read_only, connect_args or {})
            if not read_only:
                self._ensure_schema()
        except ImportError as exc:
            raise EnvironmentFault(
                f"the database driver for {self.display} is not installed ({exc.name}); "
                "install it in mflow's environment (pip install 'mflow[postgresql]' or "
                "'mflow[mysql]'; Oracle's comes with mflow)"
            ) from None
        except (SQLAlchemyError, OSError) as exc:
            folder = self._sqlite_file is not None and Path(self._sqlite_file).is_dir()
            why = "it is a folder, not a database file" if folder else _reason(exc)
            raise EnvironmentFault(f"cannot use the state database {self.display}: {why}") from None

    def close(self) -> None:
        self.engine.dispose()

    def sqlite_file_gone(self) -> bool:
        """A SQLite database whose file is no longer there."""
        return self._sqlite_file is not None and not os.path.exists(self._sqlite_file)

    # -- schema ---------------------------------------------------------------------------
    def _ensure_schema(self) -> None:
        from mflow.store.migrations import ensure_schema

        ensure_schema(self.engine)

    # -- writes ---------------------------------------------------------------------------
    @_reporting_db_errors
    def create_run(
        self,
        flow_path: Path,
        config_path: Path | None,
        task_rows: Sequence[TaskRow],
        *,
        parent_run_id: int | None = None,
        parent_task_id: str | None = None,
        parent_attempt: int | None = None,
        resumed_from: int | None = None,
        scope: str | None = None,
    ) -> int:
        now = utcnow()
        with self.engine.begin() as conn:
            run_id = conn.execute(
                insert(t.runs).values(
                    flow_path=str(flow_path),
                    config_path=str(config_path) if config_path else None,
                    state=RunState.RUNNING,
                    started_at=now,
                    heartbeat_at=now,
                    pid=os.getpid(),
                    host=HOST,
                    task_count=len(task_rows),
                    parent_run_id=parent_run_id,
                    parent_task_id=parent_task_id,
                    parent_attempt=parent_attempt,
                    resumed_from=resumed_from,
                    scope=scope,
                )
            ).inserted_primary_key[0]
            if task_rows:
                conn.execute(
                    insert(t.tasks),
                    [
                        {
                            "run_id": run_id,
                            "task_id": row.task_id,
                            "position": position,
                            "task_type": row.task_type,
                            "state": TaskState.PENDING,
                            "attempts": 0,
                            "max_attempts": row.max_attempts,
                            "updated_at": now,
                            "depends_on": row.depends_on,
                            "digest": row.digest,
                        }
                        for position, row in enumerate(task_rows)
                    ],
                )
        return int(run_id)

    @_reporting_db_errors
    def write_batch(
        self,
        run_id: int,
        new_attempts: list[dict[str, Any]],
        changed_attempts: list[dict[str, Any]],
        task_changes: list[dict[str, Any]],
        run_end: tuple[RunState, str | None] | None = None,
    ) -> None:
        """One transaction for everything the recorder buffered; also beats the heartbeat."""
        now = utcnow()
        with self.engine.begin() as conn:
            if new_attempts:
                conn.execute(
                    insert(t.attempts), [{"run_id": run_id, **row} for row in new_attempts]
                )
            for rows in _by_keys(changed_attempts):  # executemany wants one shape per call
                conn.execute(_update_attempt, [{"b_run": run_id, **row} for row in rows])
            if task_changes:
                conn.execute(
                    _update_task,
                    [{"b_run": run_id, "updated_at": now, **row} for row in task_changes],
                )
            values: dict[str, Any] = {"heartbeat_at": now}
            if run_end is not None:
                values.update(state=run_end[0], ended_at=now, message=run_end[1])
            conn.execute(update(t.runs).where(t.runs.c.run_id == run_id).values(**values))

    # -- dead runs ------------------------------------------------------------------------
    @_reporting_db_errors
    def reap_dead_runs(self, stale_after_s: float = STALE_AFTER_S) -> list[int]:
        """Mark INTERRUPTED every RUNNING run whose mflow is gone, and kill the task groups
        it left on this host. A run on another host is gone when its heartbeat is stale."""
        if self.read_only:
            return []
        now = utcnow()
        query = select(
            t.runs.c.run_id, t.runs.c.pid, t.runs.c.host, t.runs.c.started_at, t.runs.c.heartbeat_at
        ).where(t.runs.c.state == RunState.RUNNING)
        with self.engine.connect() as conn:
            candidates = conn.execute(query).all()
        dead = []
        for run_id, pid, host, started_at, heartbeat_at in candidates:
            alive = _alive(pid, host, started_at, heartbeat_at, now, stale_after_s)
            if not alive and self._mark_interrupted(run_id, pid, host, heartbeat_at or now):
                dead.append(run_id)
        return dead

    def run_is_gone(self, run_id: int) -> bool:
        """Whether `run_id` is RUNNING in the records while its mflow is gone (marked
        INTERRUPTED now, unless this store is only read)."""
        run = self.get_run(run_id)
        if run is None or run["state"] != RunState.RUNNING:
            return False
        fields = (run["pid"], run["host"], run["started_at"], run["heartbeat_at"])
        if _alive(*fields, utcnow(), STALE_AFTER_S):
            return False
        self.reap_dead_runs()
        return True

    def _mark_interrupted(
        self, run_id: int, pid: int | None, host: str | None, last_seen: Any
    ) -> bool:
        now = last_seen  # its last heartbeat: when it was last known alive
        lost = "lost: the mflow running it died"
        with self.engine.begin() as conn:
            # Compare-and-swap: of several mflow finding the same dead run, one fixes it up.
            claimed = conn.execute(
                update(t.runs)
                .where(t.runs.c.run_id == run_id)
                .where(t.runs.c.state == RunState.RUNNING)
                .values(
                    state=RunState.INTERRUPTED,
                    ended_at=now,
                    message=f"mflow (pid {pid} on {host}) died during the run",
                )
            ).rowcount
            if not claimed:
                return False
            attempts = conn.execute(
                select(t.attempts.c.pid, t.attempts.c.started_at)
                .where(t.attempts.c.run_id == run_id)
                .where(t.attempts.c.state == TaskState.RUNNING)
            ).all()
            if host == HOST:
                for task_pid, started_at in attempts:
                    if same_process(task_pid, started_at):
                        signal_group(task_pid, signal.SIGKILL)
            conn.execute(
                update(t.attempts)
                .where(t.attempts.c.run_id == run_id)
                .where(t.attempts.c.state == TaskState.RUNNING)
                .values(state=TaskState.INTERRUPTED, ended_at=now, message=lost)
            )
            conn.execute(
                update(t.tasks)
                .where(t.tasks.c.run_id == run_id)
                .where(t.tasks.c.state.in_([TaskState.RUNNING, TaskState.RETRYING]))
                .values(state=TaskState.INTERRUPTED, updated_at=now, message=lost)
            )
            conn.execute(  # still PENDING (it never started): say why, for status and the page
                update(t.tasks)
                .where(t.tasks.c.run_id == run_id)
                .where(t.tasks.c.state == TaskState.PENDING)
                .values(message="not started: the mflow running the flow died")
            )
        return True

    # -- reads ----------------------------------------------------------------------------
    @_reporting_db_errors
    def list_runs(
        self,
        limit: int = 20,
        state: str | None = None,
        *,
        offset: int = 0,
        flow: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first. `flow`: task files whose path contains it; `since`/`until`:
        started in [since, until) (naive UTC)."""
        query = (
            select(t.runs)
            .where(*_run_filter(state, flow, since, until))
            .order_by(t.runs.c.run_id.desc())
            .limit(limit)
            .offset(offset)
        )
        return self._runs_with_counts(query)

    @_reporting_db_errors
    def count_runs(
        self,
        state: str | None = None,
        *,
        flow: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        query = select(func.count()).select_from(t.runs)
        with self.engine.connect() as conn:
            return int(conn.execute(query.where(*_run_filter(state, flow, since, until))).scalar())

    @_reporting_db_errors
    def get_run(self, run_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first()
            if row is None:
                return None
            run = dict(row._mapping)
            run["task_states"] = self._state_counts(conn, [run_id]).get(run_id, {})
        return run

    @_reporting_db_errors
    def resumers_of(self, run_id: int) -> list[dict[str, Any]]:
        """The runs that resumed `run_id`, newest first (run_id, state, pid, host)."""
        columns = (t.runs.c.run_id, t.runs.c.state, t.runs.c.pid, t.runs.c.host)
        query = (
            select(*columns).where(t.runs.c.resumed_from == run_id).order_by(t.runs.c.run_id.desc())
        )
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    @_reporting_db_errors
    def earlier_resumer(self, resumed_from: int, after: int, run_id: int) -> int | None:
        """A run between `after` and `run_id` (ids) that resumes `resumed_from` too."""
        query = (
            select(t.runs.c.run_id)
            .where(t.runs.c.resumed_from == resumed_from)
            .where(t.runs.c.run_id > after, t.runs.c.run_id < run_id)
            .order_by(t.runs.c.run_id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    @_reporting_db_errors
    def forget_run(self, run_id: int) -> None:
        """Remove a run that ran nothing (its tasks' rows too)."""
        with self.engine.begin() as conn:
            conn.execute(t.tasks.delete().where(t.tasks.c.run_id == run_id))
            conn.execute(t.runs.delete().where(t.runs.c.run_id == run_id))

    @_reporting_db_errors
    def task_rows(self, run_id: int) -> list[dict[str, Any]]:
        query = select(t.tasks).where(t.tasks.c.run_id == run_id).order_by(t.tasks.c.position)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    @_reporting_db_errors
    def attempt_rows(self, run_id: int, task_id: str | None = None) -> list[dict[str, Any]]:
        query = select(t.attempts).where(t.attempts.c.run_id == run_id)
        if task_id is not None:
            query = query.where(t.attempts.c.task_id == task_id)
        query = query.order_by(t.attempts.c.started_at, t.attempts.c.attempt)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    @_reporting_db_errors
    def run_signature(self, run_id: int) -> tuple[Any, ...]:
        """Changes whenever the run, one of its tasks or attempts changes: the run's state
        and heartbeat-free columns, and aggregates of its tasks and attempts."""
        with self.engine.connect() as conn:
            run = conn.execute(
                select(t.runs.c.state, t.runs.c.ended_at).where(t.runs.c.run_id == run_id)
            ).first()
            tasks = conn.execute(
                select(func.max(t.tasks.c.updated_at), func.sum(t.tasks.c.attempts)).where(
                    t.tasks.c.run_id == run_id
                )
            ).first()
            attempts = conn.execute(
                select(
                    func.count(), func.max(t.attempts.c.ended_at), func.count(t.attempts.c.pid)
                ).where(t.attempts.c.run_id == run_id)
            ).first()
            children = conn.execute(
                select(func.count()).where(t.runs.c.parent_run_id == run_id)
            ).scalar()
        return (*(run or (None, None)), *(tasks or ()), *(attempts or ()), children)

    @_reporting_db_errors
    def child_runs(self, run_id: int) -> list[dict[str, Any]]:
        """The nested flows' runs started by tasks of this run, oldest first."""
        query = select(t.runs).where(t.runs.c.parent_run_id == run_id).order_by(t.runs.c.run_id)
        return self._runs_with_counts(query)

    @_reporting_db_errors
    def latest_child_run(self, run_id: int, task_id: str) -> dict[str, Any] | None:
        """The last run a task of `run_id`, or of the runs it resumes, gave to a nested flow."""
        with self.engine.connect() as conn:
            seen: set[int] = set()
            current: int | None = run_id
            while current is not None and current not in seen:
                seen.add(current)
                row = conn.execute(
                    select(t.runs)
                    .where(t.runs.c.parent_run_id == current)
                    .where(t.runs.c.parent_task_id == task_id)
                    .order_by(t.runs.c.run_id.desc())
                    .limit(1)
                ).first()
                if row is not None:
                    return dict(row._mapping)
                current = conn.execute(
                    select(t.runs.c.resumed_from).where(t.runs.c.run_id == current)
                ).scalar()
        return None

    def _runs_with_counts(self, query: Any) -> list[dict[str, Any]]:
        """The runs `query` selects, each with `task_states`: its tasks counted by state."""
        with self.engine.connect() as conn:
            runs = [dict(row._mapping) for row in conn.execute(query)]
            counts = self._state_counts(conn, [run["run_id"] for run in runs])
        for run in runs:
            run["task_states"] = counts.get(run["run_id"], {})
        return runs

    @staticmethod
    def _state_counts(conn: Any, run_ids: Iterable[int]) -> dict[int, dict[str, int]]:
        run_ids = list(run_ids)
        if not run_ids:
            return {}
        query = (
            select(t.tasks.c.run_id, t.tasks.c.state, func.count())
            .where(t.tasks.c.run_id.in_(run_ids))
            .group_by(t.tasks.c.run_id, t.tasks.c.state)
        )
        counts: dict[int, dict[str, int]] = {}
        for run_id, state, count in conn.execute(query):
            counts.setdefault(run_id, {})[state] = count
        return counts


_update_attempt = (
    update(t.attempts)
    .where(t.attempts.c.run_id == bindparam("b_run"))
    .where(t.attempts.c.task_id == bindparam("b_task"))
    .where(t.attempts.c.attempt == bindparam("b_attempt"))
)
_update_task = (
    update(t.tasks)
    .where(t.tasks.c.run_id == bindparam("b_run"))
    .where(t.tasks.c.task_id == bindparam("b_task"))
)


def _run_filter(
    state: str | None, flow: str | None, since: datetime | None, until: datetime | None
) -> list[Any]:
    conditions = []
    if state:
        conditions.append(t.runs.c.state == state)
    if flow:
        conditions.append(t.runs.c.flow_path.contains(flow, autoescape=True))
    if since is not None:
        conditions.append(t.runs.c.started_at >= since)
    if until is not None:
        conditions.append(t.runs.c.started_at < until)
    return conditions


def _by_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


def _make_engine(
    url: str, read_only: bool = False, connect_args: dict[str, Any] | None = None
) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args or {})
    if read_only:
        # A database in WAL mode needs its -wal and -shm files even to be read. While a run
        # writes, they exist, and are read as they are. Otherwise SQLite would create them,
        # owned by this user, and the owner's next run could not write them; and in a folder
        # this user may not write, it could not open the database at all. With no writer
        # (no -wal file), the database file alone is the whole state: read it as immutable.
        # Decided at each connection (one per read): a server open for days sees the runs
        # that start and end meanwhile.
        database = parsed.database or ""
        path = quote(database, safe="/")  # a URI: '?', '#', '%' in a name

        def connect() -> sqlite3.Connection:
            writing = os.path.exists(f"{database}-wal")
            how = "mode=ro" if writing else "immutable=1"
            return sqlite3.connect(f"file:{path}?{how}", uri=True, check_same_thread=False)

        return create_engine("sqlite://", creator=connect, poolclass=NullPool)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # NullPool: a connection per use is cheap in SQLite and never outlives a fork.
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, so concurrent mflow processes wait on the
        # busy timeout instead of failing with "database is locked" when a read upgrades.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _alive(
    pid: int | None,
    host: str | None,
    started_at: Any,
    heartbeat_at: Any,
    now: datetime,
    stale_after_s: float,
) -> bool:
    """A run's mflow: the same process on this host; elsewhere, a recent heartbeat."""
    if host == HOST:
        return same_process(pid, started_at)
    return heartbeat_at is not None and (now - heartbeat_at).total_seconds() < stale_after_s


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None: another database, or one in memory)."""
    if not url.startswith("sqlite"):
        return None
    try:
        database = make_url(url).database
    except ArgumentError:
        return None
    return database if database and database != ":memory:" else None


def _reason(exc: BaseException) -> str:
    """The driver's own words: their first lines (python-oracledb gives the cause on the
    second, psycopg a hint), without SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None)
    lines = [line.strip() for line in str(orig or exc).strip().splitlines() if line.strip()]
    return " ".join(lines[:3])
