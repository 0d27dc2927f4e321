"""Oracle specifics that need no server: the original oracle.json becomes a thin-mode
python-oracledb connection, scripts split as SQL*Plus splits them, and DBMS_OUTPUT lines
reach the task log.

No Oracle server can run on this machine, so the last test uses a stand-in for the
driver's connection (the one mock in this suite); everything it checks on the mflow side is
real. What has and has not been run against a real Oracle is stated in the README."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Project, assert_exit
from mflow.databases import DatabasePool, Execution
from mflow.datasources import load_datasources
from mflow.sqlscript import split_script


def test_the_original_oracle_json_is_read_unchanged(tmp_path: Path):
    path = tmp_path / "oracle.json"
    path.write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "name": "mflow",
                        "user": "MFLOW",
                        "password": "MFLOW",
                        "connection_string": "(DESCRIPTION=(ADDRESS=(PROTOCOL=tcp)(HOST=10.30.205.127)"
                        "(PORT=1521))(CONNECT_DATA=(SERVICE_NAME=fisco)))",
                    },
                    {
                        "name": "siper_fisco",
                        "connection_string": "10.30.205.127:1521/fisco",
                        "user": "SIPER",
                        "password": "p@ss/word",
                    },
                ]
            }
        )
    )
    sources = load_datasources(path, required=True)
    siper = sources.by_name["siper_fisco"]
    assert siper.kind == "oracle"
    assert siper.url == "oracle+oracledb://SIPER:p%40ss%2Fword@"  # thin mode, no client
    assert siper.connect_args == {"dsn": "10.30.205.127:1521/fisco"}
    assert sources.mask("login SIPER/p@ss/word failed") == "login SIPER/*** failed"
    assert "p@ss" not in siper.display_url()


def test_env_values_in_the_datasources_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ORA_PASSWORD", "from-env")
    path = tmp_path / "oracle.json"
    path.write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "name": "a",
                        "connection_string": "h:1521/s",
                        "user": "U",
                        "password": "${ORA_PASSWORD}",
                    },
                ]
            }
        )
    )
    sources = load_datasources(path, required=True)
    assert "from-env" in sources.secrets
    assert sources.by_name["a"].url == "oracle+oracledb://U:from-env@"


def test_an_unreachable_oracle_state_database_is_named_with_its_address_and_cause(
    project: Project,
):
    # the original's `mflow` connection holds the state; nothing listens on port 1
    (project.root / "oracle.json").write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "name": "mflow",
                        "connection_string": "127.0.0.1:1/fisco",
                        "user": "MFLOW",
                        "password": "s3cret-pw",
                    }
                ]
            }
        )
    )
    project.write_tasks([{"id": "a", "type": "bash", "command": "touch ran.txt"}])
    for args in (["run"], ["runs"]):
        result = project.mflow(*args)
        assert_exit(result, 3)
        assert "cannot use the state database datasource 'mflow': " in result.stderr
        assert "(127.0.0.1:1/fisco)" in result.stderr
        assert "Connection refused" in result.stderr  # the driver's cause, not only DPY-6005
        assert "s3cret-pw" not in result.stderr
    assert not (project.root / "ran.txt").exists()


def test_scripts_split_as_sqlplus_does():
    script = """-- nightly
insert into t values (1); -- first
insert into t values ('a;b');
begin
  dbms_output.put_line('x;y');
end;
/
create or replace procedure p as begin null; end;
/
select 1 from dual
"""
    assert split_script(script, "oracle") == [
        "insert into t values (1)",
        "insert into t values ('a;b')",
        "begin\n  dbms_output.put_line('x;y');\nend;",
        "create or replace procedure p as begin null; end;",
        "select 1 from dual",
    ]


class _StandInCursor:
    """Plays python-oracledb's cursor: execute, callproc, var, rowcount (no server here)."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        self.executed: list[str] = []
        self.description = None
        self.rowcount = 0

    def var(self, kind):
        return _Var()

    def callproc(self, name, args):
        if name == "dbms_output.get_line":
            line, status = args
            if self.lines:
                line.value, status.value = self.lines.pop(0), 0
            else:
                line.value, status.value = None, 1

    def execute(self, statement):
        self.executed.append(statement)
        self.rowcount = 3

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Var:
    value = None

    def getvalue(self):
        return self.value


class _StandInConnection:
    def __init__(self, cursor):
        self._cursor = cursor
        self.driver_connection = self
        self.committed = False

    def cursor(self):
        return self._cursor

    def commit(self):
        self.committed = True

    def rollback(self):
        pass

    def close(self):
        pass


def test_dbms_output_and_rows_affected_reach_the_log(tmp_path: Path):
    path = tmp_path / "oracle.json"
    path.write_text(
        json.dumps(
            {
                "connections": [
                    {"name": "o", "connection_string": "h:1521/s", "user": "U", "password": "P"}
                ]
            }
        )
    )
    pool = DatabasePool(load_datasources(path, required=True).by_name["o"])
    cursor = _StandInCursor(["loaded 3 rows", "done"])
    connection = _StandInConnection(cursor)

    class _Engine:
        def raw_connection(self):
            return connection

    pool._engine = _Engine()
    log: list[str] = []
    pool.run_statements(["begin load_all; end;"], log.append, Execution())
    assert cursor.executed == ["begin load_all; end;"]  # sent whole, final "end;" kept
    assert log == ["3 rows affected", "loaded 3 rows", "done", "-- committed"]
    assert connection.committed


def test_an_oracle_task_validates_and_fails_clearly_without_a_server(project: Project):
    (project.root / "oracle.json").write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "name": "siper_fisco",
                        "connection_string": "127.0.0.1:1/fisco",
                        "user": "SIPER",
                        "password": "SIPER",
                        "connect_timeout": 2,
                    }
                ]
            }
        )
    )
    project.write_tasks(
        [
            {
                "id": "siper_desvio141",
                "type": "oracle",
                "command": "begin \n siper.test_data_gen.DESVIO_14_1; \n end;",
                "db": "siper_fisco",
            }
        ]
    )
    assert_exit(project.mflow("validate"), 0)
    result = project.mflow("run")
    assert_exit(result, 1)
    (row,) = project.db("SELECT message FROM mf_attempts")
    assert row["message"].startswith("datasource 'siper_fisco': DPY-")
