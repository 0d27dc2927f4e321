"""The command line: default command, original and Go-style flags, validate, graph, runs,
status, logs, --task, --help, and exit codes for bad input or an unusable environment."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import (
    Project,
    assert_exit,
    assert_no_traceback,
    bash,
    wait_for,
)

DIAMOND = [
    bash("a", "echo a"),
    bash("b", "echo b", "a"),
    bash("c", "echo c", "a"),
    bash("d", "echo d", "b", "c"),
]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project with two finished runs: 1 succeeded, 2 failed (b exits 3)."""
    project = Project(tmp_path_factory.mktemp("history"))
    project.write_config()
    project.write_tasks(
        [
            bash("hello", "echo hello from task; echo second line"),
            bash("quiet", "true", "hello"),
        ]
    )
    project.run_ok()
    project.write_tasks(
        [
            bash("a", "echo output of a"),
            bash("b", "echo boom; exit 3", "a"),
            bash("c", "echo never", "b"),
            bash("d", "echo independent"),
        ],
        name="failing.json",
    )
    result = project.mflow("run", "--taskfile", "failing.json")
    assert_exit(result, 1)
    return project


# -- running ------------------------------------------------------------------------------


def test_default_command_is_run(project: Project) -> None:
    project.write_tasks([bash("a", "echo hi > a.txt"), bash("b", "cp a.txt b.txt", "a")])
    result = project.mflow()
    assert_exit(result, 0)
    assert (project.root / "b.txt").read_text() == "hi\n"
    assert project.db("SELECT state FROM mf_runs") == [{"state": "SUCCESS"}]


def test_flags_without_subcommand_mean_run(project: Project) -> None:
    project.write_tasks([bash("a", "touch ran.txt")], name="other.json")
    assert_exit(project.mflow("--taskfile", "other.json"), 0)
    assert (project.root / "ran.txt").exists()


@pytest.mark.parametrize("style", ["go", "go-equals", "long"])
def test_original_and_go_style_flags(project: Project, style: str) -> None:
    conf = project.write_config(name="conf/my-config.json", log_directory="./mylogs/")
    project.write_tasks([bash("a", "touch ran.txt")], name="flows/dag1.json")
    args = {
        "go": ["-taskfile", "flows/dag1.json", "-config", "conf/my-config.json"],
        "go-equals": ["-taskfile=flows/dag1.json", "-config=conf/my-config.json"],
        "long": ["--taskfile", "flows/dag1.json", "--config", "conf/my-config.json"],
    }[style]
    result = project.mflow(*args)
    assert_exit(result, 0)
    assert (project.root / "flows" / "ran.txt").exists()
    # log_directory is relative to the config file's folder
    assert (conf.parent / "mylogs" / "mflow.db").exists()
    assert not project.log_dir.exists()


def test_go_style_help_shows_the_help(project: Project) -> None:
    project.write_tasks([bash("a", "touch ran.txt")])
    top = project.mflow("-help")
    assert_exit(top, 0)
    assert "Usage: mflow [OPTIONS] COMMAND" in top.stdout
    of_run = project.mflow("-taskfile", "tasks.json", "-help")
    assert_exit(of_run, 0)
    assert "Usage: mflow run [OPTIONS]" in of_run.stdout
    assert not (project.root / "ran.txt").exists()


def test_a_task_id_that_looks_like_a_go_style_flag_is_taken_as_an_id(project: Project) -> None:
    project.write_tasks([bash("-config", "echo dashed"), bash("b", "echo b")])
    result = project.mflow("run", "--task", "-config")
    assert_exit(result, 0)
    run_id = project.last_run_id()
    assert project.task_states(run_id) == {"-config": "SUCCESS"}
    shown = project.mflow("logs", str(run_id), "--", "-config")
    assert_exit(shown, 0)
    assert shown.stdout == "dashed\n"


def test_serve_refuses_an_empty_host(project: Project) -> None:
    # an unset "$HOST" would otherwise mean every interface
    result = project.mflow("serve", "--host", "", timeout=30)
    assert_exit(result, 2)
    assert "--host is empty" in result.stderr


def test_force_without_resume_is_refused(project: Project) -> None:
    project.write_tasks([bash("a", "touch ran.txt")])
    result = project.mflow("run", "--force")
    assert_exit(result, 2)
    assert "--force goes with --resume RUN_ID" in result.stderr
    assert not (project.root / "ran.txt").exists()
    assert project.nothing_recorded()


def test_resume_help_says_the_runs_own_files_are_the_default(project: Project) -> None:
    text = " ".join(project.mflow("resume", "--help").stdout.split())
    assert "--taskfile PATH The flow's task file. [default: the run's own]" in text
    assert "./tasks.json" not in text


