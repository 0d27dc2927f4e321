"""Shared helpers: a throw-away project folder (config.json + task file) and the means to run
the real `mflow` command in it, read its state database and wait on conditions."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MFLOW = [sys.executable, "-m", "mflow"]
DEFAULT_CONFIG: dict[str, Any] = {
    "max_process_concurrency": 4,
    "check_new_config_interval": 1,
    "log_directory": "./logs/",
}
# In a file written by `tasks_json`, task number i (0-based) is on line TASK_LINE + i.
TASK_LINE = 3

# `bash conc.sh SECONDS ID`: counts the tasks running at once (under flock) and keeps the
# highest count seen in conc.max; conc.starts gets one line per task start.
CONCURRENCY_SCRIPT = """\
set -e
exec 9>>conc.lock
flock 9
n=$(( $(cat conc.count 2>/dev/null || echo 0) + 1 ))
echo "$n" > conc.count
m=$(cat conc.max 2>/dev/null || echo 0)
if [ "$n" -gt "$m" ]; then echo "$n" > conc.max; fi
echo "start $2" >> conc.starts
flock -u 9
sleep "$1"
flock 9
n=$(( $(cat conc.count) - 1 ))
echo "$n" > conc.count
flock -u 9
"""

_PROBLEM = re.compile(r"^(?:Error: )?(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): (?P<text>.*)$")


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ mflow {' '.join(self.args)}\nexit code {self.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


@dataclass(frozen=True)
class ReportedProblem:
    file: str
    line: int
    col: int
    text: str


def problems(stderr: str) -> list[ReportedProblem]:
    """The `file:line:col: ...` lines of a validation report."""
    found = []
    for raw in stderr.splitlines():
        match = _PROBLEM.match(raw.strip())
        if match and not raw.startswith("warning"):
            found.append(
                ReportedProblem(match["file"], int(match["line"]), int(match["col"]), match["text"])
            )
    return found


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.lower().startswith("warning")]


def assert_exit(result: Result, code: int) -> None:
    assert result.returncode == code, f"expected exit code {code}\n{result}"


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr + result.stdout, str(result)


def bash(task_id: str, command: str, *depends: str, **extra: Any) -> dict[str, Any]:
    """A bash task as it appears in tasks.json."""
    task: dict[str, Any] = {"id": task_id, "type": "bash", "command": command}
    if depends:
        task["depends"] = list(depends)
    task.update(extra)
    return task


def tasks_json(tasks: Iterable[dict[str, Any]]) -> str:
    """A task file with one task per line (task i on line TASK_LINE + i)."""
    rendered = [json.dumps(task) for task in tasks]
    body = ",\n".join(f"    {line}" for line in rendered)
    return '{\n  "tasks": [\n' + body + "\n  ]\n}\n"


def wait_for(condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def pids_with_arg(arg: str) -> list[int]:
    """Live processes that have `arg` as one of their command-line arguments."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "stat").read_text()
        except OSError:
            continue
        state = status.rsplit(")", 1)[-1].split()[0]
        if arg.encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def unique_token() -> str:
    """A number unique to this test, usable as `sleep` argument to find the process later."""
    return f"1000.{os.getpid()}{time.monotonic_ns() % 10**9:09d}"


class Background:
    """An mflow process started with Popen; its output goes to files, never a full pipe."""

    def __init__(self, args: list[str], popen: subprocess.Popen[bytes], out: Path, err: Path):
        self.args = args
        self.popen = popen
        self._out = out
        self._err = err

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        """What it printed on stdout so far."""
        return self._out.read_text()

    def wait(self, timeout: float = 60) -> Result:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(
                f"mflow {' '.join(self.args)} did not end within {timeout} s:\n"
                f"{self._out.read_text()}\n{self._err.read_text()}"
            )
        return Result(
            self.args, self.popen.returncode, self._out.read_text(), self._err.read_text()
        )


