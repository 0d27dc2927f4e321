"""`oracle` (alias `sql`) tasks: a statement or PL/SQL block (`command`), or a .sql script
(`file`), run in one transaction on a named datasource."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, model_validator

from mflow.datasources import Datasources
from mflow.modelcheck import suggest
from mflow.tasktypes.base import (
    TaskContext,
    TaskResult,
    TaskSpec,
    TaskType,
    TypeSetup,
    create_log,
)

if TYPE_CHECKING:
    import asyncio

    from mflow.databases import DatabasePool, Execution


def _setter(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Callable[[], None]:
    """A callback for the worker thread that resolves `future` on the loop's thread."""

    def on_loop() -> None:
        if not future.done():
            future.set_result(None)

    return lambda: loop.call_soon_threadsafe(on_loop)


class _TaskLog:
    """The task's log file, written from the worker thread; passwords masked."""

    def __init__(self, path: Path, mask: Callable[[str], str]):
        self._fd: int | None = create_log(path)
        self._mask = mask

    def __call__(self, text: str) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, (self._mask(text) + "\n").encode("utf-8", "replace"))

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SqlSpec(TaskSpec):
    db: str = Field(min_length=1, description="the datasource's name")
    command: str | None = Field(
        default=None, description="a statement or PL/SQL block, sent exactly as written"
    )
    file: str | None = Field(
        default=None, description="a .sql script, split as the database's own client would"
    )

    @model_validator(mode="after")
    def _one_source(self) -> SqlSpec:
        if (self.command is None) == (self.file is None):
            raise ValueError("give either 'command' or 'file'")
        if self.command is not None and not self.command.strip():
            raise ValueError("the command is empty")
        return self


class SqlType(TaskType):
    name = "oracle"
    aliases = ("sql",)
    spec = SqlSpec

    def __init__(self, setup: TypeSetup):
        super().__init__(setup)
        self.datasources: Datasources = setup.datasources
        self._pools: dict[str, DatabasePool] = {}

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        assert isinstance(task, SqlSpec)
        found = []
        unusable = self.datasources.unusable_because(task.db)
        if unusable is not None:
            found.append(("db", unusable))
        elif task.db not in self.datasources.by_name and not self.datasources.broken:
            if self.datasources.path is None:
                where = "there is no datasources file (./oracle.json, or give --datasources)"
            else:
                names = ", ".join(sorted(self.datasources.by_name)) or "none"
                where = f"{self.datasources.path} defines: {names}"
            found.append(
                (
                    "db",
                    f"unknown datasource '{task.db}'"
                    f"{suggest(task.db, self.datasources.by_name)}; {where}",
                )
            )
        if task.file is not None and not (folder / task.file).is_file():
            found.append(("file", f"no SQL script at {folder / task.file}"))
        return found

    def _pool(self, name: str) -> DatabasePool:
        pool = self._pools.get(name)
        if pool is None:
            from mflow.databases import DatabasePool  # threads and pools only when used

            pool = self._pools[name] = DatabasePool(self.datasources.by_name[name])
        return pool

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        import asyncio  # the run loop's; validation has no need of it

        assert isinstance(task, SqlSpec)
        pool = self._pool(task.db)
        log = _TaskLog(ctx.log_path, self.datasources.mask)
        work: asyncio.Future[None] | None = None
        try:
            log(f"-- datasource {task.db}: {pool.datasource.display_url()}")
            if task.file is not None:
                statements = await asyncio.to_thread(
                    self._read_script, ctx.cwd / task.file, pool.datasource.kind
                )
            else:
                statements = [task.command or ""]
            from mflow.databases import Execution

            loop = asyncio.get_running_loop()
            execution = Execution()
            started, connected = loop.create_future(), loop.create_future()
            execution.on_started = _setter(loop, started)
            execution.on_connected = _setter(loop, connected)
            work = loop.run_in_executor(
                pool.executor, pool.run_statements, statements, log, execution
            )
            return await self._outcome(
                pool, work, (started, connected), execution, log, ctx, task.db
            )
        except (OSError, UnicodeDecodeError) as exc:
            log(f"cannot read {task.file}: {exc}")
            return TaskResult(False, None, f"cannot read {task.file}: {exc}")
        finally:
            # The log stays open while the worker may still write to it.
            if work is None or work.done():
                log.close()
            else:
                work.add_done_callback(lambda done: (done.exception(), log.close()))

    @staticmethod
    def _read_script(path: Path, kind: str) -> list[str]:
        from mflow.sqlscript import split_script  # sqlparse only when a script runs

        return split_script(path.read_text(encoding="utf-8-sig"), kind)  # a BOM is no SQL

    async def _outcome(
        self,
        pool: DatabasePool,
        work: asyncio.Future[None],
        signals: tuple[asyncio.Future[None], asyncio.Future[None]],
        execution: Execution,
        log: _TaskLog,
        ctx: TaskContext,
        db: str,
    ) -> TaskResult:
        import asyncio

        started, connected = signals
        watched = asyncio.shield(work)
        try:
            # Waiting for a free session has no deadline; connecting has: a server that
            # accepts the connection and then says nothing would hang the drivers for good.
            await asyncio.wait({watched, started}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                seconds = pool.datasource.connect_timeout
                await asyncio.wait(
                    {watched, connected}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
                )
                if not work.done() and not connected.done():
                    pool.abandon(execution)
                    log(f"ERROR: no answer from the server within {seconds:g} s of connecting")
                    return TaskResult(
                        False,
                        None,
                        f"datasource '{db}': no answer within {seconds:g} s while connecting",
                    )
            await watched
        except asyncio.CancelledError:
            # Timeout or Ctrl-C: stop the statement at the server, not just stop waiting.
            await asyncio.get_running_loop().run_in_executor(None, pool.cancel, execution)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(work), ctx.kill_grace_s)
            if execution.committed:  # the commit had begun: the work is done, and kept
                log("-- the cancel came after the commit had begun: the task succeeded")
                return TaskResult(True, 0)
            log("-- cancelled")
            raise
        except Exception as exc:
            from mflow.databases import StatementCancelled

            if isinstance(exc, StatementCancelled):
                raise asyncio.CancelledError() from None
            return TaskResult(False, None, f"datasource '{db}': {self._reason(exc)}")
        return TaskResult(True, 0)

    def _reason(self, exc: BaseException) -> str:
        lines = [line.strip() for line in str(exc).splitlines()]
        # PostgreSQL's "LINE 1: ..." and caret lines point into the SQL: the log has them
        lines = [x for x in lines if x and not x.startswith("LINE ") and set(x) != {"^"}]
        text = " ".join(lines) or type(exc).__name__
        return self.datasources.mask(text if len(text) <= 300 else text[:297] + "...")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
