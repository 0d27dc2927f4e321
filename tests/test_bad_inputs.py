"""Hostile and broken inputs: each gets a clear error and the right exit code, never a
traceback; nothing is recorded for invalid files, and no output or state is silently lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from conftest import Project, assert_exit, assert_no_traceback, bash, problems, wait_for
from mflow.store.store import StateStore


def _invalid(project: Project, tasks, *words: str) -> str:
    if tasks is not None:
        project.write_tasks(tasks)
    result = project.mflow("run")
    assert_exit(result, 2)
    assert_no_traceback(result)
    for word in words:
        assert word in result.stderr, result
    assert project.nothing_recorded(), "an invalid file must leave nothing behind"
    return result.stderr


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ({"id": [1], "type": "bash", "command": "true"}, ["'id' must be a non-empty"]),
        ({"id": "x" * 300, "type": "bash", "command": "true"}, ["at most 200"]),
        (bash("a", "true", env=[{"key": ["A"], "value": "1"}]), ["entry #1"]),
        (bash("a", "true", env={"A=B": "1"}), ["not a usable variable name"]),
        (bash("a", "true", retries=10**30), ["retries"]),
        (bash("a", "true", retries=3, retry_backoff=1e200), ["retry_backoff"]),
        (bash("a", "true", retries="3"), ["valid integer"]),
        (bash("a", "ec\u0000ho"), ["NUL"]),
        ({"id": "a", "ID": "b", "type": "bash", "command": "true"}, ["given twice"]),
        ({"id": "a", "type": "bash", "command": "x", "Command": "y"}, ["given twice"]),
        ({"id": "a", "command": "true"}, ["key 'type'", "required key is missing"]),
        ({"id": "a", "type": 3, "command": "true"}, ["must be the name of a task type"]),
    ],
)
def test_bad_task_values_are_problems_not_crashes(project: Project, task, words):
    _invalid(project, [task], *words)


@pytest.mark.parametrize(
    ("task", "key"),
    [
        ({"id": "n", "type": "mflow", "taskfile": "child\u0000.json"}, "taskfile"),
        ({"id": "n", "type": "mflow", "taskfile": "c.json", "config": "a\u0000"}, "config"),
        ({"id": "q", "type": "sql", "db": "dw", "command": "select 1\u0000"}, "command"),
        (
            {
                "id": "s",
                "type": "spark",
                "master": "local",
                "ingestor-file": "app.py",
                "parameters": ["a\u0000b"],
            },
            "parameters",
        ),
    ],
)
def test_a_nul_character_in_any_task_type_is_a_problem(project: Project, task, key):
    stderr = _invalid(project, [task], "holds a NUL character")
    assert f"key '{key}'" in stderr


def test_a_nul_in_a_datasource_is_a_problem(project: Project):
    (project.root / "oracle.json").write_text(
        json.dumps({"connections": [{"name": "dw", "url": "sqlite:///a\u0000b.db"}]})
    )
    _invalid(project, [bash("a", "true")], "'url' holds a NUL character")


def test_a_folder_where_the_state_database_should_be_says_so(project: Project):
    (project.log_dir / "mflow.db").mkdir(parents=True)
    project.write_tasks([bash("a", "touch ran.txt")])
    for args in (["run"], ["runs"], ["status", "1"]):
        result = project.mflow(*args)
        assert_exit(result, 3)
        assert "mflow.db: it is a folder, not a database file" in result.stderr
    assert not (project.root / "ran.txt").exists()


def test_a_log_folder_shared_by_two_state_databases_is_refused(project: Project):
    # run ids count per database and name the logs: run 1 of each would share one log file
    project.write_tasks([bash("extract", "echo from A")], name="a.json")
    project.write_tasks([bash("extract", "echo from B")], name="b.json")
    project.write_config(name="ca.json", backend="sqlite:///a.db")
    project.write_config(name="cb.json", backend="sqlite:///b.db")
    assert_exit(project.mflow("run", "--config", "ca.json", "--taskfile", "a.json"), 0)
    other = project.mflow("run", "--config", "cb.json", "--taskfile", "b.json")
    assert_exit(other, 3)
    assert "holds the task logs of the state database" in other.stderr
    assert "Give this config.json a log_directory of its own" in other.stderr
    shown = project.mflow("logs", "1", "extract", "--config", "ca.json")
    assert shown.stdout == "from A\n"


def test_an_in_memory_state_datasource_is_refused(project: Project):
    (project.root / "oracle.json").write_text(
        json.dumps({"connections": [{"name": "mflow", "url": "sqlite://"}]})
    )
    _invalid(project, [bash("a", "true")], "datasource 'mflow' is an in-memory SQLite database")


def test_a_key_given_twice_after_a_nan_is_still_named(project: Project):
    text = '{"tasks": [{"id": "a", "type": "bash", "command": "x", "timeout": NaN, '
    text += '"retries": 1, "retries": 2}]}'
    _invalid(project, text, "key 'retries': given twice")


def test_a_utf16_task_file_gets_utf16_advice(project: Project):
    body = json.dumps({"tasks": [bash("a", "true")]})
    (project.root / "tasks.json").write_bytes(body.encode("utf-16"))
    _invalid(project, None, "task file is UTF-16", "iconv -f utf-16 -t utf-8")


def test_a_symbolic_link_loop_is_a_problem_not_a_crash(project: Project):
    (project.root / "loop.json").symlink_to("loop.json")
    for command in ("run", "validate", "graph"):
        result = project.mflow(command, "--taskfile", "loop.json")
        assert_exit(result, 2)
        assert_no_traceback(result)
        assert "Too many levels of symbolic links" in result.stderr
    project.write_tasks([{"id": "n", "type": "mflow", "taskfile": "loop.json"}])
    _invalid(project, None, "key 'taskfile': no file at")


def test_a_nul_in_the_backend_and_a_huge_resume_are_refused(project: Project):
    project.write_config(backend="sqlite:///a\u0000b")
    _invalid(project, [bash("a", "true")], "key 'backend': holds a NUL character")
    project.write_config()
    result = project.mflow("run", "--resume", str(2**63))
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "Invalid value for '--resume'" in result.stderr


def test_infinity_is_not_a_number_of_seconds(project: Project):
    text = '{"tasks": [{"id": "a", "type": "bash", "command": "true", "retry_delay": Infinity}]}'
    _invalid(project, text, "retry_delay")


def test_deeply_nested_json_is_refused(project: Project):
    deep = "[" * 100_000 + "]" * 100_000
    _invalid(project, '{"tasks": ' + deep + "}", "nested too deeply")


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        # a second "tasks" would silently drop every task of the first
        (
            "tasks.json",
            '{"tasks": [{"id": "a", "type": "bash", "command": "true"}],\n "tasks": []}',
            (2, 2),
        ),
        (
            "tasks.json",
            '{"tasks": [\n{"id": "a", "type": "bash", "command": "a", "command": "b"}]}',
            (2, 45),
        ),
        (
            "tasks.yaml",
            "tasks:\n  - id: a\n    type: bash\n    command: a\n    command: b\n",
            (5, 5),
        ),
    ],
)
def test_a_key_given_twice_is_a_problem_where_it_repeats(project: Project, name, text, where):
    (project.root / name).write_text(text)
    result = project.mflow("run", "--taskfile", name)
    assert_exit(result, 2)
    assert_no_traceback(result)
    [problem] = problems(result.stderr)
    assert (problem.line, problem.col) == where
    assert "given twice in the same" in problem.text and "keep one" in problem.text
    assert project.nothing_recorded()


def test_a_byte_order_mark_is_no_problem(project: Project):
    # Windows editors save UTF-8 with one
    body = json.dumps({"tasks": [bash("a", "touch ran.txt")]})
    (project.root / "tasks.json").write_bytes(b"\xef\xbb\xbf" + body.encode())
    (project.root / "config.json").write_bytes(b"\xef\xbb\xbf{}")
    assert_exit(project.mflow("run"), 0)
    assert (project.root / "ran.txt").exists()


def test_a_latin1_task_file_is_refused_where_its_first_such_byte_is(project: Project):
    text = '{"tasks": [\n  {"id": "a", "type": "bash", "command": "echo se\xf1al"}]}'
    (project.root / "tasks.json").write_bytes(text.encode("latin-1"))
    result = project.mflow("run")
    assert_exit(result, 2)
    assert_no_traceback(result)
    [problem] = problems(result.stderr)
    assert (problem.line, problem.col) == (2, 50)
    assert problem.text.startswith("task file is not UTF-8 (byte 0xf1); save it as UTF-8")
    assert "iconv -f latin1 -t utf-8 tasks.json > tasks.utf8.json" in problem.text
    assert project.nothing_recorded()


@pytest.mark.parametrize("log_directory", ["a_file", "a_file/logs"])
def test_a_log_directory_that_is_a_file_says_so(project: Project, log_directory: str):
    (project.root / "a_file").write_text("not a folder")
    project.write_config(log_directory=log_directory)
    project.write_tasks([bash("a", "touch ran.txt")])
    result = project.mflow("run")
    assert_exit(result, 3)
    assert_no_traceback(result)
    assert "it, or a folder above it, is a file; point log_directory at a folder" in result.stderr
    assert "create it" not in result.stderr
    assert not (project.root / "ran.txt").exists()


def test_yaml_aliases_neither_loop_nor_explode(project: Project):
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        laughs.append(f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
    laughs.append("tasks:\n  - {id: t, type: bash, command: 'echo ok'}")
    project.write_tasks("\n".join(laughs) + "\n", name="tasks.yaml")
    ok = project.mflow("validate", "--taskfile", "tasks.yaml", timeout=30)
    assert_exit(ok, 0)
    assert "unknown key" in ok.stderr  # the 9 alias keys, each reported once
    project.write_tasks(
        "tasks: &t [{id: a, type: bash, command: x, depends: *t}]\n", name="loop.yaml"
    )
    looped = project.mflow("validate", "--taskfile", "loop.yaml", timeout=30)
    assert_exit(looped, 2)
    assert_no_traceback(looped)


def test_a_fifo_is_not_read_as_a_task_file(project: Project):
    os.mkfifo(project.root / "tasks.json")
    result = project.mflow("validate", timeout=30)
    assert_exit(result, 2)
    assert "not a regular file" in result.stderr


def test_many_problems_are_all_reported(project: Project):
    tasks = [bash("same", "true") for _ in range(5000)]
    tasks += [bash(f"c{i}", "true", f"d{i}") for i in range(2000)]
    tasks += [bash(f"d{i}", "true", f"c{i}") for i in range(2000)]
    result = project.mflow("validate", timeout=60) if project.write_tasks(tasks) else None
    assert result is not None
    assert_exit(result, 2)
    # 4999 repeats of one id, and 2000 cycles of two tasks (one problem each)
    assert "6999 problems found" in result.stderr
    assert len(problems(result.stderr)) == 6999


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"backend": "foo"}, ["key 'backend'", "no datasource 'foo'"]),
        ({"backend": "a b"}, ["key 'backend'", "neither a database URL"]),
        ({"backend": ""}, ["key 'backend'", "is empty"]),
        ({"log_directory": "logs\u0000x"}, ["key 'log_directory'"]),
        ({"check_new_config_interval": 1e-9}, ["check_new_config_interval"]),
        ({"env": {"K": "${K2}", "K2": "x"}}, ["key 'env.K'", "above it"]),
        ({"backend": "sqlite://"}, ["key 'backend'", "in-memory SQLite database"]),
        ({"backend": "sqlite:///:memory:"}, ["key 'backend'", "keeps nothing once mflow ends"]),
    ],
)
def test_bad_config_values(project: Project, config, words):
    project.write_config(**config)
    _invalid(project, [bash("a", "true")], *words)


# -- runtime --------------------------------------------------------------------------------
def test_a_task_whose_log_cannot_be_written_fails_instead_of_losing_output(project: Project):
    project.write_config(backend="sqlite:///state.db")  # the database is not in the log folder
    project.write_tasks([bash("a", "rm -rf logs && echo lost")])
    result = project.mflow("run")
    assert_exit(result, 1)
    assert_no_traceback(result)
    assert "cannot write its log" in result.stdout
    rows = StateStore(f"sqlite:///{project.root / 'state.db'}").task_rows(1)
    assert [(r["task_id"], r["state"]) for r in rows] == [("a", "FAILED")]


def test_output_that_goes_away_does_not_break_the_run(project: Project):
    project.write_tasks([bash(f"t{i}", f"echo {i}") for i in range(30)])
    closed = subprocess.run(
        [sys.executable, "-m", "mflow", "run"],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )  # mflow started with no stdout at all
    assert closed.returncode == 0, closed.stderr
    piped = subprocess.run(
        f"{sys.executable} -m mflow run | head -c 10",
        shell=True,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0 and "Traceback" not in piped.stderr, piped.stderr
    states = project.db("SELECT state FROM mf_runs ORDER BY run_id")
    assert [s["state"] for s in states] == ["SUCCESS", "SUCCESS"]


@pytest.fixture
def small_disk(project: Project):
    """The project's log folder on a 512 KiB file system of its own (a tmpfs: needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    project.log_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(project.log_dir)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield project.log_dir
    subprocess.run(["umount", "-l", str(project.log_dir)], check=False)


