"""Warm starts: a `run` of a flow checked before skips the check, and nothing else changes.

Whether a start was warm is seen through Python's own import report
(PYTHONPROFILEIMPORTTIME): a warm start loads neither pydantic nor click.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Project, Result, assert_exit, bash, problems, tasks_json, warnings


def run(project: Project, *args: str, env: dict[str, str] | None = None) -> Result:
    report = {"PYTHONPROFILEIMPORTTIME": "1", "XDG_CACHE_HOME": str(cache(project))}
    return project.mflow("run", *args, env={**report, **(env or {})})


def cache(project: Project) -> Path:
    return project.root.parent / f"{project.root.name}-cache"


def was_warm(result: Result) -> bool:
    loaded = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    return not any(name in ("pydantic", "click") for name in loaded)


def user_output(result: Result) -> str:
    """stderr without the import report."""
    return "\n".join(line for line in result.stderr.splitlines() if "import time:" not in line)


def digests(project: Project, run_id: int) -> dict[str, str]:
    rows = project.db("SELECT task_id, digest FROM mf_tasks WHERE run_id = ?", run_id)
    return {row["task_id"]: row["digest"] for row in rows}


def test_the_second_run_of_an_unchanged_flow_is_warm_and_records_the_same(project: Project):
    project.write_tasks([bash("a", "echo one > a.txt"), bash("b", "echo two", "a")])
    first, second = run(project), run(project)
    assert_exit(first, 0)
    assert_exit(second, 0)
    assert not was_warm(first) and was_warm(second)
    assert second.stdout.splitlines()[0] == "run 2: 2 tasks from " + str(
        project.root / "tasks.json"
    )
    assert project.task_states(2) == {"a": "SUCCESS", "b": "SUCCESS"}
    assert digests(project, 2) == digests(project, 1)
    assert project.task_log(2, "b").read_text() == "two\n"


def test_a_warm_run_resumes_like_any_other(project: Project):
    project.write_tasks([bash("a", "true"), bash("b", "test -e go", "a"), bash("c", "true", "b")])
    assert_exit(run(project), 1)
    warm = run(project)
    assert was_warm(warm)
    assert_exit(warm, 1)
    (project.root / "go").touch()
    resumed = project.mflow("resume", "2")
    assert_exit(resumed, 0)
    assert "changed" not in resumed.stderr  # the kept digests match the file's
    assert project.task_states(3) == {"a": "SKIPPED", "b": "SUCCESS", "c": "SUCCESS"}


def test_an_edited_task_file_is_checked_again(project: Project):
    project.write_tasks([bash("a", "echo old")])
    run(project)
    assert was_warm(run(project))
    project.write_tasks([bash("a", "echo new", "nope")])
    broken = run(project)
    assert_exit(broken, 2)
    assert [p.text for p in problems(broken.stderr)] == [
        "task 'a': key 'depends': depends on unknown task 'nope'"
    ]
    project.write_tasks([bash("a", "echo new")])
    fixed = run(project)
    assert_exit(fixed, 0)
    assert not was_warm(fixed)
    assert project.task_log(project.last_run_id(), "a").read_text() == "new\n"


def test_a_changed_variable_is_checked_again(project: Project):
    name = "MFLOW_TEST_WHO"  # set by this test alone
    assert name not in os.environ
    project.write_config(env={"GREETING": "${MFLOW_TEST_WHO}"})
    project.write_tasks([bash("a", 'echo "hello $GREETING"')])
    run(project, env={name: "ann"})
    assert was_warm(run(project, env={name: "ann"}))
    unset = run(project)
    assert_exit(unset, 2)
    assert "${MFLOW_TEST_WHO} is set neither in the environment" in unset.stderr
    other = run(project, env={name: "bob"})
    assert_exit(other, 0)
    assert not was_warm(other)
    assert project.task_log(project.last_run_id(), "a").read_text() == "hello bob\n"


def test_warnings_are_said_again_on_a_warm_start(project: Project):
    project.write_tasks([bash("a", "true", descripton="typo'd key")])
    first, second = run(project), run(project)
    assert was_warm(second)
    assert warnings(user_output(first)) == warnings(user_output(second))
    assert "descripton" in warnings(user_output(second))[0]


@pytest.mark.parametrize(
    "args",
    [["--dry-run"], ["--task", "a"], ["--only", "a"], ["--config", "config.json", "--force"]],
)
def test_other_command_lines_are_never_warm(project: Project, args: list[str]):
    project.write_tasks([bash("a", "true")])
    run(project, *args)
    assert not was_warm(run(project, *args))


def test_the_original_flags_start_warm(project: Project):
    project.write_tasks([bash("a", "true")])
    flags = ["-config", "config.json", "-taskfile=tasks.json"]
    run(project, *flags)
    second = run(project, *flags)
    assert_exit(second, 0)
    assert was_warm(second)


def test_flows_with_other_types_are_not_kept(project: Project):
    project.write_tasks(
        [
            bash("a", "true"),
            {"id": "b", "type": "http", "url": "http://127.0.0.1:9/", "depends": ["a"]},
        ]
    )
    run(project)
    assert not was_warm(run(project))
    assert not cache(project).exists() or not list(cache(project).iterdir())


def test_the_cache_can_be_turned_off(project: Project):
    project.write_tasks([bash("a", "true")])
    run(project)
    assert not was_warm(run(project, env={"MFLOW_FLOW_CACHE": "off"}))


def test_an_unusable_or_damaged_cache_costs_only_the_check(project: Project):
    project.write_tasks([bash("a", "true")])
    cache(project).write_text("not a folder")
    for _ in range(2):
        result = run(project)
        assert_exit(result, 0)
        assert not was_warm(result)
    cache(project).unlink()
    run(project)
    (kept,) = cache(project).joinpath("mflow").iterdir()
    kept.write_text('{"fingerprint": ' + json.dumps(json.loads(kept.read_text())["fingerprint"]))
    damaged = run(project)
    assert_exit(damaged, 0)
    assert not was_warm(damaged)
    kept.write_text(json.dumps({"fingerprint": json.loads(kept.read_text())["fingerprint"]}))
    missing_parts = run(project)
    assert_exit(missing_parts, 0)
    assert not was_warm(missing_parts)


def test_the_cache_holds_no_secret_and_is_the_users_alone(project: Project):
    project.write_config(env={"DB_PASSWORD": "${SECRET}"}, api_token="token-of-at-least-16-chars")
    project.write_tasks([bash("a", "test ${#DB_PASSWORD} = 12")])
    run(project, env={"SECRET": "s3cr3t-value"})
    warm = run(project, env={"SECRET": "s3cr3t-value"})
    assert was_warm(warm)
    assert_exit(warm, 0)  # the password (12 characters) still reaches the task
    (kept,) = cache(project).joinpath("mflow").iterdir()
    text = kept.read_text()
    assert "s3cr3t-value" not in text and "token-of-at-least" not in text
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700


def test_a_relative_cache_home_is_ignored_as_the_xdg_spec_says(project: Project):
    project.write_tasks([bash("a", "true")])
    home = project.root.parent / f"{project.root.name}-home"
    env = {"XDG_CACHE_HOME": "relative", "HOME": str(home), "PYTHONPROFILEIMPORTTIME": "1"}
    project.mflow("run", env=env)
    second = project.mflow("run", env=env)
    assert_exit(second, 0)
    assert was_warm(second)
    assert len(list((home / ".cache" / "mflow").iterdir())) == 1
    assert not (project.root / "relative").exists()


def test_a_switched_symlink_is_another_flow(project: Project):
    for version in ("v1", "v2"):
        folder = project.root / version
        folder.mkdir()
        (folder / "tasks.json").write_text(tasks_json([bash("a", f"echo {version}")]))
        (folder / "config.json").write_text("{}")
    current = project.root / "current"
    current.symlink_to("v1")
    args = ["--config", "current/config.json", "--taskfile", "current/tasks.json"]
    run(project, *args)
    assert was_warm(run(project, *args))
    current.unlink()
    current.symlink_to("v2")  # a release switched: the same bytes, another folder
    switched = run(project, *args)
    assert_exit(switched, 0)
    assert not was_warm(switched)
    assert (project.root / "v2" / "logs" / "master_1_task_a.log").read_text() == "v2\n"


def test_a_variable_written_with_escapes_is_never_kept(project: Project):
    name = "MFLOW_TEST_ESCAPED"
    assert name not in os.environ
    project.write_tasks(
        '{"tasks": [{"id": "a", "type": "bash", "command": "echo $X",'
        ' "env": {"X": "\\u0024{MFLOW_TEST_ESCAPED}"}}]}'
    )
    run(project, env={name: "set"})
    unset = run(project)
    assert_exit(unset, 2)  # checked again, so the unset variable is reported
    assert "${MFLOW_TEST_ESCAPED} is set neither" in unset.stderr


def test_a_pipe_in_place_of_an_input_file_is_reported_not_waited_on(project: Project):
    project.write_tasks([bash("a", "true")])
    os.mkfifo(project.root / "oracle.json")
    result = run(project)
    assert_exit(result, 2)
    assert "oracle.json" in result.stderr


def test_a_run_from_a_deleted_folder_still_runs(project: Project):
    project.write_tasks([bash("a", "true")])
    gone = project.root / "gone"
    gone.mkdir()
    args = [
        "--config",
        str(project.root / "config.json"),
        "--taskfile",
        str(project.root / "tasks.json"),
    ]
    code = (
        "import os, subprocess, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]);"
        "sys.exit(subprocess.run([sys.executable, '-m', 'mflow', 'run', *sys.argv[2:]]).returncode)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(gone), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_CACHE_HOME": str(cache(project))},
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_an_upgraded_checking_library_makes_the_flow_checked_again(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    """pydantic or PyYAML of another version may judge the files otherwise. A library is
    stood in for here by a package of our own, rewritten as an upgrade rewrites it."""
    from mflow import warmstart

    library = project.root / "lib" / "checker"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text("VERSION = '1.0'\n")
    monkeypatch.syspath_prepend(str(library.parent))
    monkeypatch.setattr(warmstart, "_CHECKING_LIBRARIES", ("checker",))
    project.write_tasks([bash("a", "true")])
    monkeypatch.chdir(project.root)
    before = warmstart.fingerprint({})
    assert warmstart.fingerprint({}) == before
    (library / "__init__.py").write_text("VERSION = '1.10'\n")
    assert warmstart.fingerprint({}) != before
