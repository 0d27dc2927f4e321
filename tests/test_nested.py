"""`mflow` tasks: the original's "parent flow whose tasks are other flows", as a task type.
Real child `mflow run` processes, real signals, one SQLite state database."""

from __future__ import annotations

import json
import os
import signal

from conftest import (
    Project,
    assert_exit,
    assert_no_traceback,
    bash,
    pids_with_arg,
    problems,
    unique_token,
    wait_for,
)


def nested(task_id: str, taskfile: str, *depends: str, **extra: object) -> dict[str, object]:
    task: dict[str, object] = {"id": task_id, "type": "mflow", "taskfile": taskfile}
    if depends:
        task["depends"] = list(depends)
    task.update(extra)
    return task


def _runs(project: Project) -> dict[int, dict]:
    rows = project.db("SELECT * FROM mf_runs ORDER BY run_id")
    return {row["run_id"]: row for row in rows}


def test_a_parent_flow_runs_child_flows_recorded_as_linked_child_runs(project: Project):
    project.write_tasks([bash("load", "echo loaded > loaded.txt")], name="flows/load.json")
    project.write_tasks(
        [bash("a", "echo A"), bash("b", "cat loaded.txt", "a")], name="flows/report.json"
    )
    project.write_tasks(
        [
            nested("load", "flows/load.json"),
            nested("report", "flows/report.json", "load"),
            bash("done", "echo all done", "report"),
        ]
    )
    result = project.run_ok()
    parent_id = int(result.stdout.split(":")[0].split()[1])
    runs = _runs(project)
    children = [run for run in runs.values() if run["parent_run_id"] == parent_id]
    assert [(c["parent_task_id"], c["parent_attempt"], c["state"]) for c in children] == [
        ("load", 1, "SUCCESS"),
        ("report", 1, "SUCCESS"),
    ]
    assert children[1]["flow_path"].endswith("flows/report.json")
    # each child's tasks run in its own task file's folder
    report_run = children[1]["run_id"]
    assert project.task_log(report_run, "b").read_text() == "loaded\n"
    # the attempt records which run it started
    status = project.status(parent_id)
    report = next(t for t in status["tasks"] if t["task_id"] == "report")
    assert report["attempts"][0]["details"] == {"nested_run_id": report_run}
    assert [r["run_id"] for r in report["nested_runs"]] == [report_run]
    assert [t["task_id"] for t in report["nested_runs"][0]["tasks"]] == ["a", "b"]
    # `status` shows the tree: the child's tasks under the parent task
    text = project.mflow("status", str(parent_id)).stdout
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("report "))
    assert lines[at + 1].split()[:3] == [">", "run", str(report_run)]
    assert lines[at + 2].startswith("    a ") and lines[at + 3].startswith("    b ")
    # `runs` says which runs are nested, and in what
    listing = project.mflow("runs").stdout
    assert f"(nested: run {parent_id}, task report)" in listing


def test_a_failing_child_fails_the_task_with_its_reason_and_resume_resumes_the_child(
    project: Project,
):
    project.write_tasks(
        [
            bash("first", "echo once >> first.count"),
            bash("flaky", "test -e fixed", "first"),
            bash("last", "echo last", "flaky"),
        ],
        name="child.json",
    )
    project.write_tasks([nested("child", "child.json"), bash("after", "echo after", "child")])
    result = project.mflow("run")
    assert_exit(result, 1)
    parent = project.last_run_id() - 1  # the child's run came after the parent's
    assert project.task_states(parent) == {"child": "FAILED", "after": "UPSTREAM_FAILED"}
    message = project.db(
        "SELECT message FROM mf_tasks WHERE run_id = ? AND task_id = 'child'", parent
    )
    assert message[0]["message"] == f"nested run {parent + 1} FAILED; failed: flaky"

    (project.root / "fixed").touch()
    result = project.mflow("resume", str(parent))
    assert_exit(result, 0)
    runs = _runs(project)
    resumed_child = max(runs)
    assert runs[resumed_child]["resumed_from"] == parent + 1  # the child run is resumed...
    assert runs[resumed_child]["parent_run_id"] == parent + 2  # ...by the parent's resume
    assert project.task_states(resumed_child) == {
        "first": "SKIPPED",
        "flaky": "SUCCESS",
        "last": "SUCCESS",
    }
    assert (project.root / "first.count").read_text() == "once\n"  # not run again


