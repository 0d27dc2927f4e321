"""SQL tasks against the real PostgreSQL and MariaDB servers on 127.0.0.1: transactions seen
from another connection, error text, cancel at the server on timeout, the per-datasource
session limit, and passwords that never show. (No Oracle server can run here: the Oracle
specifics are tested in test_oracle.py with a stand-in for the driver.)"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import Project, assert_exit, assert_no_traceback, bash, wait_for
from databases import mariadb_url, postgres_url  # noqa: F401 - fixtures

SECRET = "Sup3r-S3cret-pw"


@pytest.fixture(params=["postgres", "mariadb"])
def database(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, URL of a fresh database) on each server in turn."""
    url = request.getfixturevalue(f"{request.param}_url")
    return ("postgresql" if request.param == "postgres" else "mariadb"), url


def _with_password(url: str) -> str:
    """PostgreSQL here trusts local connections, so a password can ride along (and must not
    show); MariaDB checks it, so its URL keeps none."""
    if not url.startswith("postgresql"):
        return url
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{SECRET}@{host}"


def _query(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def _project(project: Project, url: str, **extra) -> None:
    connection = {"name": "warehouse", "url": _with_password(url), **extra}
    (project.root / "oracle.json").write_text(json.dumps({"connections": [connection]}))


def test_a_task_commits_and_another_connection_sees_it(project: Project, database):
    kind, url = database
    _project(project, url)
    project.write_tasks(
        [
            {
                "id": "create",
                "type": "sql",
                "db": "warehouse",
                "command": "create table sales_ok (id int, note varchar(20))",
            },
            {
                "id": "load",
                "type": "oracle",
                "db": "warehouse",
                "file": "load.sql",
                "depends": ["create"],
            },
        ]
    )
    (project.root / "load.sql").write_text(  # saved by a Windows editor: a BOM first
        "\ufeffinsert into sales_ok values (1, 'a;b');\n-- one more\n"
        "insert into sales_ok values (2, '50%');\nselect count(*) as n from sales_ok;\n"
    )
    result = project.mflow("run")
    assert_exit(result, 0)
    assert _query(url, "select id, note from sales_ok order by id") == [(1, "a;b"), (2, "50%")]
    log = project.task_log(1, "load").read_text()
    assert "-- statement 1 of 3" in log and "1 row affected" in log
    assert "(1 row)" in log and log.rstrip().endswith("-- committed")


def test_a_failing_script_rolls_back_everything_it_did(project: Project, database):
    kind, url = database
    _project(project, url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("create table sales_rb (id int)"))
    engine.dispose()
    project.write_tasks(
        [
            {"id": "load", "type": "sql", "db": "warehouse", "file": "load.sql"},
            bash("independent", "echo still runs"),
        ]
    )
    (project.root / "load.sql").write_text(
        "insert into sales_rb values (1);\ninsert into sales_rb values (2);\n"
        "insert into no_such_table values (3);\n"
    )
    result = project.mflow("run")
    assert_exit(result, 1)
    assert_no_traceback(result)
    assert _query(url, "select count(*) from sales_rb") == [(0,)]
    assert project.task_states(1) == {"load": "FAILED", "independent": "SUCCESS"}
    (row,) = project.db("SELECT message FROM mf_attempts WHERE task_id = 'load'")
    assert row["message"].startswith("datasource 'warehouse': ")
    assert "no_such_table" in row["message"]  # the server's own words
    log = project.task_log(1, "load").read_text()
    assert "ERROR:" in log and log.rstrip().endswith("-- rolled back")


def _active_queries(kind: str, url: str) -> int:
    """Sessions of this test's database busy with a statement, other than the one asking."""
    if kind == "postgresql":
        sql = (
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and state = 'active' and pid <> pg_backend_pid()"
        )
    else:
        sql = (
            "select count(*) from information_schema.processlist where db = database() "
            "and command = 'Query' and id <> connection_id()"
        )
    return _query(url, sql)[0][0]


def test_a_timeout_cancels_the_statement_at_the_server(project: Project, database):
    kind, url = database
    _project(project, url)
    sleep = (
        "select pg_sleep(60) as slow_marker"
        if kind == "postgresql"
        else "select sleep(60) as slow_marker"
    )
    project.write_tasks(
        [{"id": "slow", "type": "sql", "db": "warehouse", "command": sleep, "timeout": 1}]
    )
    started = time.monotonic()
    result = project.mflow("run")
    assert_exit(result, 1)
    assert time.monotonic() - started < 20
    (row,) = project.db("SELECT state, message FROM mf_attempts")
    assert (row["state"], row["message"]) == ("FAILED", "timeout after 1 s")
    assert _active_queries(kind, url) == 0  # stopped there, not abandoned


def test_sessions_per_datasource_never_exceed_max_connections(project: Project, database):
    kind, url = database
    _project(project, url, max_connections=2)
    nap = (
        "select pg_sleep(0.6) as nap_marker"
        if kind == "postgresql"
        else "select sleep(0.6) as nap_marker"
    )
    project.write_config(max_process_concurrency=8)
    project.write_tasks(
        [{"id": f"q{i}", "type": "sql", "db": "warehouse", "command": nap} for i in range(8)]
    )
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(_active_queries(kind, url))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = project.mflow("run")
    finally:
        done.set()
        watcher.join()
    assert_exit(result, 0)
    assert max(seen) == 2, seen  # two at a time: eight tasks, yet never eight sessions


def test_an_unreachable_datasource_fails_its_task_quickly_not_the_run(project: Project):
    (project.root / "oracle.json").write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "name": "down",
                        "url": f"postgresql://u:{SECRET}@127.0.0.1:1/x",
                        "connect_timeout": 2,
                    },
                ]
            }
        )
    )
    project.write_tasks(
        [
            {"id": "q", "type": "sql", "db": "down", "command": "select 1"},
            bash("other", "echo fine"),
        ]
    )
    started = time.monotonic()
    result = project.mflow("run")
    assert_exit(result, 1)
    assert time.monotonic() - started < 15
    assert project.task_states(1) == {"q": "FAILED", "other": "SUCCESS"}
    (row,) = project.db("SELECT message FROM mf_attempts WHERE task_id = 'q'")
    assert "datasource 'down'" in row["message"] and "refused" in row["message"].lower()


