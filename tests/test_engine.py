"""The engine seen through the command line: order, the live concurrency limit, failure
propagation, environment, working folder, process groups, logs and the state database."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from conftest import (
    MFLOW,
    Project,
    Result,
    assert_exit,
    assert_no_traceback,
    bash,
    pids_with_arg,
    unique_token,
    wait_for,
)
from mflow.tasktypes.base import TaskContext, TaskResult, TaskSpec
from mflow.tasktypes.bash import BashType


def step(task_id: str, *depends: str, seconds: float = 0.2) -> dict:
    """A task that appends `start ID` and `end ID` lines to order.log."""
    command = f"echo start {task_id} >> order.log; sleep {seconds}; echo end {task_id} >> order.log"
    return bash(task_id, command, *depends)


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# -- order and concurrency --------------------------------------------------------------------


def test_task_starts_only_after_its_dependencies_ended(project: Project) -> None:
    tasks = [
        step("a"),
        step("b", "a"),
        step("c", "a"),
        step("d", "b", "c"),
        step("e", seconds=0.05),
        step("f", "d", "e"),
    ]
    project.write_tasks(tasks)
    project.run_ok()
    lines = (project.root / "order.log").read_text().splitlines()
    expected = [f"{kind} {t['id']}" for t in tasks for kind in ("start", "end")]
    assert sorted(lines) == sorted(expected)
    for task in tasks:
        for dep in task.get("depends", []):
            assert lines.index(f"end {dep}") < lines.index(f"start {task['id']}"), lines
    # independent tasks do run side by side when slots are free
    assert lines.index("start c") < lines.index("end b"), lines
    assert lines.index("start b") < lines.index("end c"), lines
    assert lines.index("start e") < lines.index("end a"), lines


def test_next_task_starts_without_waiting_for_a_poll(project: Project) -> None:
    """check_new_config_interval is the config re-read period, not a scheduling delay."""
    chain = [bash("t0", "true")] + [bash(f"t{i}", "true", f"t{i - 1}") for i in range(1, 20)]
    project.write_config(check_new_config_interval=5)
    project.write_tasks(chain)
    project.run_ok()
    run = project.db("SELECT started_at, ended_at FROM mf_runs")[0]
    assert seconds_between(run["started_at"], run["ended_at"]) < 2.0


def test_a_chain_is_recorded_in_order(project: Project) -> None:
    """The next task of a chain starts before the previous end is written; every record
    still shows the dependency ending before its dependent starts."""
    chain = [bash("t0", "true")] + [bash(f"t{i}", "true", f"t{i - 1}") for i in range(1, 4)]
    project.write_tasks(chain)
    result = project.run_ok()
    printed = re.findall(r"(RUNNING|SUCCESS) +(t\d)", result.stdout)
    master_log = (project.log_dir / "mflow.log").read_text()
    logged = re.findall(r"task (t\d) (?:attempt 1 )?(RUNNING|SUCCESS)", master_log)
    assert len(printed) == len(logged) == 8
    for i in range(1, 4):
        for lines in (printed, [(state, task) for task, state in logged]):
            assert lines.index(("SUCCESS", f"t{i - 1}")) < lines.index(("RUNNING", f"t{i}"))
    rows = {
        row["task_id"]: row
        for row in project.db("SELECT task_id, started_at, ended_at FROM mf_attempts")
    }
    for i in range(1, 4):
        assert rows[f"t{i - 1}"]["ended_at"] <= rows[f"t{i}"]["started_at"]


def test_many_tasks_that_cannot_start_each_fail(project: Project) -> None:
    """More tasks than Python's recursion limit, each failing at once: each is recorded."""
    project.write_tasks([bash(f"t{i}", "no-such-program-here") for i in range(1200)])
    result = project.mflow("run", timeout=120)
    assert_exit(result, 1)
    assert_no_traceback(result)
    assert set(project.task_states(1).values()) == {"FAILED"}
    codes = project.db("SELECT DISTINCT exit_code, message FROM mf_attempts")
    assert codes == [{"exit_code": 127, "message": "no-such-program-here: command not found"}]


