"""Runs that survive the night: retries, timeouts, signals, SIGKILL of mflow, resume,
partial runs, concurrent mflow processes on one database, and resume after random crashes."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from datetime import datetime

import pytest

from conftest import Project, assert_exit, bash, pids_with_arg, unique_token, wait_for
from mflow.errors import UsageError


def _attempts(project: Project, run_id: int, task_id: str) -> list[dict]:
    return project.db(
        "SELECT * FROM mf_attempts WHERE run_id = ? AND task_id = ? ORDER BY attempt",
        run_id,
        task_id,
    )


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# -- retries --------------------------------------------------------------------------------
FLAKY = 'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; echo "try $n"; [ "$n" -ge 2 ]'


def test_a_flaky_task_is_retried_with_backoff_and_every_attempt_is_kept(project: Project):
    project.write_tasks(
        [
            bash("flaky", FLAKY, retries=3, retry_delay=0.2, retry_backoff=2),
            bash("after", "echo after", "flaky"),
        ]
    )
    result = project.mflow("run")
    assert_exit(result, 0)
    run_id = project.last_run_id()
    rows = _attempts(project, run_id, "flaky")
    assert [(r["attempt"], r["state"], r["exit_code"]) for r in rows] == [
        (1, "FAILED", 1),
        (2, "FAILED", 1),
        (3, "SUCCESS", 0),
    ]
    # delay 0.2 s after attempt 1, then 0.4 s (backoff 2) after attempt 2
    assert _ts(rows[1]["started_at"]) - _ts(rows[0]["ended_at"]) >= 0.19
    assert _ts(rows[2]["started_at"]) - _ts(rows[1]["ended_at"]) >= 0.39
    logs = [
        project.log_dir / name
        for name in (
            f"master_{run_id}_task_flaky.log",
            f"master_{run_id}_task_flaky.attempt2.log",
            f"master_{run_id}_task_flaky.attempt3.log",
        )
    ]
    assert [log.read_text() for log in logs] == ["try 0\n", "try 1\n", "try 2\n"]
    assert "RETRYING        flaky  (attempt 1 of 4 failed: exit code 1)" in result.stdout
    assert "RETRYING" in (project.log_dir / "mflow.log").read_text()
    task = next(t for t in project.status(run_id)["tasks"] if t["task_id"] == "flaky")
    assert (task["state"], task["max_attempts"], len(task["attempts"])) == ("SUCCESS", 4, 3)
    assert "3/4" in project.mflow("status", str(run_id)).stdout


def test_default_retries_come_from_config_and_a_task_can_override_them(project: Project):
    project.write_config(default_retries=2, default_retry_delay=0)
    project.write_tasks([bash("always_fails", "exit 4"), bash("once", "exit 5", retries=0)])
    assert_exit(project.mflow("run"), 1)
    run_id = project.last_run_id()
    assert len(_attempts(project, run_id, "always_fails")) == 3
    assert len(_attempts(project, run_id, "once")) == 1
    assert project.task_states(run_id) == {"always_fails": "FAILED", "once": "FAILED"}


# -- timeouts -------------------------------------------------------------------------------
def test_a_timeout_stops_the_whole_process_group_and_is_recorded(project: Project):
    token = unique_token()
    project.write_tasks([bash("hangs", f"sleep {token} & sleep {token}; echo never", timeout=0.5)])
    started = time.monotonic()
    result = project.mflow("run")
    assert_exit(result, 1)
    assert time.monotonic() - started < 8
    run_id = project.last_run_id()
    (row,) = _attempts(project, run_id, "hangs")
    assert (row["state"], row["message"]) == ("FAILED", "timeout after 0.5 s")
    assert "timeout after 0.5 s" in result.stdout
    assert pids_with_arg(token) == []


def test_a_task_ignoring_sigterm_gets_sigkill_after_the_grace(project: Project):
    project.write_config(kill_grace=0.5)
    project.write_tasks(
        [
            bash(
                "stubborn",
                "trap 'echo TERM ignored' TERM; while true; do sleep 0.05; done",
                timeout=0.5,
                retries=1,
                retry_delay=0,
            )
        ]
    )
    started = time.monotonic()
    assert_exit(project.mflow("run"), 1)
    elapsed = time.monotonic() - started
    run_id = project.last_run_id()
    rows = _attempts(project, run_id, "stubborn")
    assert [r["message"] for r in rows] == ["timeout after 0.5 s"] * 2  # retried once
    assert elapsed < 8
    assert "TERM ignored" in project.task_log(run_id, "stubborn").read_text()


# -- signals to mflow ---------------------------------------------------------------------
@pytest.mark.parametrize("start", ["cold", "warm"])
def test_ctrl_c_while_mflow_loads_says_aborted(project: Project, start: str):
    project.write_tasks([bash("a", "touch ran")])
    env = {"MFLOW_FLOW_CACHE": "off"} if start == "cold" else {}
    if start == "warm":
        assert_exit(project.mflow("run"), 0)  # kept: the next start is warm
        (project.root / "ran").unlink()
    run = project.start("run", env=env)
    time.sleep(0.05)  # the interpreter is up, mflow still loading (a warm run needs 0.09 s)
    run.popen.send_signal(signal.SIGINT)
    result = run.wait()
    assert_exit(result, 130)
    assert result.stderr == "\nAborted.\n"  # after the ^C a terminal echoes
    assert not (project.root / "ran").exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_cancels_the_run_and_stops_running_tasks(project: Project, sig, code):
    project.write_tasks(
        [
            bash(
                "running",
                "trap 'echo stopped > stopped; exit 3' TERM; touch started; "
                "while true; do sleep 0.05; done",
            ),
            bash("waiting", "echo never", "running"),
        ]
    )
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="task start")
    os.kill(bg.pid, sig)
    result = bg.wait(30)
    assert_exit(result, code)
    assert (project.root / "stopped").read_text() == "stopped\n"
    run_id = project.last_run_id()
    assert project.task_states(run_id) == {"running": "CANCELLED", "waiting": "CANCELLED"}
    assert (
        project.db("SELECT state FROM mf_runs WHERE run_id = ?", run_id)[0]["state"] == "CANCELLED"
    )
    assert _attempts(project, run_id, "running")[0]["state"] == "CANCELLED"


def test_a_retry_waiting_for_a_free_slot_is_cancelled_with_the_run(project: Project):
    """One slot: `flaky` fails, its retry is due while `busy` holds the slot, so it waits
    as RETRYING. Cancelling the run then cancels it too, rather than leaving it RETRYING."""
    project.write_config(max_process_concurrency=1)
    project.write_tasks(
        [
            bash("flaky", "exit 1", retries=1, retry_delay=0),
            bash("busy", "touch started; while true; do sleep 0.05; done"),
        ]
    )
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the busy task's start")
    wait_for(
        lambda: (
            project.db_when_ready("SELECT state FROM mf_tasks WHERE task_id = 'flaky'")
            == [{"state": "RETRYING"}]
        ),
        what="the retry to be recorded",
    )
    os.kill(bg.pid, signal.SIGTERM)
    assert_exit(bg.wait(30), 143)
    assert project.task_states(project.last_run_id()) == {
        "flaky": "CANCELLED",
        "busy": "CANCELLED",
    }


def test_a_second_ctrl_c_kills_at_once(project: Project):
    project.write_config(kill_grace=60)
    project.write_tasks(
        [bash("stubborn", "trap '' TERM; touch started; while true; do sleep 0.05; done")]
    )
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="task start")
    os.kill(bg.pid, signal.SIGINT)
    time.sleep(0.3)
    assert bg.popen.poll() is None  # still in its 60 s grace
    started = time.monotonic()
    os.kill(bg.pid, signal.SIGINT)
    result = bg.wait(30)
    assert time.monotonic() - started < 10
    assert_exit(result, 130)
    assert project.task_states(project.last_run_id()) == {"stubborn": "CANCELLED"}


def test_sighup_rereads_the_config_file(project: Project):
    project.add_concurrency_script()
    project.write_config(max_process_concurrency=1, check_new_config_interval=3600)
    project.write_tasks([bash(f"t{i}", f"bash conc.sh 0.4 t{i}") for i in range(6)])
    bg = project.start("run")
    wait_for(lambda: (project.root / "conc.starts").exists(), what="first task")
    project.write_config(max_process_concurrency=3, check_new_config_interval=3600)
    os.kill(bg.pid, signal.SIGHUP)
    assert_exit(bg.wait(60), 0)
    assert project.max_concurrency() >= 2


# -- mflow killed with SIGKILL --------------------------------------------------------------
def test_sigkill_of_mflow_leaves_no_task_running_and_the_run_is_marked_interrupted(
    project: Project,
):
    token = unique_token()
    project.write_tasks(
        [
            bash("quick", "echo ok"),
            bash("long", f"touch started; sleep {token} & sleep {token}", "quick"),
            bash("next", "echo never", "long"),
        ]
    )
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="task start")
    wait_for(lambda: len(pids_with_arg(token)) == 2, what="both sleeps")
    # State is written in batches a few times a second: wait until the start is recorded.
    wait_for(
        lambda: project.db_when_ready(
            "SELECT 1 FROM mf_attempts WHERE task_id = 'long' AND state = 'RUNNING'"
        ),
        what="the attempt recorded RUNNING",
    )
    os.kill(bg.pid, signal.SIGKILL)
    bg.popen.wait()
    wait_for(lambda: pids_with_arg(token) == [], timeout=10, what="task processes to die")
    result = project.mflow("runs", "--json")
    assert_exit(result, 0)
    (run,) = json.loads(result.stdout)
    assert run["state"] == "INTERRUPTED"
    assert project.task_states(run["run_id"])["long"] == "INTERRUPTED"
    pending = project.db("SELECT state, message FROM mf_tasks WHERE task_id = 'next'")
    assert pending == [
        {"state": "PENDING", "message": "not started: the mflow running the flow died"}
    ]
    assert _attempts(project, run["run_id"], "long")[0]["state"] == "INTERRUPTED"


def test_a_killed_run_is_recorded_as_lasting_about_as_long_as_it_did(project: Project):
    # its end is its last heartbeat: the last moment it was known to be alive
    project.write_tasks([bash("long", "touch started; sleep 30")])
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="task start")
    started = time.monotonic()
    time.sleep(3)
    os.kill(bg.pid, signal.SIGKILL)
    lived = time.monotonic() - started
    bg.popen.wait()
    (run,) = json.loads(project.mflow("runs", "--json").stdout)
    assert run["state"] == "INTERRUPTED"
    assert lived - 1.5 <= run["duration_s"] <= lived + 1.0, (run["duration_s"], lived)


# -- resume ---------------------------------------------------------------------------------
def test_resume_runs_exactly_what_did_not_succeed(project: Project):
    project.write_tasks(
        [
            bash("extract", "echo extract >> ran"),
            bash("load", "echo load >> ran; test -e fixed", "extract"),
            bash("report", "echo report >> ran", "load"),
            bash("side", "echo side >> ran"),
        ]
    )
    assert_exit(project.mflow("run"), 1)
    first = project.last_run_id()
    assert project.task_states(first) == {
        "extract": "SUCCESS",
        "load": "FAILED",
        "report": "UPSTREAM_FAILED",
        "side": "SUCCESS",
    }
    (project.root / "fixed").touch()
    (project.root / "ran").unlink()
    result = project.mflow("resume", str(first))
    assert_exit(result, 0)
    second = project.last_run_id()
    assert sorted((project.root / "ran").read_text().split()) == ["load", "report"]
    assert project.task_states(second) == {
        "extract": "SKIPPED",
        "load": "SUCCESS",
        "report": "SUCCESS",
        "side": "SKIPPED",
    }
    assert (
        project.db("SELECT resumed_from FROM mf_runs WHERE run_id = ?", second)[0]["resumed_from"]
        == first
    )
    # the resumed run keeps its history
    assert project.task_states(first)["load"] == "FAILED"
    assert _attempts(project, first, "load")[0]["state"] == "FAILED"
    # run --resume is the same command; nothing left to do now
    again = project.mflow("run", "--resume", str(second))
    assert_exit(again, 0)
    assert "nothing to resume" in again.stdout


def test_a_run_is_resumed_once_at_a_time_and_once_done_is_left_alone(project: Project):
    project.write_tasks([bash("a", "test -e fixed && sleep 2 && echo ran >> ran.txt")])
    assert_exit(project.mflow("run"), 1)
    (project.root / "fixed").touch()
    first = project.start("resume", "1")
    wait_for(lambda: project.db_when_ready("SELECT 1 FROM mf_runs WHERE run_id = 2"))
    second = project.mflow("resume", "1")  # a double click, a cron job fired twice
    assert_exit(second, 2)
    assert "run 1 is being resumed by run 2" in second.stderr
    assert_exit(first.wait(), 0)
    third = project.mflow("resume", "1")
    assert_exit(third, 0)
    assert "run 1 was resumed by run 2, which succeeded; nothing to resume" in third.stdout
    assert (project.root / "ran.txt").read_text() == "ran\n"  # once
    assert project.last_run_id() == 2
    forced = project.mflow("resume", "1", "--force")
    assert_exit(forced, 0)
    assert (project.root / "ran.txt").read_text() == "ran\nran\n"


def test_of_two_resumes_planned_together_the_later_gives_way(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    """Both plans were made before either resume was recorded (a double click): the one
    recorded second runs nothing, leaves no run behind, and a later resume has nothing to do,
    also when the first one has already ended."""
    from mflow.runner import execute, prepare_resume

    project.write_tasks([bash("a", "test -e fixed && echo ran >> ran.txt")])
    assert_exit(project.mflow("run"), 1)
    (project.root / "fixed").touch()
    monkeypatch.chdir(project.root)  # execute() moves to the flow's folder
    config = project.root / "config.json"
    first = prepare_resume(1, config, None, None, force=False)
    second = prepare_resume(1, config, None, None, force=False)
    assert first[1].resumes_seen == second[1].resumes_seen == 0

    def resume(inputs, plan):
        return execute(
            inputs,
            selected=plan.task_ids,
            skipped=plan.skipped,
            resumed_from=1,
            resume_after=plan.resumes_seen,
            live=False,
        )

    assert resume(*first).outcome.state == "SUCCESS"
    with pytest.raises(UsageError, match="run 1 is resumed by run 2, started a moment before"):
        resume(*second)
    assert [r["run_id"] for r in project.db("SELECT run_id FROM mf_runs")] == [1, 2]
    assert (project.root / "ran.txt").read_text() == "ran\n"  # once
    again = project.mflow("resume", "1")
    assert_exit(again, 0)
    assert "nothing to resume" in again.stdout


def test_resume_refuses_when_the_task_file_changed_unless_forced(project: Project):
    project.write_tasks([bash("a", "true"), bash("b", "exit 1", "a"), bash("c", "true", "b")])
    assert_exit(project.mflow("run"), 1)
    run_id = project.last_run_id()
    project.write_tasks([bash("a", "true"), bash("b", "true")])  # c removed, b's depends changed
    refused = project.mflow("resume", str(run_id))
    assert_exit(refused, 2)
    assert "task 'c' was removed from the task file" in refused.stderr
    assert "task 'b': depends changed from ['a'] to []" in refused.stderr
    assert "--force" in refused.stderr
    assert project.last_run_id() == run_id  # nothing recorded
    forced = project.mflow("resume", str(run_id), "--force")
    assert_exit(forced, 0)
    assert project.task_states(project.last_run_id()) == {"a": "SKIPPED", "b": "SUCCESS"}


def test_resume_after_the_flow_moved_says_which_files_to_name(project: Project):
    project.write_tasks([bash("a", "test -e fixed")])
    assert_exit(project.mflow("run"), 1)
    home = project.root
    moved = home.with_name(home.name + "-moved")
    home.rename(moved)
    project.root = moved
    try:
        result = project.mflow("resume", "1")
        assert_exit(result, 2)
        assert f"run 1's config file {home}/config.json is not there any more" in result.stderr
        assert "(moved?); give --config where it is now and --taskfile" in result.stderr
        (moved / "fixed").touch()
        named = project.mflow("resume", "1", "--config", "config.json", "--taskfile", "tasks.json")
        assert_exit(named, 0)
    finally:
        moved.rename(home)
        project.root = home


def test_resume_of_an_unknown_run_is_a_clear_error(project: Project):
    project.write_tasks([bash("a", "true")])
    result = project.mflow("resume", "99")
    assert_exit(result, 2)
    assert "no run 99" in result.stderr


# -- partial runs ---------------------------------------------------------------------------
def test_from_runs_a_task_and_its_descendants_only(project: Project):
    project.write_tasks(
        [
            bash("a", "echo a >> ran"),
            bash("b", "echo b >> ran", "a"),
            bash("c", "echo c >> ran", "b"),
            bash("d", "echo d >> ran", "a"),
        ]
    )
    assert_exit(project.mflow("run", "--from", "b"), 0)
    assert (project.root / "ran").read_text().split() == ["b", "c"]
    assert set(project.task_states(project.last_run_id())) == {"b", "c"}


def test_only_runs_the_named_tasks_in_dependency_order(project: Project):
    project.write_tasks(
        [
            bash("a", "echo a >> ran"),
            bash("b", "echo b >> ran", "a"),
            bash("c", "echo c >> ran", "b"),
        ]
    )
    assert_exit(project.mflow("run", "--only", "b,a"), 0)
    assert (project.root / "ran").read_text().split() == ["a", "b"]  # b waits for a; no c
    bad = project.mflow("run", "--only", "a,zz")
    assert_exit(bad, 2)
    assert "--only: no task 'zz'" in bad.stderr


# -- many mflow processes on one database ---------------------------------------------------
def test_eight_mflow_processes_share_one_sqlite_database(project: Project):
    for n in range(8):
        project.write_tasks(
            [bash(f"t{i}", f"echo {n}-{i}") for i in range(25)], name=f"flow{n}.json"
        )
    runs = [project.start("run", "--taskfile", f"flow{n}.json") for n in range(8)]
    results = [bg.wait(120) for bg in runs]
    for result in results:
        assert_exit(result, 0)
        assert "locked" not in result.stderr + result.stdout
    rows = project.db("SELECT run_id, state, flow_path FROM mf_runs")
    assert len(rows) == 8 and {r["state"] for r in rows} == {"SUCCESS"}
    for row in rows:
        n = int(row["flow_path"].rsplit("flow", 1)[1].split(".")[0])
        attempts = project.db(
            "SELECT task_id, state FROM mf_attempts WHERE run_id = ?", row["run_id"]
        )
        assert sorted(a["task_id"] for a in attempts) == sorted(f"t{i}" for i in range(25))
        assert {a["state"] for a in attempts} == {"SUCCESS"}
        assert project.task_log(row["run_id"], "t7").read_text() == f"{n}-7\n"


# -- durability -----------------------------------------------------------------------------
@pytest.mark.slow
def test_resume_after_random_sigkills_completes_the_flow(project: Project):
    """Kill mflow at random moments of a 50-task run, resume each time, until SUCCESS."""
    token = unique_token()
    project.write_config(max_process_concurrency=4)
    tasks = []
    for i in range(50):
        deps = [f"t{i - 1}"] if i % 5 else []  # ten chains of five
        tasks.append(
            bash(
                f"t{i}",
                f"sleep 0.{1 + i % 3}; sleep {token}.{i} 2>/dev/null || true; "
                f"echo t{i} >> done.txt",
                *deps,
            )
        )
    # `sleep <token>.<i>` fails at once (bad number), but is findable while it lives
    project.write_tasks(tasks)
    rng = random.Random(20261126)
    bg = project.start("run")
    first_run = None
    kills = 0
    for _ in range(12):
        time.sleep(rng.uniform(0.3, 1.2))
        if bg.popen.poll() is not None:
            break
        os.kill(bg.pid, signal.SIGKILL)
        bg.popen.wait()
        kills += 1
        runs = json.loads(project.mflow("runs", "--json", "--limit", "1").stdout)
        if not runs:  # killed before the run was recorded: start again
            bg = project.start("run")
            continue
        first_run = first_run or runs[0]["run_id"]
        assert runs[0]["state"] == "INTERRUPTED"
        bg = project.start("resume", str(runs[0]["run_id"]))
    result = bg.wait(120)
    assert_exit(result, 0)
    assert kills >= 2, "the loop should have killed mflow mid-run at least twice"
    done = (project.root / "done.txt").read_text().split()
    assert set(done) == {f"t{i}" for i in range(50)}  # each at least once
    assert pids_with_arg(token) == []
    runs = project.db("SELECT run_id, state FROM mf_runs ORDER BY run_id")
    assert runs[-1]["state"] == "SUCCESS"
    assert all(r["state"] in ("INTERRUPTED", "SUCCESS") for r in runs), runs
    assert project.db("SELECT * FROM mf_attempts WHERE state = 'RUNNING'") == []
    final = project.task_states(runs[-1]["run_id"])
    assert set(final.values()) <= {"SUCCESS", "SKIPPED"} and len(final) == 50


def test_resume_runs_tasks_added_to_a_whole_flow_run_and_names_where_skipped_ones_ran(
    project: Project,
):
    project.write_tasks([bash("a", "echo a"), bash("b", "exit 1", "a")])
    assert_exit(project.mflow("run"), 1)
    first = project.last_run_id()
    project.write_tasks([bash("a", "echo a"), bash("b", "true", "a"), bash("c", "echo new", "b")])
    result = project.mflow("resume", str(first))
    assert_exit(result, 0)
    assert "new since run 1, so run now: c" in result.stderr
    second = project.last_run_id()
    assert project.task_states(second) == {"a": "SKIPPED", "b": "SUCCESS", "c": "SUCCESS"}
    skipped = project.mflow("logs", str(second), "a")
    assert_exit(skipped, 2)
    assert f"succeeded in run {first}" in skipped.stderr


def test_a_partial_run_says_what_it_takes_as_done_and_resumes_as_partial(project: Project):
    project.write_tasks([bash("a", "echo a"), bash("b", "exit 1", "a"), bash("c", "true")])
    result = project.mflow("run", "--only", "b")
    assert_exit(result, 1)
    assert "--only: not run, taken as done: a" in result.stderr
    first = project.last_run_id()
    assert project.db("SELECT scope FROM mf_runs WHERE run_id = ?", first)[0]["scope"] == "--only b"
    project.write_tasks([bash("a", "echo a"), bash("b", "true", "a"), bash("c", "true")])
    resumed = project.mflow("resume", str(first))
    assert_exit(resumed, 0)
    assert "not part of run 1 (--only b), so not run: a, c" in resumed.stderr
    assert project.task_states(project.last_run_id()) == {"b": "SUCCESS"}