def test_unknown_datasources_and_scripts_are_validation_errors(project: Project):
    (project.root / "oracle.json").write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "name": "siper_fisco",
                        "connection_string": "h:1521/fisco",
                        "user": "S",
                        "password": SECRET,
                    }
                ]
            }
        )
    )
    project.write_tasks(
        [
            {"id": "a", "type": "oracle", "db": "siper_fisko", "command": "begin null; end;"},
            {"id": "b", "type": "sql", "db": "siper_fisco", "file": "missing.sql"},
            {"id": "c", "type": "sql", "db": "siper_fisco"},
        ]
    )
    result = project.mflow("validate")
    assert_exit(result, 2)
    assert "unknown datasource 'siper_fisko' (did you mean 'siper_fisco'?)" in result.stderr
    assert "no SQL script at" in result.stderr
    assert "give either 'command' or 'file'" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    (project.root / "oracle.json").unlink()
    missing = project.mflow("validate")
    assert "there is no datasources file" in missing.stderr


def test_passwords_never_show_anywhere(project: Project, postgres_url: str):  # noqa: F811
    (project.root / "oracle.json").write_text(
        json.dumps(
            {
                "connections": [
                    {"name": "wh", "url": _with_password(postgres_url)},
                    {
                        "name": "down",
                        "url": f"postgresql://u:{SECRET}@127.0.0.1:1/x",
                        "connect_timeout": 2,
                    },
                    {
                        "name": "ora",
                        "connection_string": "127.0.0.1:1/none",
                        "user": "SIPER",
                        "password": SECRET,
                    },
                    {
                        "name": "mflow",
                        "url": _with_password(postgres_url),
                    },  # state here, as the original
                ]
            }
        )
    )
    project.write_tasks(
        [
            {"id": "ok", "type": "sql", "db": "wh", "command": "select 1"},
            {"id": "bad", "type": "sql", "db": "wh", "command": f"select '{SECRET[:4]}' + 1"},
            {"id": "down", "type": "sql", "db": "down", "command": "select 1"},
            {"id": "ora", "type": "oracle", "db": "ora", "command": "begin null; end;"},
        ]
    )
    outputs = [
        project.mflow("validate"),
        project.mflow("run"),
        project.mflow("runs"),
        project.mflow("status", "1", "--json"),
        project.mflow("logs", "1", "down"),
    ]
    for result in outputs:
        assert_no_traceback(result)
        assert SECRET not in result.stdout + result.stderr, result
    assert "postgresql" in outputs[1].stdout and "***" in outputs[1].stdout  # state shown, masked
    for path in Path(project.root).rglob("*"):
        if path.is_file() and path.name != "oracle.json":
            assert SECRET.encode() not in path.read_bytes(), path
    rows = _query(postgres_url, "select message from mf_attempts")  # the state database
    assert rows and all(SECRET not in (r[0] or "") for r in rows)