def test_a_full_disk_says_where_the_unrecorded_changes_are(project: Project, small_disk):
    # the task fills the disk up to the last page of mflow.log: nothing more can be written
    fill = f"sleep 0.5; cat /dev/zero >> {small_disk}/mflow.log; true"
    project.write_tasks([bash("fill", fill), bash("after", "echo after", "fill")])
    result = project.mflow("run", env={"MFLOW_FLOW_CACHE": "off"})
    assert_exit(result, 3)
    assert_no_traceback(result)
    assert "the last state changes of run 1 were not recorded" in result.stderr
    assert f"{small_disk}/mflow.log missed lines too: No space left on device" in result.stderr
    assert "the lines above show every change" in result.stderr
    assert "FAILED          fill" in result.stdout  # and they do


def test_an_unwritable_master_log_is_an_environment_fault_with_nothing_recorded(project: Project):
    project.write_tasks([bash("a", "true")])
    project.log_dir.mkdir()
    (project.log_dir / "mflow.log").mkdir()
    result = project.mflow("run")
    assert_exit(result, 3)
    assert "master log" in result.stderr
    if project.db_path.exists():
        assert project.db("SELECT count(*) AS n FROM mf_runs")[0]["n"] == 0


@pytest.mark.parametrize("warm", [False, True])
def test_a_folder_named_in_latin1_is_refused_with_nothing_recorded(project: Project, warm: bool):
    folder = project.root / os.fsdecode(b"a\xf1o")  # "año" as Latin-1 wrote it
    folder.mkdir()
    (folder / "tasks.json").write_text(json.dumps({"tasks": [bash("a", "touch ran")]}))
    env = {} if warm else {"MFLOW_FLOW_CACHE": "off"}
    for _ in range(2 if warm else 1):  # a second run would be warm, were it kept
        result = project.mflow("run", cwd=folder, env=env)
        assert_exit(result, 3)
        assert_no_traceback(result)
        assert "a\\xf1o/tasks.json is not valid UTF-8" in result.stderr
        assert "convmv" in result.stderr
    assert not (folder / "ran").exists()
    database = folder / "logs" / "mflow.db"
    if database.exists():
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT count(*) FROM mf_runs").fetchone() == (0,)


