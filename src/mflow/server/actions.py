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
import threading
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
        self._cancelled: set[tuple[int, Any]] = set()  # (pid, started_at) told to stop
        # One start at a time (requests run in threads): a double click's second request
        # then finds the first one's run RUNNING and is refused
        self._starting = threading.Lock()

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
        # Once: to mflow a second SIGTERM means "kill now", without the tasks' kill_grace,
        # and a second click is no such request
        if (run["pid"], run["started_at"]) not in self._cancelled:
            self._cancelled.add((run["pid"], run["started_at"]))
            os.kill(run["pid"], signal.SIGTERM)
        return f"run {run['run_id']} is being cancelled"

    def resume(self, run: dict[str, Any]) -> tuple[int, str]:
        with self._starting:  # the checks below see what the one before started
            return self._resume(run)

    def _resume(self, run: dict[str, Any]) -> tuple[int, str]:
        run_id = run["run_id"]
        if run["state"] == RunState.RUNNING:
            raise Refused(f"run {run_id} is still RUNNING")
        if run["state"] == RunState.SUCCESS:
            raise Refused(f"run {run_id} succeeded; there is nothing to resume")
        if run.get("parent_run_id") is not None:
            raise Refused(
                f"run {run_id} is a nested flow's: resume its parent run {run['parent_run_id']}"
            )
        self._refuse_while_the_flow_runs(run)
        resumers = self.reads.store.resumers_of(run_id)
        if resumers and resumers[0]["state"] in (RunState.RUNNING, RunState.SUCCESS):
            latest = resumers[0]
            raise Refused(
                f"run {run_id} is being resumed by run {latest['run_id']}"
                if latest["state"] == RunState.RUNNING
                else f"run {run_id} was resumed by run {latest['run_id']}, which succeeded; "
                "nothing to resume"
            )
        args = ["resume", str(run_id), *self._run_files(run)]
        new = self._start(args, Path(run["flow_path"]).parent)  # where its files are found
        return new, f"run {new} resumes run {run_id}"

    def retry(self, run: dict[str, Any], task: dict[str, Any]) -> tuple[int, str]:
        with self._starting:
            return self._retry(run, task)

    def _retry(self, run: dict[str, Any], task: dict[str, Any]) -> tuple[int, str]:
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
        self._refuse_while_the_flow_runs(run)
        args = ["run", "--taskfile", run["flow_path"], "--task", task["task_id"]]
        new = self._start([*args, *self._run_files(run)], Path(run["flow_path"]).parent)
        return new, f"run {new} retries task '{task['task_id']}' of run {run_id}"

    def _refuse_while_the_flow_runs(self, run: dict[str, Any]) -> None:
        """A retry or resume while a run of the same task file goes on (a double click, a
        retry and a resume together) would run its tasks twice at once."""
        for other in self.reads.store.list_runs(20, RunState.RUNNING):
            if other["flow_path"] == run["flow_path"]:
                raise Refused(f"run {other['run_id']} of this flow is running; wait for it to end")

    def _run_files(self, run: dict[str, Any]) -> list[str]:
        args = []
        config = run.get("config_path") or (str(self.config) if self.config else None)
        if config:
            args += ["--config", config]
        if self.datasources:
            args += ["--datasources", str(self.datasources)]
        return args

    def _start(self, args: list[str], folder: Path) -> int:
        """Start `mflow ARGS` in `folder`, on its own, and wait until its run is recorded
        (the run whose pid is the process's): its id."""
        before = self._latest_run_id()
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
                found = self._new_run(before, process.pid)
                if found is not None:
                    # reaped when it ends, not left a zombie until the next action
                    threading.Thread(target=process.wait, daemon=True).start()
                    return found
                if process.poll() is not None:
                    found = self._new_run(before, process.pid)
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

    def _new_run(self, before: int, pid: int) -> int | None:
        """The run recorded since `before` by the mflow of that pid (two clicks start two)."""
        for run in self.reads.store.list_runs(20):
            if run["run_id"] <= before:
                break
            if run["pid"] == pid and run["host"] == HOST:
                return run["run_id"]
        return None