def test_task_option_runs_that_task_alone(project: Project) -> None:
    project.write_tasks(
        [
            bash("a", "touch a.txt"),
            bash("b", "touch b.txt", "a"),
            bash("c", "touch c.txt", "b"),
        ]
    )
    result = project.mflow("run", "--task", "b")
    assert_exit(result, 0)
    assert [p.name for p in project.root.glob("?.txt")] == ["b.txt"]
    assert project.task_states(project.last_run_id()) == {"b": "SUCCESS"}


def test_task_option_with_unknown_task(project: Project) -> None:
    project.write_tasks([bash("extract", "touch a.txt")])
    result = project.mflow("run", "--task", "extrct")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "extrct" in result.stderr
    assert "did you mean 'extract'" in result.stderr
    assert project.nothing_recorded()


def test_dry_run_runs_nothing(project: Project) -> None:
    project.write_tasks([bash("a", "touch a.txt"), bash("b", "touch b.txt", "a")])
    result = project.mflow("run", "--dry-run")
    assert_exit(result, 0)
    assert "a" in result.stdout and "b" in result.stdout
    assert not (project.root / "a.txt").exists()
    assert project.nothing_recorded()


def test_unusable_log_directory_exits_3(project: Project) -> None:
    (project.root / "afile").write_text("a regular file, not a folder\n")
    project.write_config(log_directory="./afile/logs/")
    project.write_tasks([bash("a", "touch ran.txt")])
    result = project.mflow("run")
    assert_exit(result, 3)
    assert_no_traceback(result)
    assert result.stderr.startswith("Error: ")
    assert "afile" in result.stderr
    assert "log_directory" in result.stderr
    assert not (project.root / "ran.txt").exists()


def test_unknown_option_exits_2(project: Project) -> None:
    project.write_tasks([bash("a", "touch ran.txt")])
    result = project.mflow("run", "--no-such-option")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "--no-such-option" in result.stderr
    assert not (project.root / "ran.txt").exists()


# -- validate and graph ---------------------------------------------------------------------


def test_validate_ok(project: Project) -> None:
    project.write_tasks(DIAMOND)
    result = project.mflow("validate")
    assert_exit(result, 0)
    assert "tasks.json" in result.stdout
    assert "OK" in result.stdout
    assert "4 tasks" in result.stdout
    assert "4 dependencies" in result.stdout
    assert project.nothing_recorded()


EDGES = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]


def test_graph_text(project: Project) -> None:
    project.write_tasks(DIAMOND)
    result = project.mflow("graph")
    assert_exit(result, 0)
    lines = result.stdout.splitlines()
    position = {
        task: next(i for i, line in enumerate(lines) if re.match(rf"\s*{task}\b", line))
        for task in "abcd"
    }
    for dep, task in EDGES:
        assert position[dep] < position[task], result.stdout
    d_line = lines[position["d"]]
    assert "b" in d_line.split("d", 1)[1] and "c" in d_line.split("d", 1)[1]
    assert project.nothing_recorded()


def test_graph_dot(project: Project) -> None:
    project.write_tasks(DIAMOND)
    result = project.mflow("graph", "--format", "dot")
    assert_exit(result, 0)
    assert result.stdout.lstrip().startswith("digraph")
    edges = set(re.findall(r'"?(\w+)"?\s*->\s*"?(\w+)"?', result.stdout))
    assert edges == set(EDGES)


def test_graph_mermaid(project: Project) -> None:
    project.write_tasks(DIAMOND)
    result = project.mflow("graph", "--format", "mermaid")
    assert_exit(result, 0)
    assert re.match(r"(flowchart|graph) ", result.stdout.lstrip())
    # nodes may be given ids with the task id as label: map them back
    labels = dict(re.findall(r'(\w+)\["?([^"\]]+)"?\]', result.stdout))
    edges = {
        (labels.get(a, a), labels.get(b, b))
        for a, b in re.findall(r"(\w+)\s*-->\s*(\w+)", result.stdout)
    }
    assert edges == set(EDGES)


def test_graph_of_invalid_file_exits_2(project: Project) -> None:
    project.write_tasks([bash("a", "true", "b"), bash("b", "true", "a")])
    result = project.mflow("graph", "--format", "dot")
    assert_exit(result, 2)
    assert "dependency cycle" in result.stderr


# -- runs, status, logs ---------------------------------------------------------------------


def test_runs_json(history: Project) -> None:
    result = history.mflow("runs", "--json")
    assert_exit(result, 0)
    rows = json.loads(result.stdout)
    assert [row["run_id"] for row in rows] == [2, 1]  # newest first
    assert [row["state"] for row in rows] == ["FAILED", "SUCCESS"]
    assert rows[1]["task_states"] == {"SUCCESS": 2}
    assert rows[0]["task_states"] == {"SUCCESS": 2, "FAILED": 1, "UPSTREAM_FAILED": 1}


