"""`mflow` tasks: a nested flow, run by a child `mflow run` and recorded as a child run.

The original recommended a parent mflow whose tasks are other mflow runs; here that is a
task type. The child is a process of its own (its own master log, settings and reaper),
recorded in the parent's state database with a link to the parent's run, task and
attempt. Stopping the task (timeout, Ctrl-C) sends the child SIGTERM, and the child
cancels its own tasks as it would for a Ctrl-C; a retry or a resume of the parent resumes
the child's last run instead of starting it again (see mflow.nesting).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from pydantic import Field

from mflow import nesting
from mflow.envvars import environment, expand_in_order, inherited
from mflow.tasktypes.base import TaskContext, TaskResult, TaskSpec, TaskType

# The child's first line of output names its run ("run 12: 3 tasks from ...").
_RUN_LINE = re.compile(r"run (\d+): ")
_SUMMARY = re.compile(r"(run \d+ [A-Z]+) in ")  # its last words: "run 12 FAILED in 3.1 s: ..."
_FAILED_TASK = re.compile(r"  FAILED (.+?): ")
# Beyond kill_grace, the time a stopped child gets to stop its own tasks and record it.
CHILD_STOP_MARGIN_S = 30.0
MAX_REPORTED_PROBLEMS = 20


class NestedFlowSpec(TaskSpec):
    taskfile: str = Field(min_length=1, description="the nested flow's task file")
    config: str | None = Field(
        default=None, min_length=1, description="its config.json (default: the parent's)"
    )
    datasources: str | None = Field(
        default=None, min_length=1, description="its datasources file (default: the parent's)"
    )


class NestedFlowType(TaskType):
    name = "mflow"
    spec = NestedFlowSpec

    def files(self, task: NestedFlowSpec, folder: Path) -> tuple[Path, Path | None, Path | None]:
        """Task file, config and datasources of the nested flow; relative to `folder` (the
        parent's task file's), the parent's own config and datasources by default."""

        def resolve(value: str) -> Path:
            path = folder / os.path.expanduser(value)
            try:
                return path.resolve()
            except RuntimeError:  # a symbolic link loop: "no file at" it, below
                return path

        settings, sources = self.setup.settings, self.setup.datasources
        config = resolve(task.config) if task.config else (settings.source if settings else None)
        datasources = resolve(task.datasources) if task.datasources else sources.path
        return resolve(task.taskfile), config, datasources

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        from mflow.errors import InvalidFilesError
        from mflow.inputs import load_inputs

        assert isinstance(task, NestedFlowSpec)
        taskfile, config, datasources = self.files(task, folder)
        missing = [
            (key, f"no file at {path}")
            for key, path, given in (
                ("taskfile", taskfile, True),
                ("config", config, task.config is not None),
                ("datasources", datasources, task.datasources is not None),
            )
            if given and path is not None and not path.is_file()
        ]
        if missing:
            return missing
        above = [*nesting.current_chain, *nesting.validating]
        chain = " -> ".join([*above, str(taskfile)])
        if str(taskfile) in above:
            return [("taskfile", f"the nested flow starts itself: {chain}")]
        if len(above) >= nesting.MAX_DEPTH:  # what the run would refuse at that depth
            return [("taskfile", f"nested flows deeper than {nesting.MAX_DEPTH} levels: {chain}")]
        try:  # the nested flow's own files, checked now rather than in the middle of the night
            with inherited(self._passed_on(task)):
                load_inputs(
                    config or Path("config.json"), config is not None, taskfile, datasources
                )
        except InvalidFilesError as exc:
            shown = exc.problems[:MAX_REPORTED_PROBLEMS]
            more = len(exc.problems) - len(shown)
            found = [("taskfile", f"in the nested flow: {problem}") for problem in shown]
            if more:
                found.append(("taskfile", f"in the nested flow: {more} more problems"))
            return found
        return []

    def _passed_on(self, task: NestedFlowSpec) -> dict[str, str]:
        """What the child mflow will find in its environment besides this one's: the
        parent's config env and the task's own env (as far as they can be expanded)."""
        parents = self.setup.settings.env if self.setup.settings else {}
        own, _ = expand_in_order(task.env, {**environment(), **parents})
        return {**parents, **own}

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        from mflow.tasktypes.process import run_process

        assert isinstance(task, NestedFlowSpec)
        backend = self.setup.backend
        assert backend is not None  # a run always has one
        taskfile, config, datasources = self.files(task, ctx.cwd)
        argv = [sys.executable, "-m", "mflow", "run", "--taskfile", str(taskfile)]
        if config is not None:
            argv += ["--config", str(config)]
        if datasources is not None:
            argv += ["--datasources", str(datasources)]
        link = nesting.ParentLink(
            run_id=ctx.run_id,
            task_id=ctx.task_id,
            attempt=ctx.attempt,
            backend_url=backend.url,
            backend_display=backend.display,
            connect_args=backend.connect_args,
            force=ctx.force,
            chain=nesting.current_chain,
        )
        env = {**ctx.env, nesting.PARENT_VARIABLE: link.to_environment()}
        report = _ChildReport(ctx)
        result = await run_process(
            argv,
            ctx,
            env=env,
            on_line=report.line,
            grace_s=ctx.kill_grace_s + CHILD_STOP_MARGIN_S,
        )
        return report.result(result)


class _ChildReport:
    """What the child's output says: its run id (recorded at once), then how it ended."""

    def __init__(self, ctx: TaskContext):
        self.ctx = ctx
        self.run_id: int | None = None
        self.outcome = ""  # "run 12 FAILED"
        self.failed: list[str] = []
        self.last_line = ""
        self.first_problem = ""  # before any run: "file:line:col: ..." of a bad file, say

    def line(self, line: str) -> None:
        if self.run_id is None:
            match = _RUN_LINE.match(line)
            if match:
                self.run_id = int(match.group(1))
                self.ctx.record("nested_run_id", self.run_id)
        summary = _SUMMARY.match(line)
        if summary:
            self.outcome = summary.group(1)
        failed = _FAILED_TASK.match(line)
        if failed and self.outcome:
            self.failed.append(failed.group(1))
        if line.strip():
            self.last_line = line.strip()
            if not (self.first_problem or self.run_id or line.startswith("warning")):
                self.first_problem = line.strip()

    def result(self, ended: TaskResult) -> TaskResult:
        if ended.ok:
            return TaskResult(True, 0, f"nested run {self.run_id}" if self.run_id else "")
        if self.outcome:
            failed = f"; failed: {', '.join(self.failed)}" if self.failed else ""
            return TaskResult(False, ended.exit_code, f"nested {self.outcome}{failed}")
        if self.run_id is not None:  # its run began, and the child died before its end
            how = ended.message or f"exit code {ended.exit_code}"
            return TaskResult(
                False, ended.exit_code, f"nested run {self.run_id} stopped before its end: {how}"
            )
        # It stopped before running anything: its last line is the error, or says how
        # many problems its files have, and the first of them says what is wrong.
        why = self.last_line.removeprefix("Error: ")
        if self.first_problem and self.first_problem != self.last_line:
            why = f"{self.first_problem} ({why})"
        return TaskResult(False, ended.exit_code, f"nested flow: {why}" if why else ended.message)