def test_a_read_only_state_database_is_read_without_writing(project: Project):
    project.write_tasks([bash("a", "true")])
    assert_exit(project.mflow("run"), 0)
    conn = sqlite3.connect(project.db_path)
    conn.execute("PRAGMA journal_mode=DELETE")  # a plain file, as a DBA might hand it over
    conn.close()
    before = project.db_path.read_bytes()
    store = StateStore(f"sqlite:///{project.db_path}", read_only=True)
    assert [r["state"] for r in store.list_runs()] == ["SUCCESS"]
    assert store.reap_dead_runs() == []  # fixing up needs writing: not attempted
    store.close()
    assert project.db_path.read_bytes() == before
    assert not project.db_path.with_name("mflow.db-wal").exists()


def test_reading_another_users_state_database_leaves_no_files_behind(project: Project):
    # Another user's WAL database, in a shared folder: SQLite would create -shm and -wal
    # files owned by the reader, which the owner's next run could not write.
    project.write_tasks([bash("a", "true")])
    assert_exit(project.mflow("run"), 0)
    folder = sorted(p.name for p in project.log_dir.iterdir())
    store = StateStore(f"sqlite:///{project.db_path}", read_only=True)
    assert [r["state"] for r in store.list_runs()] == ["SUCCESS"]
    assert sorted(p.name for p in project.log_dir.iterdir()) == folder
    # a reader that stays (mflow serve) sees a run that started after it opened, live
    project.write_tasks([bash("a", "touch started; sleep 2"), bash("b", "true")])
    run = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the run's first task")
    assert [(r["state"], r["task_count"]) for r in store.list_runs()][0] == ("RUNNING", 2)
    assert_exit(run.wait(), 0)
    store.close()