def test_runs_limit_and_state(history: Project) -> None:
    rows = json.loads(history.mflow("runs", "--json", "--limit", "1").stdout)
    assert [row["run_id"] for row in rows] == [2]
    rows = json.loads(history.mflow("runs", "--json", "--state", "SUCCESS").stdout)
    assert [row["run_id"] for row in rows] == [1]


def test_runs_text(history: Project) -> None:
    result = history.mflow("runs")
    assert_exit(result, 0)
    assert "SUCCESS" in result.stdout and "FAILED" in result.stdout


def test_status_json_of_successful_run(history: Project) -> None:
    data = history.status(1)
    assert data["run_id"] == 1
    assert data["state"] == "SUCCESS"
    assert data["task_states"] == {"SUCCESS": 2}
    tasks = {task["task_id"]: task for task in data["tasks"]}
    assert list(tasks) == ["hello", "quiet"]
    hello = tasks["hello"]
    assert hello["state"] == "SUCCESS"
    assert len(hello["attempts"]) == 1
    attempt = hello["attempts"][0]
    assert attempt["exit_code"] == 0
    assert Path(attempt["log_path"]).read_text() == "hello from task\nsecond line\n"
    assert Path(attempt["log_path"]) == history.task_log(1, "hello")


def test_status_json_of_failed_run(history: Project) -> None:
    data = history.status(2)
    assert data["state"] == "FAILED"
    tasks = {task["task_id"]: task for task in data["tasks"]}
    assert {t: task["state"] for t, task in tasks.items()} == {
        "a": "SUCCESS",
        "b": "FAILED",
        "c": "UPSTREAM_FAILED",
        "d": "SUCCESS",
    }
    assert [a["exit_code"] for a in tasks["b"]["attempts"]] == [3]
    assert tasks["c"]["attempts"] == []
    assert "b" in (tasks["c"]["message"] or "")


def test_status_text(history: Project) -> None:
    result = history.mflow("status", "2")
    assert_exit(result, 0)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[4:]}
    assert "UPSTREAM_FAILED" in rows["c"]
    # the failed task's log, the one the reader wants, beside its message
    assert rows["b"].split()[1:4] == ["FAILED", "1/1", "3"]
    assert rows["b"].endswith(f"exit code 3; log: {history.task_log(2, 'b')}")
    assert rows["d"].endswith(str(history.task_log(2, "d")))


def test_status_of_unknown_run(history: Project) -> None:
    result = history.mflow("status", "999", "--json")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert result.stdout == ""
    assert "Error:" in result.stderr and "999" in result.stderr


def test_status_before_any_run(project: Project) -> None:
    result = project.mflow("status", "1")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "1" in result.stderr


def test_logs_prints_task_output(history: Project) -> None:
    result = history.mflow("logs", "1", "hello")
    assert_exit(result, 0)
    assert result.stdout == "hello from task\nsecond line\n"
    result = history.mflow("logs", "2", "b")
    assert_exit(result, 0)
    assert result.stdout == "boom\n"


def test_logs_of_task_without_output(history: Project) -> None:
    result = history.mflow("logs", "1", "quiet")
    assert_exit(result, 0)
    assert_no_traceback(result)
    assert result.stdout == ""


def test_logs_of_task_that_never_ran(history: Project) -> None:
    result = history.mflow("logs", "2", "c")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "c" in result.stderr


def test_logs_of_unknown_run(history: Project) -> None:
    result = history.mflow("logs", "999", "a")
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "999" in result.stderr


def test_logs_of_each_attempt(project: Project) -> None:
    flaky = "if [ -e tried ]; then echo second try; else touch tried; echo first try; exit 1; fi"
    project.write_tasks([bash("flaky", flaky, retries=1, retry_delay=0)])
    project.run_ok()
    data = project.status(1)
    attempts = data["tasks"][0]["attempts"]
    assert [(a["attempt"], a["state"], a["exit_code"]) for a in attempts] == [
        (1, "FAILED", 1),
        (2, "SUCCESS", 0),
    ]
    assert attempts[0]["log_path"] != attempts[1]["log_path"]
    assert project.mflow("logs", "1", "flaky").stdout == "second try\n"
    assert project.mflow("logs", "1", "flaky", "--attempt", "1").stdout == "first try\n"
    assert project.mflow("logs", "1", "flaky", "--attempt", "2").stdout == "second try\n"
    missing = project.mflow("logs", "1", "flaky", "--attempt", "3")
    assert_exit(missing, 2)
    assert_no_traceback(missing)