def test_follow_a_sql_tasks_log(project: Project, postgres_url: str):  # noqa: F811
    _project(project, postgres_url)
    project.write_tasks(
        [
            {
                "id": "n",
                "type": "sql",
                "db": "warehouse",
                "command": "do $$ begin raise notice 'step one'; perform pg_sleep(0.5); "
                "raise notice 'step two'; end $$",
            }
        ]
    )
    bg = project.start("run")
    wait_for(lambda: project.db_when_ready("SELECT 1 FROM mf_runs"), what="the run")
    follow = project.start("logs", "1", "n", "-f")
    assert_exit(bg.wait(60), 0)
    out = follow.wait(60).stdout
    assert "NOTICE: step one" in out and "NOTICE: step two" in out


def test_a_timed_out_script_is_all_or_nothing(project: Project, postgres_url: str):  # noqa: F811
    """A cancel landing between two statements must not let the rest run and commit."""
    _project(project, postgres_url)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("create table many_rows (i int)"))
    engine.dispose()
    lines = [f"insert into many_rows values ({i}); select pg_sleep(0.002);" for i in range(3000)]
    (project.root / "many.sql").write_text("\n".join(lines))
    project.write_tasks(
        [{"id": "many", "type": "sql", "db": "warehouse", "file": "many.sql", "timeout": 1.5}]
    )
    result = project.mflow("run", timeout=120)
    assert_no_traceback(result)
    (count,) = _query(postgres_url, "select count(*) from many_rows")[0]
    state = project.task_states(1)["many"]
    assert (state, count) in (("FAILED", 0), ("SUCCESS", 3000)), (state, count)


def test_a_big_query_streams_and_counts_every_row(project: Project, database):
    kind, url = database
    _project(project, url)
    rows = (
        "select g from generate_series(1, 200000) as g"
        if kind == "postgresql"
        else "select seq from seq_1_to_200000"
    )
    project.write_tasks([{"id": "q", "type": "sql", "db": "warehouse", "command": rows}])
    assert_exit(project.mflow("run"), 0)
    log = project.task_log(1, "q").read_text()
    assert "(200000 rows)" in log and "... (199980 more)" in log


def test_a_server_that_never_answers_fails_after_connect_timeout(project: Project):
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never says a word
    port = listener.getsockname()[1]
    try:
        (project.root / "oracle.json").write_text(
            json.dumps(
                {
                    "connections": [
                        {
                            "name": "mute",
                            "url": f"mysql://u@127.0.0.1:{port}/x",
                            "connect_timeout": 1,
                        }
                    ]
                }
            )
        )
        project.write_tasks([{"id": "q", "type": "sql", "db": "mute", "command": "select 1"}])
        started = time.monotonic()
        result = project.mflow("run", timeout=60)
        assert_exit(result, 1)
        assert time.monotonic() - started < 20
        assert "no answer within 1 s while connecting" in result.stdout
    finally:
        listener.close()


def test_mysql_scripts_with_delimiter(project: Project, mariadb_url: str):  # noqa: F811
    _project(project, mariadb_url)
    (project.root / "proc.sql").write_text(
        "create table if not exists d (i int);\nDELIMITER //\n"
        "create procedure fill() begin insert into d values (1); insert into d values (2); end //\n"
        "DELIMITER ;\ncall fill();\n"
    )
    project.write_tasks([{"id": "p", "type": "sql", "db": "warehouse", "file": "proc.sql"}])
    assert_exit(project.mflow("run"), 0)
    assert _query(mariadb_url, "select count(*) from d") == [(2,)]


def test_a_bad_datasources_file_is_reported_once_not_per_task(project: Project):
    (project.root / "oracle.json").write_text(
        json.dumps(
            {
                "connections": [
                    {"name": "pg", "url": "postgres://u@h/db", "max_conections": 3},
                    {"name": "bad", "url": "postgresql://u@h:notaport/db"},
                    {"name": "odd", "url": "foo://h/db"},
                ]
            }
        )
    )
    project.write_tasks(
        [{"id": f"t{i}", "type": "sql", "db": "pg", "command": "select 1"} for i in range(5)]
    )
    result = project.mflow("validate")
    assert_exit(result, 2)
    assert "2 problems found" in result.stderr
    assert "not a usable database URL" in result.stderr
    assert "unknown kind of database 'foo'" in result.stderr
    assert "warning:" in result.stderr and "did you mean 'max_connections'" in result.stderr