def test_a_child_whose_file_broke_after_validation_says_what_is_wrong(project: Project):
    project.write_tasks([bash("c1", "true")], name="child.json")
    project.write_tasks(
        [
            bash("breaker", "printf '{\"tasks\": [' > child.json"),  # valid when checked
            nested("child", "child.json", "breaker"),
        ]
    )
    assert_exit(project.mflow("run"), 1)
    message = project.db("SELECT message FROM mf_tasks WHERE task_id = 'child'")[0]["message"]
    assert message.startswith("nested flow: ")
    assert "child.json:1:12: malformed JSON" in message, message
    assert message.endswith("(1 problem found; nothing was run)")


def test_a_retry_of_the_task_resumes_the_child_instead_of_starting_over(project: Project):
    project.write_tasks(
        [
            bash("expensive", "echo run >> expensive.count"),
            # fails the first time only
            bash("flaky", "test -e tried || { touch tried; exit 1; }", "expensive"),
        ],
        name="child.json",
    )
    project.write_tasks([nested("child", "child.json", retries=1, retry_delay=0)])
    project.run_ok()
    assert (project.root / "expensive.count").read_text() == "run\n"
    parent = min(_runs(project))
    attempts = project.db(
        "SELECT attempt, state, details FROM mf_attempts WHERE run_id = ? ORDER BY attempt", parent
    )
    assert [a["state"] for a in attempts] == ["FAILED", "SUCCESS"]
    first, second = (json.loads(a["details"])["nested_run_id"] for a in attempts)
    assert _runs(project)[second]["resumed_from"] == first
    assert _runs(project)[second]["parent_attempt"] == 2


def test_a_timeout_of_the_task_cancels_the_childs_tasks(project: Project):
    token = unique_token()
    project.write_tasks(
        [bash("long", f"trap 'echo stopped > stopped; exit 3' TERM; sleep {token} & wait")],
        name="child.json",
    )
    project.write_tasks([nested("child", "child.json", timeout=3)])
    result = project.mflow("run")  # the child's sleep lasts 1000 s: ending means stopped
    assert_exit(result, 1)
    assert pids_with_arg(token) == [] or wait_for(
        lambda: pids_with_arg(token) == [], timeout=10, what="the child's task to end"
    )
    runs = _runs(project)
    parent, child = sorted(runs)
    assert project.db("SELECT message FROM mf_tasks WHERE run_id = ?", parent)[0]["message"] == (
        "timeout after 3 s"
    )
    assert runs[child]["state"] == "CANCELLED"
    assert project.task_states(child) == {"long": "CANCELLED"}
    assert (project.root / "stopped").read_text() == "stopped\n"


def test_ctrl_c_on_the_parent_cancels_the_child_run(project: Project):
    token = unique_token()
    project.write_tasks([bash("long", f"touch started; sleep {token}")], name="child.json")
    project.write_tasks([nested("child", "child.json")])
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the child's task to start")
    os.kill(bg.pid, signal.SIGINT)
    assert_exit(bg.wait(30), 130)
    wait_for(lambda: pids_with_arg(token) == [], timeout=10, what="the child's task to end")
    runs = _runs(project)
    assert [run["state"] for run in runs.values()] == ["CANCELLED", "CANCELLED"]


def test_a_child_mflow_killed_says_so_in_the_parents_task(project: Project):
    project.write_tasks([bash("long", "touch started; sleep 30")], name="child.json")
    project.write_tasks([nested("child", "child.json")])
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the child's task")
    wait_for(lambda: project.db_when_ready("SELECT pid FROM mf_runs WHERE run_id = 2"))
    os.kill(project.db("SELECT pid FROM mf_runs WHERE run_id = 2")[0]["pid"], signal.SIGKILL)
    assert_exit(bg.wait(), 1)
    message = project.db("SELECT message FROM mf_tasks WHERE run_id = 1")[0]["message"]
    assert message.startswith("nested run 2 stopped before its end: "), message
    assert "SIGKILL" in message or "signal 9" in message, message