class Project:
    """A folder holding config.json and a task file, where mflow is run."""

    def __init__(self, root: Path):
        self.root = root
        self._bg = 0
        self._started: list[Background] = []

    # -- files ----------------------------------------------------------------------------
    def write_config(
        self,
        config: dict[str, Any] | str | None = None,
        *,
        name: str = "config.json",
        **values: Any,
    ) -> Path:
        """config.json: DEFAULT_CONFIG updated with `values`, or exactly `config`."""
        if config is None:
            config = {**DEFAULT_CONFIG, **values}
        text = config if isinstance(config, str) else json.dumps(config, indent=2) + "\n"
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # Replace atomically: a running mflow may re-read the file at any moment.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def write_tasks(self, tasks: Iterable[dict[str, Any]] | str, name: str = "tasks.json") -> Path:
        text = tasks if isinstance(tasks, str) else tasks_json(tasks)
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def add_concurrency_script(self) -> None:
        (self.root / "conc.sh").write_text(CONCURRENCY_SCRIPT)

    def max_concurrency(self) -> int:
        return int((self.root / "conc.max").read_text())

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def db_path(self) -> Path:
        return self.log_dir / "mflow.db"

    def nothing_recorded(self) -> bool:
        """No state database and no log written (what an invalid input must leave)."""
        if self.db_path.exists():
            return False
        return not (self.log_dir.exists() and any(self.log_dir.iterdir()))

    def task_log(self, run_id: int, task_id: str) -> Path:
        return self.log_dir / f"master_{run_id}_task_{task_id}.log"

    # -- running mflow ----------------------------------------------------------------------
    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        merged = dict(os.environ)
        merged.update(env or {})
        return merged

    def mflow(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Result:
        completed = subprocess.run(
            [*MFLOW, *args],
            cwd=cwd or self.root,
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(list(args), completed.returncode, completed.stdout, completed.stderr)

    def start(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Background:
        self._bg += 1
        out = self.root / f".mflow-bg-{self._bg}.out"
        err = self.root / f".mflow-bg-{self._bg}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            popen = subprocess.Popen(
                [*MFLOW, *args],
                cwd=cwd or self.root,
                env=self._env(env),
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
            )
        background = Background(list(args), popen, out, err)
        self._started.append(background)
        return background

    def stop_background(self) -> None:
        """End what a failed test left running: SIGTERM (mflow stops its tasks), then SIGKILL."""
        for background in self._started:
            if background.popen.poll() is None:
                background.popen.terminate()
                try:
                    background.popen.wait(15)
                except subprocess.TimeoutExpired:
                    background.popen.kill()
                    background.popen.wait()

    def run_ok(self, *args: str, **kwargs: Any) -> Result:
        result = self.mflow("run", *args, **kwargs)
        assert_exit(result, 0)
        return result

    # -- state ------------------------------------------------------------------------------
    def db(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        assert self.db_path.exists(), f"no state database at {self.db_path}"
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params)]
        finally:
            conn.close()

    def db_when_ready(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Like db(), for a run still going on: [] until the database and its tables exist."""
        if not self.db_path.exists():
            return []
        try:
            return self.db(sql, *params)
        except sqlite3.OperationalError:  # created a moment ago: no tables yet
            return []

    def last_run_id(self) -> int:
        rows = self.db("SELECT max(run_id) AS run_id FROM mf_runs")
        assert rows and rows[0]["run_id"] is not None, "no run recorded"
        return int(rows[0]["run_id"])

    def task_states(self, run_id: int) -> dict[str, str]:
        rows = self.db("SELECT task_id, state FROM mf_tasks WHERE run_id = ?", run_id)
        return {row["task_id"]: row["state"] for row in rows}

    def status(self, run_id: int) -> dict[str, Any]:
        result = self.mflow("status", str(run_id), "--json")
        assert_exit(result, 0)
        return json.loads(result.stdout)


@pytest.fixture(autouse=True, scope="session")
def _own_flow_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """mflow keeps checked flows for warm starts under $XDG_CACHE_HOME: the suite's go to
    a folder of its own, not to the user's cache."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("flow-cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """An empty project with the default config.json; write the task file in the test."""
    proj = Project(tmp_path)
    proj.write_config()
    yield proj
    proj.stop_background()


@pytest.fixture
def run_flow(project: Project) -> Callable[..., Result]:
    """Write `tasks` to tasks.json (and config values to config.json), then `mflow run` there."""

    def run(tasks: Iterable[dict[str, Any]] | str, *args: str, **config: Any) -> Result:
        if config:
            project.write_config(**config)
        project.write_tasks(tasks)
        return project.mflow("run", *args)

    return run
