"""`oracle` (alias `sql`) tasks: a statement or PL/SQL block (`command`), or a .sql script
(`file`), run in one transaction on a named datasource."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, model_validator

from mflow.databases import DatabasePool, Execution, StatementCancelled
from mflow.datasources import Datasources
from mflow.modelcheck import suggest
from mflow.tasktypes.base import TaskContext, TaskResult, TaskSpec, TaskType
from mflow.tasktypes.process import create_log


class SqlSpec(TaskSpec):
    db: str = Field(min_length=1)
    command: str | None = None  # sent as one statement, exactly as written
    file: str | None = None  # a script, split as the database's own client would

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

    def __init__(self, datasources: Datasources):
        self.datasources = datasources
        self._pools: dict[str, DatabasePool] = {}

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        assert isinstance(task, SqlSpec)
        found = []
        if task.db not in self.datasources.by_name:
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
            pool = self._pools[name] = DatabasePool(self.datasources.by_name[name])
        return pool

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        assert isinstance(task, SqlSpec)
        pool = self._pool(task.db)
        mask = self.datasources.mask
        log_fd = create_log(ctx.log_path)

        def log(text: str) -> None:
            os.write(log_fd, (mask(text) + "\n").encode("utf-8", "replace"))

        try:
            if task.file is not None:
                from mflow.sqlscript import split_script  # sqlparse only when a script runs

                script = (ctx.cwd / task.file).read_text(encoding="utf-8")
                statements = split_script(script, pool.datasource.kind)
            else:
                statements = [task.command or ""]
            log(f"-- datasource {task.db}: {pool.datasource.display_url()}")
            return await self._execute(pool, statements, log, ctx, task.db)
        except (OSError, UnicodeDecodeError) as exc:
            log(f"cannot read {task.file}: {exc}")
            return TaskResult(False, None, f"cannot read {task.file}: {exc}")
        finally:
            os.close(log_fd)

    async def _execute(
        self, pool: DatabasePool, statements: list[str], log: Callable, ctx: TaskContext, db: str
    ) -> TaskResult:
        loop = asyncio.get_running_loop()
        execution = Execution()
        work = loop.run_in_executor(pool.executor, pool.run_statements, statements, log, execution)
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # Timeout or Ctrl-C: stop the statement at the server, not just stop waiting.
            await loop.run_in_executor(None, pool.cancel, execution)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(work), ctx.kill_grace_s)
            log("-- cancelled")
            raise
        except StatementCancelled:
            raise asyncio.CancelledError() from None
        except Exception as exc:  # its full text is in the log already
            lines = [line.strip() for line in str(exc).splitlines()]
            # PostgreSQL's "LINE 1: ..." and caret lines point into the SQL: the log has them
            lines = [x for x in lines if x and not x.startswith("LINE ") and set(x) != {"^"}]
            text = " ".join(lines) or type(exc).__name__
            reason = self.datasources.mask(text if len(text) <= 300 else text[:297] + "...")
            return TaskResult(False, None, f"datasource '{db}': {reason}")
        return TaskResult(True, 0)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