def test_a_parent_resumes_past_a_child_that_was_finished_on_its_own(project: Project):
    project.write_tasks([bash("c1", "test -e fixed")], name="child.json")
    project.write_tasks([nested("sub", "child.json"), bash("post", "true", "sub")])
    assert_exit(project.mflow("run"), 1)  # parent run 1, child run 2: FAILED
    (project.root / "fixed").touch()
    assert_exit(project.mflow("resume", "2"), 0)  # the child, resumed on its own: run 3
    resumed = project.mflow("resume", "1")
    assert_exit(resumed, 0)
    assert project.task_states(project.last_run_id()) == {"sub": "SUCCESS", "post": "SUCCESS"}


def test_nesting_deeper_than_the_limit_is_refused_by_validate(project: Project):
    for level in range(23):
        last = level == 22
        task = bash("t", "true") if last else nested("n", f"f{level + 1}.json")
        project.write_tasks([task], name=f"f{level}.json")
    result = project.mflow("validate", "--taskfile", "f0.json")
    assert_exit(result, 2)
    assert "nested flows deeper than 20 levels" in result.stderr
    assert "starts itself" not in result.stderr


def test_sigkill_of_the_parent_leaves_no_child_task_running(project: Project):
    token = unique_token()
    project.write_tasks([bash("long", f"touch started; sleep {token}")], name="child.json")
    project.write_tasks([nested("child", "child.json")])
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the child's task to start")
    wait_for(lambda: pids_with_arg(token), what="the sleep")
    os.kill(bg.pid, signal.SIGKILL)
    bg.popen.wait()
    wait_for(lambda: pids_with_arg(token) == [], timeout=10, what="the child's task to die")
    result = project.mflow("runs", "--json")
    assert [run["state"] for run in json.loads(result.stdout)] == ["INTERRUPTED", "INTERRUPTED"]


def test_validate_checks_nested_flows_and_refuses_a_flow_that_starts_itself(project: Project):
    project.write_tasks('{"tasks": [{"id": "x", "type": "bash"}]}\n', name="broken.json")
    project.write_tasks(
        [nested("loop", "tasks.json"), nested("broken", "broken.json"), nested("gone", "no.json")]
    )
    result = project.mflow("validate")
    assert_exit(result, 2)
    assert_no_traceback(result)
    found = {p.line: p.text for p in problems(result.stderr)}
    assert "the nested flow starts itself" in found[3]
    assert "broken.json:1:" in found[4] and "'command'" in found[4]
    assert "no file at" in found[5] and "no.json" in found[5]
    assert project.nothing_recorded()


def test_a_nested_flow_may_use_the_variables_its_parent_passes_on(project: Project):
    project.write_config(env={"BASE": "/data"})
    project.write_config(name="child-config.json", env={"OUT": "${BASE}/out"})
    project.write_tasks([bash("say", "echo $OUT $DAY", env={"D": "${DAY}"})], name="child.json")
    task = nested("child", "child.json", config="child-config.json", env={"DAY": "monday"})
    project.write_tasks([task])
    assert_exit(project.mflow("validate"), 0)  # ${BASE}, ${DAY}: the parent passes them on
    project.run_ok()
    assert project.task_log(2, "say").read_text() == "/data/out monday\n"


def test_a_nested_flow_uses_its_own_config_but_records_in_the_parents_database(
    project: Project,
):
    project.write_config(
        name="child-config.json",
        env={"GREETING": "from the child config"},
        log_directory="./childlogs/",  # its own state database would be childlogs/mflow.db
    )
    project.write_tasks([bash("say", "echo $GREETING")], name="child.json")
    project.write_tasks([nested("child", "child.json", config="child-config.json")])
    project.run_ok()
    runs = _runs(project)
    parent, child = sorted(runs)
    assert runs[child]["parent_run_id"] == parent
    assert project.task_states(child) == {"say": "SUCCESS"}
    log = project.root / "childlogs" / f"master_{child}_task_say.log"
    assert log.read_text() == "from the child config\n"
    assert not (project.root / "childlogs" / "mflow.db").exists()
    tree = project.status(parent)["tasks"][0]["nested_runs"]
    assert [run["run_id"] for run in tree] == [child]