def test_logs_follow_until_task_ends(project: Project) -> None:
    project.write_tasks(
        [bash("slow", "echo one; while [ ! -e go ]; do sleep 0.02; done; echo two")]
    )
    run = project.start("run")
    wait_for(
        lambda: project.db_when_ready("SELECT 1 FROM mf_attempts WHERE task_id = 'slow'"),
        what="the attempt row",
    )
    wait_for(lambda: project.task_log(1, "slow").exists(), what="the task log")
    follow = project.start("logs", "1", "slow", "-f")
    wait_for(lambda: "one" in follow.output(), what="`logs -f` to print the first line")
    assert follow.popen.poll() is None, "logs -f ended while the task was still running"
    (project.root / "go").touch()
    assert_exit(run.wait(), 0)
    result = follow.wait(timeout=20)
    assert_exit(result, 0)
    assert result.stdout == "one\ntwo\n"


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_output_to_a_file_shows_a_running_task(project: Project, unbuffered: str) -> None:
    """Run lines are written in batches, not one system call each, but a task that is still
    running shows in the output (`tail -f` of a cron log), PYTHONUNBUFFERED or not."""
    project.write_tasks(
        [bash("first", "true"), bash("slow", "while [ ! -e go ]; do sleep 0.02; done", "first")]
    )
    run = project.start("run", env={"PYTHONUNBUFFERED": unbuffered})
    wait_for(lambda: re.search(r"RUNNING +slow", run.output()), what="slow's RUNNING line")
    assert re.search(r"SUCCESS +first", run.output())
    assert run.popen.poll() is None, "the run ended before its slow task was released"
    (project.root / "go").touch()
    result = run.wait()
    assert_exit(result, 0)
    assert result.stdout.rstrip().splitlines()[-1].startswith("run 1 SUCCESS")


# -- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["run"], ["validate"], ["graph"], ["runs"], ["status"], ["logs"]]
)
def test_help(project: Project, command: list[str]) -> None:
    result = project.mflow(*command, "--help")
    assert_exit(result, 0)
    assert "Usage:" in result.stdout
    assert project.nothing_recorded()


def test_read_commands_outside_a_project_create_nothing(tmp_path: Path) -> None:
    empty = Project(tmp_path)  # no config.json, no logs
    runs = empty.mflow("runs")
    assert_exit(runs, 0)
    assert "no runs recorded yet" in runs.stderr and "no state database" in runs.stderr
    status = empty.mflow("status", "4")
    assert_exit(status, 2)
    assert "no run 4" in status.stderr
    assert not (tmp_path / "logs").exists()


def test_runs_state_filter_is_checked_and_says_what_it_filtered(history: Project) -> None:
    bogus = history.mflow("runs", "--state", "bogus")
    assert_exit(bogus, 2)
    assert "bogus" in bogus.stderr and "success" in bogus.stderr.lower()
    none = history.mflow("runs", "--state", "cancelled")
    assert_exit(none, 0)
    assert none.stdout.strip() == "no runs in state CANCELLED"


def test_logs_of_a_task_the_run_does_not_have(history: Project) -> None:
    result = history.mflow("logs", "1", "nosuch")
    assert_exit(result, 2)
    assert "run 1 has no task 'nosuch'" in result.stderr


def test_logs_follow_waits_for_a_task_that_has_not_started(project: Project) -> None:
    project.write_tasks(
        [
            bash("first", "while [ ! -e go ]; do sleep 0.05; done"),
            bash("second", "echo from second", "first"),
        ]
    )
    bg = project.start("run")
    wait_for(lambda: project.db_when_ready("SELECT 1 FROM mf_runs"), what="the run row")
    follow = project.start("logs", "1", "second", "-f")
    (project.root / "go").touch()
    assert_exit(bg.wait(60), 0)
    result = follow.wait(60)
    assert_exit(result, 0)
    assert result.stdout == "from second\n"


def test_logs_follow_ends_when_the_runs_mflow_dies(project: Project) -> None:
    project.write_tasks(
        [
            bash("ticker", "while true; do echo tick; sleep 0.2; done"),
            bash("after", "echo never", "ticker"),
        ]
    )
    bg = project.start("run")
    wait_for(lambda: project.task_log(1, "ticker").exists(), what="the ticker's first line")
    following = project.start("logs", "1", "ticker", "-f")
    waiting = project.start("logs", "1", "after", "-f")  # for a task that will never start
    time.sleep(0.5)
    os.kill(bg.pid, signal.SIGKILL)
    bg.popen.wait()
    ended = following.wait(15)  # it used to follow for ever
    assert_exit(ended, 0)
    assert ended.stdout.startswith("tick\n")
    never = waiting.wait(15)
    assert_exit(never, 2)
    assert "task 'after' of run 1 did not start" in never.stderr
    assert project.task_states(1)["ticker"] == "INTERRUPTED"


def test_unknown_command_is_named(project: Project) -> None:
    result = project.mflow("statsu", "1")
    assert_exit(result, 2)
    assert "unknown command 'statsu' (did you mean 'status'?)" in result.stderr