def test_reading_while_a_run_writes_sees_its_latest_records(project: Project):
    project.write_tasks([bash("a", "true")])
    assert_exit(project.mflow("run"), 0)
    writer = sqlite3.connect(project.db_path)  # a run in progress: its -wal file is there
    writer.execute("UPDATE mf_runs SET message = 'written a moment ago'")
    writer.commit()
    try:
        assert project.db_path.with_name("mflow.db-wal").exists()
        store = StateStore(f"sqlite:///{project.db_path}", read_only=True)
        assert store.list_runs()[0]["message"] == "written a moment ago"
        store.close()
    finally:
        writer.close()


def test_an_unknown_schema_version_is_refused(project: Project):
    project.write_tasks([bash("a", "true")])
    assert_exit(project.mflow("run"), 0)
    conn = sqlite3.connect(project.db_path)
    conn.execute("UPDATE mf_meta SET val = 'abc'")
    conn.commit()
    conn.close()
    for args in (["run"], ["runs"]):
        result = project.mflow(*args)
        assert_exit(result, 3)
        assert "unknown schema version" in result.stderr


def test_huge_run_ids_are_usage_errors(project: Project):
    for args in (
        ["status", "9" * 25],
        ["logs", "9" * 25, "a"],
        ["resume", "9" * 25],
        ["runs", "--limit", "9" * 25],
    ):
        result = project.mflow(*args)
        assert_exit(result, 2)
        assert_no_traceback(result)