@pytest.mark.slow
@pytest.mark.parametrize("limit, count, seconds", [(3, 12, 0.3), (1, 5, 0.1)])
def test_concurrency_limit_holds(project: Project, limit: int, count: int, seconds: float) -> None:
    project.add_concurrency_script()
    project.write_config(max_process_concurrency=limit)
    project.write_tasks([bash(f"t{i}", f"bash conc.sh {seconds} t{i}") for i in range(count)])
    project.run_ok()
    assert project.max_concurrency() == limit
    assert len((project.root / "conc.starts").read_text().splitlines()) == count
    assert (project.root / "conc.count").read_text().strip() == "0"


def _run_under_open_file_limit(project: Project, limit: int) -> Result:
    command = " ".join(shlex.quote(arg) for arg in [*MFLOW, "run"])
    completed = subprocess.run(
        ["bash", "-c", f"ulimit -n {limit} && exec {command}"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    result = Result(["run"], completed.returncode, completed.stdout, completed.stderr)
    assert_no_traceback(result)
    return result


def test_more_tasks_at_once_than_open_files_allow_wait_their_turn(project: Project) -> None:
    """max_process_concurrency 40 under `ulimit -n 64`: each running task holds three of
    mflow's descriptors (output pipe, pidfd, log), and mflow keeps some free for itself, so
    not all 40 can start at once. Those that cannot wait for a running task to end (none
    fails, every log is written), and the run says why."""
    project.add_concurrency_script()
    project.write_config(max_process_concurrency=40)
    project.write_tasks(
        [bash(f"t{i}", f"echo hello t{i}; bash conc.sh 0.5 t{i}") for i in range(40)]
    )
    result = _run_under_open_file_limit(project, 64)
    assert_exit(result, 0)
    assert set(project.task_states(1).values()) == {"SUCCESS"}
    assert 2 <= project.max_concurrency() < 40
    assert len((project.root / "conc.starts").read_text().splitlines()) == 40
    assert "tasks are running and no more can start for now: too many open files" in result.stdout
    assert "ulimit -n" in result.stdout
    attempts = project.db("SELECT count(*) AS n FROM mf_attempts")[0]["n"]
    assert attempts == 40  # a start that had to wait is not an attempt
    for i in range(40):
        assert project.task_log(1, f"t{i}").read_text() == f"hello t{i}\n"


def test_a_task_with_a_timeout_that_cannot_start_fails_saying_why(project: Project) -> None:
    """Attempts with a timeout (and other task types) are recorded RUNNING before their
    process starts, so they do not wait their turn: they fail with what ran out and which
    limit to raise (and their retries apply), and the run goes on."""
    project.write_config(max_process_concurrency=40)
    project.write_tasks([bash(f"t{i}", "sleep 0.5", timeout=30) for i in range(40)])
    result = _run_under_open_file_limit(project, 64)
    assert_exit(result, 1)
    states = project.task_states(1)
    assert "SUCCESS" in states.values() and "FAILED" in states.values()
    messages = {
        row["message"] for row in project.db("SELECT message FROM mf_tasks WHERE state = 'FAILED'")
    }
    assert messages == {
        "not started: too many open files (mflow may have 64: ulimit -n); "
        "raise the limit or lower max_process_concurrency"
    }


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["same-folder", "config-elsewhere", "symlink"])
def test_hot_reload_of_concurrency_limit(project: Project, layout: str) -> None:
    if layout == "config-elsewhere":  # relative paths to two other folders: still the
        flow_dir = project.root / "flows"  # same config file after a chdir
        config_name = "conf/config.json"
        args: tuple[str, ...] = ("--config", "conf/config.json", "--taskfile", "flows/tasks.json")
    else:
        flow_dir, config_name, args = project.root, "config.json", ()
    flow = Project(flow_dir)
    flow.root.mkdir(exist_ok=True)
    flow.add_concurrency_script()
    if layout == "symlink":  # config.json -> one.json, re-pointed to two.json mid-run
        project.write_config(
            name="one.json", max_process_concurrency=1, check_new_config_interval=0.2
        )
        (project.root / "config.json").unlink(missing_ok=True)
        (project.root / "config.json").symlink_to("one.json")
    else:
        project.write_config(
            name=config_name, max_process_concurrency=1, check_new_config_interval=0.2
        )
    flow.write_tasks([bash(f"t{i}", f"bash conc.sh 0.5 t{i}") for i in range(8)])
    run = project.start("run", *args)
    wait_for(lambda: (flow.root / "conc.starts").exists(), what="the first task to start")
    if layout == "symlink":
        project.write_config(
            name="two.json", max_process_concurrency=4, check_new_config_interval=0.2
        )
        (project.root / "next.json").symlink_to("two.json")
        (project.root / "next.json").rename(project.root / "config.json")  # as ln -sfn does
    else:
        project.write_config(
            name=config_name, max_process_concurrency=4, check_new_config_interval=0.2
        )
    assert_exit(run.wait(), 0)
    highest = flow.max_concurrency()
    assert 1 < highest <= 4, f"max concurrency seen: {highest}"


@pytest.mark.parametrize("new_limit", [None, 3])
def test_a_reloaded_config_changes_nothing_else_in_a_running_flow(
    project: Project, new_limit: int | None
) -> None:
    """As mflow says on reload: only max_process_concurrency applies to a running flow."""
    project.write_tasks(
        [bash("a", "touch a.started; sleep 0.5"), bash("b", "sleep 1.5", "a"), bash("c", "true")]
    )
    run = project.start("run")
    wait_for(lambda: (project.root / "a.started").exists(), what="task a to start")
    project.write_config(
        default_timeout=1, **({"max_process_concurrency": new_limit} if new_limit else {})
    )
    run.popen.send_signal(signal.SIGHUP)  # re-read config.json now
    result = run.wait()
    assert_exit(result, 0)
    # also when the limit changed in the same edit: the rest is not silently dropped
    assert "config file reloaded; a running flow takes only a new" in result.stdout
    master_log = (project.log_dir / "mflow.log").read_text()
    assert "config file reloaded; a running flow takes only a new" in master_log
    if new_limit:
        assert "max_process_concurrency changed from 4 to 3" in master_log
    assert project.task_states(1) == {"a": "SUCCESS", "b": "SUCCESS", "c": "SUCCESS"}


# -- failures ----------------------------------------------------------------------------------


def test_failure_propagates_to_descendants_only(project: Project) -> None:
    project.write_tasks(
        [
            bash("a", "echo failing; exit 3"),
            bash("b", "touch b.txt", "a"),
            bash("c", "touch c.txt", "b"),
            bash("x", "sleep 0.3; touch x.txt"),
            bash("y", "touch y.txt", "x"),
            bash("m", "touch m.txt", "x", "a"),
        ]
    )
    result = project.mflow("run")
    assert_exit(result, 1)
    expected = {
        "a": "FAILED",
        "b": "UPSTREAM_FAILED",
        "c": "UPSTREAM_FAILED",
        "x": "SUCCESS",
        "y": "SUCCESS",
        "m": "UPSTREAM_FAILED",
    }
    assert project.task_states(1) == expected
    assert project.db("SELECT state FROM mf_runs WHERE run_id = 1") == [{"state": "FAILED"}]
    attempts = project.db("SELECT task_id, state, exit_code FROM mf_attempts ORDER BY task_id")
    assert attempts == [
        {"task_id": "a", "state": "FAILED", "exit_code": 3},
        {"task_id": "x", "state": "SUCCESS", "exit_code": 0},
        {"task_id": "y", "state": "SUCCESS", "exit_code": 0},
    ]
    assert sorted(p.name for p in project.root.glob("*.txt")) == ["x.txt", "y.txt"]
    data = project.status(1)
    assert data["state"] == "FAILED"
    assert {t["task_id"]: t["state"] for t in data["tasks"]} == expected
    assert str(project.task_log(1, "a")) in result.stdout  # the summary points at its log


def test_exit_codes_are_recorded(project: Project) -> None:
    project.write_tasks(
        [
            bash("one", "exit 1"),
            bash("forty_two", "echo x; exit 42"),
            bash("max", "exit 255"),
            bash("killed", "kill -9 $$"),
        ]
    )
    assert_exit(project.mflow("run"), 1)
    rows = project.db("SELECT task_id, state, exit_code FROM mf_attempts WHERE run_id = 1")
    codes = {row["task_id"]: (row["state"], row["exit_code"]) for row in rows}
    assert codes == {
        "one": ("FAILED", 1),
        "forty_two": ("FAILED", 42),
        "max": ("FAILED", 255),
        "killed": ("FAILED", 137),
    }


@pytest.mark.parametrize("command", ["nosuchcmd_mflow_test", 'nosuchcmd_mflow_test --x "$HOME"'])
def test_command_not_found(project: Project, command: str) -> None:
    project.write_tasks([bash("missing", command)])
    assert_exit(project.mflow("run"), 1)
    rows = project.db("SELECT state, exit_code, log_path FROM mf_attempts")
    assert [(r["state"], r["exit_code"]) for r in rows] == [("FAILED", 127)]
    log = Path(rows[0]["log_path"]).read_text()
    assert "nosuchcmd_mflow_test: command not found" in log


@pytest.mark.parametrize("command", ["/tmp", "/tmp || exit $?"])  # run directly / by bash
def test_a_folder_as_command_fails_as_bash_says(project: Project, command: str) -> None:
    project.write_tasks([bash("folder", command)])
    project.mflow("run")
    rows = project.db("SELECT exit_code, log_path FROM mf_attempts")
    assert rows[0]["exit_code"] == 126
    assert "/tmp: Is a directory" in Path(rows[0]["log_path"]).read_text()


def test_retries_from_config_defaults(project: Project) -> None:
    project.write_config(default_retries=2, default_retry_delay=0)
    project.write_tasks([bash("always", "echo try >> tries.txt; exit 5")])
    assert_exit(project.mflow("run"), 1)
    rows = project.db("SELECT attempt, state, exit_code FROM mf_attempts ORDER BY attempt")
    assert rows == [{"attempt": n, "state": "FAILED", "exit_code": 5} for n in (1, 2, 3)]
    assert project.task_states(1) == {"always": "FAILED"}
    assert (project.root / "tries.txt").read_text() == "try\n" * 3


def test_timeout_stops_the_task(project: Project) -> None:
    token = unique_token()
    project.write_tasks([bash("slow", f"sleep {token}; echo done", timeout=0.5)])
    assert_exit(project.mflow("run", timeout=20), 1)
    assert pids_with_arg(token) == []
    rows = project.db("SELECT state, message, started_at, ended_at FROM mf_attempts")
    assert rows[0]["state"] == "FAILED"
    assert "timeout" in rows[0]["message"].lower()
    assert seconds_between(rows[0]["started_at"], rows[0]["ended_at"]) < 5


# -- environment and folder ----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["list", "mapping"])
def test_environment_layers(project: Project, form: str) -> None:
    config_env = {"CFG": "cfg-${MFLOW_TEST_BASE}", "SHARED": "from-config"}
    if form == "list":  # the original's [{"key", "value"}]
        project.write_config(env=[{"key": k, "value": v} for k, v in config_env.items()])
    else:
        project.write_config(env=config_env)
    project.write_tasks(
        [
            bash(
                "layered",
                'echo "$CFG|$SHARED|$TASK_ONLY|$MFLOW_TEST_PROC" > env1.txt',
                env={"SHARED": "from-task", "TASK_ONLY": "task-${MFLOW_TEST_BASE}"},
            ),
            bash("plain", 'echo "$SHARED|${TASK_ONLY:-unset}" > env2.txt'),
        ]
    )
    process_env = {
        "MFLOW_TEST_BASE": "base42",
        "MFLOW_TEST_PROC": "proc-only",
        "SHARED": "from-process",
    }
    project.run_ok(env=process_env)
    assert (project.root / "env1.txt").read_text() == "cfg-base42|from-task|task-base42|proc-only\n"
    assert (project.root / "env2.txt").read_text() == "from-config|unset\n"


def test_tasks_run_in_the_task_file_folder(project: Project) -> None:
    cwd = project.root / "elsewhere"
    cwd.mkdir()
    conf = project.write_config(name="conf/config.json")
    flows = project.root / "flows"
    project.write_tasks(
        [
            bash("shell", "pwd > where.txt"),  # through bash -c
            bash("direct", "touch direct.txt"),  # a plain command (may be exec'd directly)
            bash("relative", "cat data/input.txt > copy.txt"),
        ],
        name="flows/tasks.json",
    )
    (flows / "data").mkdir()
    (flows / "data" / "input.txt").write_text("payload\n")
    result = project.mflow(
        "run", "--config", "../conf/config.json", "--taskfile", "../flows/tasks.json", cwd=cwd
    )
    assert_exit(result, 0)
    assert (flows / "where.txt").read_text().strip() == str(flows.resolve())
    assert (flows / "direct.txt").exists()
    assert (flows / "copy.txt").read_text() == "payload\n"
    assert list(cwd.iterdir()) == []
    assert (conf.parent / "logs" / "mflow.db").exists()


# -- processes --------------------------------------------------------------------------------


def test_background_child_does_not_outlive_its_task(project: Project) -> None:
    token = unique_token()
    project.write_tasks([bash("bg", f"sleep {token} & echo started")])
    result = project.mflow("run", timeout=30)
    assert_exit(result, 0)
    assert pids_with_arg(token) == []
    assert project.task_log(1, "bg").read_text() == "started\n"


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_cancels_the_run(project: Project, signum: int, code: int) -> None:
    token = unique_token()
    project.write_tasks(
        [
            bash("long", f"touch started; sleep {token}"),
            bash("after", "touch after.txt", "long"),
        ]
    )
    run = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the task to start")
    wait_for(lambda: pids_with_arg(token), what="the sleep process")
    run.popen.send_signal(signum)
    result = run.wait(timeout=20)
    assert_exit(result, code)
    assert_no_traceback(result)
    assert pids_with_arg(token) == []
    assert not (project.root / "after.txt").exists()
    assert project.db("SELECT state FROM mf_runs") == [{"state": "CANCELLED"}]
    assert project.task_states(1) == {"long": "CANCELLED", "after": "CANCELLED"}


@pytest.mark.slow
def test_big_output_streams_to_the_log(project: Project) -> None:
    size = 200_000_000
    project.write_tasks([bash("big", f"head -c {size} /dev/zero")])
    # A fresh Python parent: its RUSAGE_CHILDREN peak is mflow's own (and its tasks').
    measure = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", measure, *MFLOW, "run"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = project.task_log(1, "big")
    try:
        assert completed.returncode == 0, completed.stderr
        assert log.stat().st_size == size
        peak_mb = int(completed.stdout.split()[-1]) / 1024
        assert peak_mb < 150, f"mflow peak RSS {peak_mb:.0f} MB"
    finally:
        log.unlink(missing_ok=True)


# -- logs and database ----------------------------------------------------------------------------


def test_a_daemon_that_left_the_group_does_not_hold_its_task(project: Project) -> None:
    """A process started with setsid outlives the task and keeps its output open; the task
    still ends once its own process exits (after a short grace for the output)."""
    token = unique_token()
    project.write_tasks(
        [
            bash("start", f"setsid sleep {token} & sleep 0.3; echo started"),
            bash("next", "echo next", "start"),
        ]
    )
    try:
        result = project.mflow("run", timeout=30)  # the daemon would hold it 1,000 s
        assert_exit(result, 0)
        assert project.task_log(1, "start").read_text() == "started\n"
        assert project.task_log(1, "next").read_text() == "next\n"
        assert pids_with_arg(token)  # not followed, not killed: it is no longer the task's
    finally:
        for pid in pids_with_arg(token):
            os.kill(pid, signal.SIGKILL)


def test_task_without_output_leaves_no_log_file(project: Project) -> None:
    project.write_tasks([bash("quiet", "true"), bash("loud", "echo hi")])
    project.run_ok()
    assert not project.task_log(1, "quiet").exists()
    assert project.task_log(1, "loud").read_text() == "hi\n"


def test_stdout_and_stderr_share_the_log_in_the_order_written(project: Project) -> None:
    project.write_tasks([bash("mixed", "echo one; echo two >&2; echo three; echo four >&2")])
    project.run_ok()
    assert project.task_log(1, "mixed").read_text() == "one\ntwo\nthree\nfour\n"


def test_writing_to_dev_stderr_keeps_what_the_task_printed_before(project: Project) -> None:
    # Shell scripts reopen their own output (`> /dev/stderr`, `tee /dev/stderr`). Were that
    # output the log file itself, each reopening would truncate it; through a pipe it cannot.
    project.write_tasks(
        [
            bash("e", "echo one; echo two > /dev/stderr; echo three"),
            bash("t", "echo first; echo second | tee /dev/stderr; echo third"),
        ]
    )
    project.run_ok()
    assert project.task_log(1, "e").read_text() == "one\ntwo\nthree\n"
    assert project.task_log(1, "t").read_text() == "first\nsecond\nsecond\nthird\n"


def test_a_running_tasks_output_is_in_its_log_before_it_ends(project: Project) -> None:
    project.write_tasks([bash("slow", "echo started; sleep 60")])
    run = project.start("run")
    log = project.task_log(1, "slow")
    wait_for(lambda: log.exists() and log.read_text() == "started\n", what="the first line")
    # (states are written a few times a second: the first line may come before RUNNING)
    wait_for(lambda: project.task_states(1) == {"slow": "RUNNING"}, what="RUNNING recorded")
    assert log.read_text() == "started\n"  # the task is still going
    run.popen.send_signal(signal.SIGTERM)
    assert_exit(run.wait(), 143)


def test_master_log_has_run_id_and_state_changes(project: Project) -> None:
    project.write_tasks([bash("first", "echo 1"), bash("second", "exit 4", "first")])
    assert_exit(project.mflow("run"), 1)
    project.write_tasks([bash("first", "echo 1")])
    project.run_ok()
    text = (project.log_dir / "mflow.log").read_text()
    run1 = [line for line in text.splitlines() if "run 1 " in line]
    run2 = [line for line in text.splitlines() if "run 2 " in line]
    assert run1 and run2
    assert all(line[:4].isdigit() for line in text.splitlines())  # timestamped
    for task, state in [("first", "RUNNING"), ("first", "SUCCESS"), ("second", "FAILED")]:
        assert any(f"task {task}" in line and state in line for line in run1), text
    assert any("ended" in line and "FAILED" in line for line in run1), text
    assert any("ended" in line and "SUCCESS" in line for line in run2), text
    assert text.index("run 1 ") < text.index("run 2 ")  # appended, not overwritten


def test_database_rows_of_a_successful_run(project: Project) -> None:
    project.write_tasks([bash("a", "echo out-a"), bash("b", "echo out-b >&2", "a")])
    project.run_ok()
    runs = project.db("SELECT * FROM mf_runs")
    assert len(runs) == 1
    run = runs[0]
    assert run["state"] == "SUCCESS"
    assert run["started_at"] and run["ended_at"] and run["ended_at"] >= run["started_at"]
    tasks = project.db("SELECT task_id, state, attempts FROM mf_tasks ORDER BY task_id")
    assert tasks == [
        {"task_id": "a", "state": "SUCCESS", "attempts": 1},
        {"task_id": "b", "state": "SUCCESS", "attempts": 1},
    ]
    attempts = project.db("SELECT * FROM mf_attempts ORDER BY task_id")
    assert [(a["task_id"], a["attempt"], a["state"], a["exit_code"]) for a in attempts] == [
        ("a", 1, "SUCCESS", 0),
        ("b", 1, "SUCCESS", 0),
    ]
    for row, text in zip(attempts, ["out-a\n", "out-b\n"], strict=True):
        assert row["run_id"] == run["run_id"]
        assert isinstance(row["pid"], int) and row["pid"] > 0
        assert row["host"] == socket.gethostname()
        assert row["started_at"] and row["ended_at"] and row["ended_at"] >= row["started_at"]
        assert Path(row["log_path"]) == project.task_log(run["run_id"], row["task_id"])
        assert Path(row["log_path"]).read_text() == text
    a, b = attempts
    assert b["started_at"] >= a["ended_at"]


def test_each_run_is_a_new_row(project: Project) -> None:
    project.write_tasks([bash("a", "echo again")])
    project.run_ok()
    project.run_ok()
    assert [r["run_id"] for r in project.db("SELECT run_id FROM mf_runs ORDER BY run_id")] == [1, 2]
    assert project.task_log(1, "a").read_text() == "again\n"
    assert project.task_log(2, "a").read_text() == "again\n"
    runs = json.loads(project.mflow("runs", "--json").stdout)
    assert [r["state"] for r in runs] == ["SUCCESS", "SUCCESS"]


def test_a_task_killed_by_a_signal_without_a_name_fails_alone(project: Project) -> None:
    project.write_tasks([bash("rt", "kill -s RTMIN+1 $$"), bash("other", "sleep 0.5")])
    result = project.mflow("run")
    assert_exit(result, 1)
    assert_no_traceback(result)
    assert project.task_states(1) == {"rt": "FAILED", "other": "SUCCESS"}
    rt = project.db("SELECT exit_code, message FROM mf_attempts WHERE task_id = 'rt'")
    number = signal.SIGRTMIN + 1
    assert rt == [{"exit_code": 128 + number, "message": f"killed by signal {number}"}]


class WrappedBash(BashType):
    """A plugin's own take on bash: its run() must be used, with or without a timeout."""

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        ctx.record("wrapped", True)
        return await super().run(task, ctx)


def test_a_subclass_of_bash_keeps_its_own_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mflow.tasktypes import registry

    monkeypatch.setitem(registry.BUILTIN_TYPES, "wrapped", f"{__name__}:WrappedBash")
    tasks = [bash("plain", "true"), bash("timed", "true", timeout=30)]
    project.write_tasks([{**task, "type": "wrapped"} for task in tasks])
    result = run_in_process(project)
    assert result.outcome.state == "SUCCESS"
    details = project.db("SELECT task_id, details FROM mf_attempts ORDER BY task_id")
    assert details == [
        {"task_id": "plain", "details": '{"wrapped": true}'},
        {"task_id": "timed", "details": '{"wrapped": true}'},
    ]


def run_in_process(project: Project):  # noqa: ANN201 (a RunResult)
    from mflow.inputs import load_inputs
    from mflow.runner import execute

    inputs = load_inputs(project.root / "config.json", True, project.root / "tasks.json")
    cwd = Path.cwd()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return execute(inputs, live=False)
    finally:
        os.chdir(cwd)  # a run works in the task file's folder


def test_a_task_gets_default_signal_handling_not_pythons(project: Project):
    # Python ignores SIGPIPE; a task must not inherit that, or a reader that stops early
    # (`| head`) makes the writer fail with "Broken pipe" instead of ending quietly.
    project.write_tasks([bash("pipe", "yes | head -1; echo ${PIPESTATUS[@]}")])
    project.run_ok()
    assert project.task_log(project.last_run_id(), "pipe").read_text() == "y\n141 0\n"


@pytest.mark.parametrize("command", ["sleep 30", "no-such-program-here"])
def test_cancel_in_the_turn_attempts_are_launched_still_ends_the_run(
    project: Project, command: str
) -> None:
    """Ctrl-C can land after the engine launched attempts but before their end was handled
    (say, together with a SIGHUP that raised the limit), also when they could not start.
    The run must end CANCELLED, every attempt with it, instead of waiting forever."""
    import asyncio

    from mflow.engine import Engine
    from mflow.inputs import load_inputs
    from mflow.listener import RunListener
    from mflow.settings import SettingsWatcher
    from mflow.states import RunState, TaskState

    project.write_config(max_process_concurrency=3)
    project.write_tasks([bash(name, command) for name in ("a", "b", "c")])
    inputs = load_inputs(project.root / "config.json", True, project.root / "tasks.json")
    engine = Engine(inputs.flow, inputs.types, SettingsWatcher(inputs.settings), RunListener(), 1)
    launch = engine._fill

    def launch_then_cancel() -> None:  # the cancel arrives in the same turn as the launch
        engine._fill = launch
        launch()
        assert len(engine.running) == 3
        engine.cancel()

    engine._fill = launch_then_cancel

    async def run_with_deadline():  # a hang fails the test instead of stalling the suite
        return await asyncio.wait_for(engine.run(), 20)

    outcome = asyncio.run(run_with_deadline())
    assert outcome.state is RunState.CANCELLED
    assert set(outcome.task_states.values()) == {TaskState.CANCELLED}


def test_a_finished_process_is_freed_at_once_and_the_collector_left_as_found(project: Project):
    """A bash attempt's Child is freed as soon as its end is handled, not kept alive by a
    reference cycle until the cycle collector runs (every hundred tasks or so, a walk over
    them all). And a run hides its flow from the collector only while it runs."""
    from mflow.tasktypes.process import Child

    project.write_tasks([bash(f"t{i}", "true") for i in range(20)])
    gc.collect()
    older = {id(obj) for obj in gc.get_objects() if isinstance(obj, Child)}  # other tests'
    gc.disable()  # what is still alive after the run is what reference counting kept
    try:
        result = run_in_process(project)
        alive = [o for o in gc.get_objects() if isinstance(o, Child) and id(o) not in older]
    finally:
        gc.enable()
    assert result.outcome.state == "SUCCESS"
    assert alive == []
    assert gc.get_freeze_count() == 0


def test_flows_run_in_turn_in_one_process_leave_no_open_files_behind(project: Project):
    """A program that embeds mflow and runs flows one after another (a scheduler service,
    these tests) must not gain open files with each run: each run's event loop, and the
    epoll set that watched its processes, go once the run is over."""
    project.write_tasks([bash(f"t{i}", "true") for i in range(3)])

    def open_files() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    assert run_in_process(project).outcome.state == "SUCCESS"  # opens what is kept for good
    before = open_files()
    for _ in range(4):
        assert run_in_process(project).outcome.state == "SUCCESS"
    assert open_files() == before
