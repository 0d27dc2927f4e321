"""The engine's promises with run state in PostgreSQL (and MariaDB) as well as in SQLite:
every attempt recorded, concurrent mflow processes on one backend (schema created once,
runs never mixed), and a killed run found INTERRUPTED and resumed."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from conftest import Project, assert_exit, bash, pids_with_arg, unique_token, wait_for
from databases import mariadb_url, postgres_url  # noqa: F401 - fixtures
from mflow.store.store import StateStore


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, project: Project) -> Iterator[str]:
    """The backend URL written into the project's config.json."""
    if request.param == "sqlite":
        url = f"sqlite:///{project.root / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine_store = StateStore(url)  # a module-scoped database: start each test empty
        with engine_store.engine.begin() as conn:
            for table in ("mf_attempts", "mf_tasks", "mf_runs"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        engine_store.close()
    project.write_config(backend=url)
    yield url


def _store(url: str) -> StateStore:
    return StateStore(url)


def test_every_attempt_is_recorded(project: Project, backend: str):
    project.write_tasks(
        [
            bash("a", "echo a"),
            bash(
                "flaky", "test -e twice || { touch twice; exit 1; }", "a", retries=1, retry_delay=0
            ),
            bash("broken", "exit 5", "a"),
            bash("after", "true", "broken"),
        ]
    )
    assert_exit(project.mflow("run"), 1)
    store = _store(backend)
    (run,) = store.list_runs()
    assert run["state"] == "FAILED"
    states = {t["task_id"]: t["state"] for t in store.task_rows(run["run_id"])}
    assert states == {
        "a": "SUCCESS",
        "flaky": "SUCCESS",
        "broken": "FAILED",
        "after": "UPSTREAM_FAILED",
    }
    attempts = [
        (a["task_id"], a["attempt"], a["state"], a["exit_code"])
        for a in store.attempt_rows(run["run_id"])
    ]
    assert sorted(attempts) == [
        ("a", 1, "SUCCESS", 0),
        ("broken", 1, "FAILED", 5),
        ("flaky", 1, "FAILED", 1),
        ("flaky", 2, "SUCCESS", 0),
    ]
    status = json.loads(project.mflow("status", str(run["run_id"]), "--json").stdout)
    assert status["task_states"] == {"FAILED": 1, "SUCCESS": 2, "UPSTREAM_FAILED": 1}


def test_concurrent_mflow_processes_share_the_backend(project: Project, backend: str):
    for n in range(6):
        project.write_tasks(
            [bash(f"t{i}", f"echo {n}-{i}") for i in range(15)], name=f"flow{n}.json"
        )
    runs = [project.start("run", "--taskfile", f"flow{n}.json") for n in range(6)]
    for bg in runs:
        assert_exit(bg.wait(120), 0)
    store = _store(backend)
    rows = store.list_runs(limit=50)
    assert len(rows) == 6 and {r["state"] for r in rows} == {"SUCCESS"}
    for row in rows:
        attempts = store.attempt_rows(row["run_id"])
        assert sorted(a["task_id"] for a in attempts) == sorted(f"t{i}" for i in range(15))
        n = row["flow_path"].rsplit("flow", 1)[1].split(".")[0]
        assert project.task_log(row["run_id"], "t3").read_text() == f"{n}-3\n"


def test_a_killed_run_is_interrupted_and_resumed(project: Project, backend: str):
    token = unique_token()
    project.write_tasks(
        [
            bash("first", "echo first"),
            bash("long", f"test -e resumed || sleep {token}", "first"),
            bash("last", "echo last", "long"),
        ]
    )
    bg = project.start("run")
    wait_for(lambda: pids_with_arg(token), what="the long task")
    wait_for(
        lambda: any(
            a["state"] == "RUNNING"
            for r in _store(backend).list_runs()
            for a in _store(backend).attempt_rows(r["run_id"])
        ),
        what="the attempt recorded",
    )
    os.kill(bg.pid, signal.SIGKILL)
    bg.popen.wait()
    wait_for(lambda: not pids_with_arg(token), what="the task killed with mflow")
    (run,) = json.loads(project.mflow("runs", "--json").stdout)
    assert run["state"] == "INTERRUPTED"
    (project.root / "resumed").touch()
    assert_exit(project.mflow("resume", str(run["run_id"])), 0)
    latest = _store(backend).list_runs()[0]
    states = {t["task_id"]: t["state"] for t in _store(backend).task_rows(latest["run_id"])}
    assert states == {"first": "SKIPPED", "long": "SUCCESS", "last": "SUCCESS"}


def test_the_original_mflow_datasource_holds_the_state(project: Project, postgres_url: str):  # noqa: F811
    """As in the original: a connection named "mflow" in oracle.json is the backend."""
    (project.root / "oracle.json").write_text(
        json.dumps({"connections": [{"name": "mflow", "url": postgres_url}]})
    )
    project.write_tasks([bash("a", "echo a")])
    result = project.mflow("run")
    assert_exit(result, 0)
    assert "state in datasource 'mflow'" in result.stdout
    assert not project.db_path.exists()  # nothing in SQLite
    assert any(r["state"] == "SUCCESS" for r in _store(postgres_url).list_runs())
    listed = json.loads(project.mflow("runs", "--json").stdout)
    assert listed and listed[0]["flow_path"].endswith("tasks.json")


def test_mflow_processes_starting_together_on_a_new_database_create_the_schema_once(
    project: Project,
):
    from databases import PG_ADMIN, _scratch_database

    scratch = _scratch_database(PG_ADMIN, "PostgreSQL")
    url = next(scratch)
    try:
        project.write_config(backend=url)
        project.write_tasks([bash("a", "true")])
        runs = [project.start("run") for _ in range(5)]
        results = [bg.wait(120) for bg in runs]
        for result in results:
            assert_exit(result, 0)
        assert len(_store(url).list_runs()) == 5
    finally:
        next(scratch, None)


def test_long_messages_and_selections_are_recorded_cut_to_fit(project: Project, backend: str):
    """PostgreSQL refuses a value longer than its column, and with it every record of the
    batch: a 5,000-character failure and an --only list of 1,500 characters must not
    cost the run its records."""
    import http.server
    import threading

    class LongReason(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's name
            self.send_response(500, "R" * 5000)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LongReason)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/x"
        names = [f"task_with_a_long_name_{i:03d}" for i in range(60)]
        project.write_tasks(
            [{"id": "h", "type": "http", "url": url}, *(bash(n, "echo ok") for n in names)]
        )
        result = project.mflow("run", "--only", ",".join(["h", *names]))
    finally:
        server.shutdown()
    assert_exit(result, 1)  # h failed; the rest is recorded all the same
    run = _store(backend).list_runs()[0]
    assert run["state"] == "FAILED"
    rows = {row["task_id"]: row for row in _store(backend).task_rows(run["run_id"])}
    assert sum(row["state"] == "SUCCESS" for row in rows.values()) == 60
    message = rows["h"]["message"]
    assert len(message) == 2000 and message.endswith("…") and "RRRR" in message
    assert len(run["scope"]) == 1000 and run["scope"].endswith("…")


def test_a_path_too_long_to_record_is_refused_before_the_run(project: Project, backend: str):
    deep = project.root / "/".join(["d" * 200] * 5)  # over 1,000 characters
    deep.mkdir(parents=True)
    (deep / "tasks.json").write_text(json.dumps({"tasks": [bash("a", "touch ran.txt")]}))
    result = project.mflow("run", "--taskfile", str(deep / "tasks.json"))
    assert_exit(result, 2)
    assert "the task file path is" in result.stderr
    assert "more than the 1024 the state database records" in result.stderr
    assert not (deep / "ran.txt").exists()
    assert _store(backend).list_runs() == []


def test_ids_mariadb_cannot_tell_apart_are_refused_before_the_run(
    project: Project,
    mariadb_url: str,  # noqa: F811
):
    project.write_config(backend=mariadb_url)
    project.write_tasks([bash("load", "echo ok"), bash("Load", "true"), bash("résumé", "true")])
    result = project.mflow("run")
    assert_exit(result, 2)
    assert "task 'Load': key 'id': the MySQL/MariaDB state database takes it for task 'load'" in (
        result.stderr
    )
    project.write_tasks([bash("resume", "true"), bash("résumé ", "true")])
    result = project.mflow("run")
    assert_exit(result, 2)
    assert "task 'résumé ': key 'id'" in result.stderr
    project.write_tasks([bash("load", "echo ok"), bash("load_b", "true", "load")])
    assert_exit(project.mflow("run"), 0)  # distinct ids run, recorded there
    assert [row["state"] for row in _store(mariadb_url).list_runs()] == ["SUCCESS"]