def test_a_relative_sqlite_backend_is_relative_to_the_config_file(project: Project):
    project.write_config(backend="sqlite:///state/runs.db")
    project.write_tasks([bash("a", "true")])
    elsewhere = project.root / "sub"
    elsewhere.mkdir()
    result = project.mflow(
        "run", "--config", "../config.json", "--taskfile", "../tasks.json", cwd=elsewhere
    )
    assert_exit(result, 0)
    assert (project.root / "state" / "runs.db").exists()
    assert not (elsewhere / "state").exists()
    listed = project.mflow("runs", "--json")
    assert json.loads(listed.stdout)[0]["state"] == "SUCCESS"


def test_a_task_path_without_bash_still_runs_its_shell_command(project: Project):
    project.write_tasks([bash("a", "echo $PATH > seen; echo done", env={"PATH": "/nowhere"})])
    assert_exit(project.mflow("run"), 0)
    assert (project.root / "seen").read_text() == "/nowhere\n"


def test_a_stale_log_of_a_reused_run_id_is_kept_aside(project: Project):
    project.write_tasks([bash("a", "echo new")])
    project.log_dir.mkdir()
    (project.log_dir / "master_1_task_a.log").write_text("old output\n")  # from a lost db
    assert_exit(project.mflow("run"), 0)
    assert project.task_log(1, "a").read_text() == "new\n"
    kept = list(project.log_dir.glob("master_1_task_a.log.replaced-*"))
    assert len(kept) == 1 and kept[0].read_text() == "old output\n"


def test_a_task_id_with_a_comma_can_be_run_alone(project: Project):
    project.write_tasks([bash("load,clean", "echo ok"), bash("b", "true")])
    result = project.mflow("run", "--task", "load,clean")
    assert_exit(result, 0)
    assert project.task_states(1) == {"load,clean": "SUCCESS"}
