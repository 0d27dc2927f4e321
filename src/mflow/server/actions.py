"""Cancel a run, retry a task, resume a run: what the API does when a token allows it.

Cancel signals the run's own mflow (SIGTERM: it stops its tasks and records them
CANCELLED, as for a Ctrl-C). Resume and retry start a new `mflow` process, detached from
the server, with the files of the run; the answer names the run it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mflow.liveness import same_process
from mflow.server.reads import Reads
from mflow.states import RunState, TaskState
from mflow.store.rows import HOST

START_TIMEOUT_S = 30.0
RETRYABLE = {
    TaskState.FAILED,
    TaskState.UPSTREAM_FAILED,
    TaskState.CANCELLED,
    TaskState.INTERRUPTED,
}


class Refused(Exception):
    """The action does not apply to that run now (409), with the reason."""


class Actions:
    def __init__(self, reads: Reads, config: Path | None, datasources: Path | None):
        self.reads = reads
        self.config = config  # the files the server was started with, passed on
        self.datasources = datasources

    def cancel(self, run: dict[str, Any]) -> str:
        if run["state"] != RunState.RUNNING:
            raise Refused(f"run {run['run_id']} is {run['state']}, not RUNNING")
        if run["host"] != HOST:
            raise Refused(
                f"run {run['run_id']} runs on {run['host']}; "
                f"cancel it there (this server runs on {HOST})"
            )
        if not same_process(run["pid"], run["started_at"]):
            raise Refused(f"run {run['run_id']}'s mflow (pid {run['pid']}) is gone")
        os.kill(run["pid"], signal.SIGTERM)
        return f"run {run['run_id']} is being cancelled"

    def resume(self, run: dict[str, Any]) -> tuple[int, str]:
        run_id = run["run_id"]
        if run["state"] == RunState.RUNNING:
            raise Refused(f"run {run_id} is still RUNNING")
        if run["state"] == RunState.SUCCESS:
            raise Refused(f"run {run_id} succeeded; there is nothing to resume")
        if run.get("parent_run_id") is not None:
            raise Refused(
                f"run {run_id} is a nested flow's: resume its parent run {run['parent_run_id']}"
            )
        resumers = self.reads.store.resumers_of(run_id)
        if resumers and resumers[0]["state"] in (RunState.RUNNING, RunState.SUCCESS):
            latest = resumers[0]
            raise Refused(
                f"run {run_id} is being resumed by run {latest['run_id']}"
                if latest["state"] == RunState.RUNNING
                else f"run {run_id} was resumed by run {latest['run_id']}, which succeeded; "
                "nothing to resume"
            )
        new = self._start(["resume", str(run_id), *self._run_files(run)], resumed_from=run_id)
        return new, f"run {new} resumes run {run_id}"

    def retry(self, run: dict[str, Any], task: dict[str, Any]) -> tuple[int, str]:
        run_id = run["run_id"]
        if run["state"] == RunState.RUNNING:
            raise Refused(f"run {run_id} is still RUNNING")
        if task["state"] not in RETRYABLE:
            raise Refused(
                f"task '{task['task_id']}' is {task['state']}; only a task that did "
                "not succeed can be retried"
            )
        if run.get("parent_run_id") is not None:
            raise Refused(
                f"run {run_id} is a nested flow's: resume its parent run {run['parent_run_id']}"
            )
        args = ["run", "--taskfile", run["flow_path"], "--task", task["task_id"]]
        new = self._start([*args, *self._run_files(run)], flow_path=run["flow_path"])
        return new, f"run {new} retries task '{task['task_id']}' of run {run_id}"

    def _run_files(self, run: dict[str, Any]) -> list[str]:
        args = []
        config = run.get("config_path") or (str(self.config) if self.config else None)
        if config:
            args += ["--config", config]
        if self.datasources:
            args += ["--datasources", str(self.datasources)]
        return args

    def _start(
        self, args: list[str], *, resumed_from: int | None = None, flow_path: str | None = None
    ) -> int:
        """Start `mflow ARGS` on its own and wait until its run is recorded: its id."""
        before = self._latest_run_id()
        folder = Path(flow_path).parent if flow_path else Path.cwd()
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(
                [sys.executable, "-m", "mflow", *args],
                cwd=folder if folder.is_dir() else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,  # not stopped with the server, nor by its Ctrl-C
            )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                found = self._new_run(before, resumed_from, flow_path)
                if found is not None:
                    return found
                if process.poll() is not None:
                    found = self._new_run(before, resumed_from, flow_path)
                    if found is not None:
                        return found
                    errors.seek(0)
                    text = errors.read().decode("utf-8", "replace").strip()
                    raise Refused(
                        text.removeprefix("Error: ") or f"mflow exited {process.returncode}"
                    )
                time.sleep(0.05)
        raise Refused(
            f"mflow {' '.join(args[:2])} did not record a run within {START_TIMEOUT_S:g} s"
        )

    def _latest_run_id(self) -> int:
        runs = self.reads.store.list_runs(1)
        return runs[0]["run_id"] if runs else 0

    def _new_run(self, before: int, resumed_from: int | None, flow_path: str | None) -> int | None:
        for run in self.reads.store.list_runs(20):
            if run["run_id"] <= before:
                break
            if resumed_from is not None and run["resumed_from"] == resumed_from:
                return run["run_id"]
            if flow_path is not None and run["flow_path"] == flow_path:
                return run["run_id"]
        return None
