"""`spark` tasks. The real spark-submit shipped by pyspark runs a small PySpark application on
master local[1] (Java is needed). YARN cannot exist on a test machine: for YARN cluster
mode a stand-in spark-submit prints what the real one prints there, and a stand-in `yarn`
records the kill it is asked for; both are shell scripts written by the tests below."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import Project, assert_exit, assert_no_traceback, pids_with_arg, problems, wait_for
from mflow.datasources import NO_DATASOURCES
from mflow.tasktypes.base import TypeSetup
from mflow.tasktypes.spark import SparkSpec, SparkType

APP = Path(__file__).parent / "apps" / "spark_count.py"


def _missing(reason: str) -> None:
    if os.environ.get("MFLOW_REQUIRE_SERVICES") == "1":  # as .ci/run sets: run, not skip
        pytest.fail(reason)
    pytest.skip(reason)


def _real_spark_env() -> dict[str, str]:
    try:
        import pyspark
    except ImportError:
        _missing("pyspark is not installed (it is in the test extra)")
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        _missing("spark-submit needs Java, and there is none on the PATH or in JAVA_HOME")
    # the driver runs this interpreter, which has pyspark
    return {"SPARK_HOME": str(Path(pyspark.__file__).parent), "PYSPARK_PYTHON": sys.executable}


def spark_task(task_id: str, **keys: object) -> dict[str, object]:
    return {
        "id": task_id,
        "type": "spark",
        "master": "local[1]",
        "deploy-mode": "client",
        "driver-memory": "512m",
        "ingestor-file": str(APP),
        "confs": [
            {"key": "spark.ui.enabled", "value": False},
            {"key": "spark.sql.shuffle.partitions", "value": "1"},
        ],
        **keys,
    }


def _details(project: Project, task_id: str) -> dict:
    row = project.db(
        "SELECT details FROM mf_attempts WHERE task_id = ? ORDER BY run_id DESC LIMIT 1", task_id
    )
    return json.loads(row[0]["details"])


@pytest.mark.slow
def test_a_pyspark_job_runs_through_the_real_spark_submit(project: Project):
    env = _real_spark_env()
    project.write_tasks([spark_task("count", parameters=[{"parameter": "count.txt"}], env=env)])
    result = project.run_ok(timeout=240)
    run_id = project.last_run_id()
    assert (project.root / "count.txt").read_text() == "100\n"
    log = project.task_log(run_id, "count").read_text()
    assert "counted 100 rows" in log  # the driver's output, streamed to the task log
    assert log.startswith(f"$ {env['SPARK_HOME']}/bin/spark-submit --master 'local[1]'")
    argv = _details(project, "count")["argv"]
    assert argv == [
        f"{env['SPARK_HOME']}/bin/spark-submit",
        "--master",
        "local[1]",
        "--deploy-mode",
        "client",
        "--driver-memory",
        "512m",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        "spark.sql.shuffle.partitions=1",
        str(APP),
        "count.txt",
    ]
    assert "SUCCESS" in result.stdout


@pytest.mark.slow
def test_a_cancel_stops_spark_submit_and_its_driver(project: Project):
    env = _real_spark_env()
    token = f"out-{os.getpid()}-{time.monotonic_ns()}.txt"  # in the argv of the JVM and driver
    project.write_tasks([spark_task("stuck", parameters=[token, "sleep"], env=env)])
    bg = project.start("run")
    wait_for(lambda: (project.root / f"{token}.started").exists(), timeout=120, what="the driver")
    assert pids_with_arg(token)
    os.kill(bg.pid, signal.SIGTERM)  # as a Ctrl-C; a timeout takes the same path
    result = bg.wait(60)
    assert_exit(result, 143)
    wait_for(lambda: pids_with_arg(token) == [], timeout=15, what="spark processes to end")
    rows = project.db("SELECT state, message FROM mf_tasks WHERE task_id = 'stuck'")
    assert rows == [{"state": "CANCELLED", "message": "run cancelled"}]


FAKE_YARN_SUBMIT = """#!/bin/bash
# Stand-in for spark-submit in YARN cluster mode (no YARN cluster on a test machine):
# prints what the real one prints, then waits as it does for the application to finish.
echo "$@" > submit.args
echo "INFO Client: Requesting a new application from cluster with 4 NodeManagers"
echo "INFO Client: Submitted application application_1732600000000_0042"
echo "INFO Client: Application report for application_1732600000000_0042 (state: RUNNING)"
touch submitted
exec sleep 600
"""

FAKE_YARN = """#!/bin/bash
# Stand-in for the yarn command: records what it was asked.
echo "$@" >> yarn.calls
echo "Killed application $3"
"""


def _stand_ins(project: Project) -> Path:
    bin_dir = project.root / "bin"
    bin_dir.mkdir()
    for name, text in (("spark-submit", FAKE_YARN_SUBMIT), ("yarn", FAKE_YARN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def test_yarn_cluster_mode_records_the_application_and_kills_it_on_timeout(project: Project):
    bin_dir = _stand_ins(project)
    project.write_config(spark_submit="bin/spark-submit")  # relative to config.json's folder
    (project.root / "job.py").write_text("print('never run here')\n")
    project.write_tasks(
        [
            {
                "id": "ingest",
                "type": "spark",
                "master": "yarn",
                "deploy-mode": "cluster",
                "ingestor-file": "job.py",
                "timeout": 2,
                "env": {"PATH": f"{bin_dir}:{os.environ['PATH']}"},
            }
        ]
    )
    result = project.mflow("run")
    assert_exit(result, 1)
    run_id = project.last_run_id()
    assert _details(project, "ingest")["application_id"] == "application_1732600000000_0042"
    assert (project.root / "yarn.calls").read_text() == (
        "application -kill application_1732600000000_0042\n"
    )
    log = project.task_log(run_id, "ingest").read_text()
    assert "Submitted application application_1732600000000_0042" in log
    assert "$ yarn application -kill application_1732600000000_0042" in log
    assert (project.root / "submit.args").read_text().split() == [
        "--master",
        "yarn",
        "--deploy-mode",
        "cluster",
        str(project.root / "job.py"),
    ]


def test_spark_submit_may_name_the_tasks_variables(project: Project):
    tools = project.root / "tools"
    tools.mkdir()
    (tools / "spark-submit").write_text('#!/bin/sh\necho "$@" > submitted.args\n')
    (tools / "spark-submit").chmod(0o755)
    project.write_config(env={"TOOLS": str(tools)}, spark_submit="${TOOLS}/spark-submit")
    (project.root / "job.py").write_text("")
    project.write_tasks(
        [{"id": "job", "type": "spark", "master": "local[1]", "ingestor-file": "job.py"}]
    )
    assert_exit(project.mflow("run"), 0)
    assert (project.root / "submitted.args").read_text().split()[:2] == ["--master", "local[1]"]


def test_without_spark_submit_the_task_fails_saying_where_it_looked(project: Project):
    (project.root / "job.py").write_text("")
    project.write_tasks(
        [
            {
                "id": "job",
                "type": "spark",
                "master": "local[2]",
                "ingestor-file": "job.py",
                "env": {"PATH": "/nonexistent", "SPARK_HOME": ""},
            }
        ]
    )
    result = project.mflow("run")
    assert_exit(result, 1)
    message = project.db("SELECT message FROM mf_tasks")[0]["message"]
    assert message.startswith("spark-submit not found: set spark_submit in config.json")


def test_the_originals_spark_tasks_build_the_expected_command_line():
    # sp1 of the original tool's README, string numbers and all
    spec = SparkSpec.model_validate(
        {
            "id": "sp1",
            "type": "spark",
            "master": "spark://hdp:7077",
            "deploy-mode": "client",
            "driver-memory": "1g",
            "executor-memory": "4g",
            "executor-cores": "5",
            "total-executor-cores": "10",
            "ingestor-file": "/opt/ingestion/spark/scala/fisca-ingestion.jar",
            "class": "ar.gob.afip.fiscalizacion.ingestion.batch.raw.ftContribuyentes",
            "confs": [{"key": "spark.driver.maxResultSize", "value": "4g"}],
            "parameters": [{"parameter": "2024-01-01"}, "--full"],
        },
        strict=True,
    )
    argv = SparkType(TypeSetup(None, NO_DATASOURCES)).argv(spec, {}, Path("/flows"))
    assert argv == [
        "spark-submit",
        "--master",
        "spark://hdp:7077",
        "--deploy-mode",
        "client",
        "--class",
        "ar.gob.afip.fiscalizacion.ingestion.batch.raw.ftContribuyentes",
        "--driver-memory",
        "1g",
        "--executor-memory",
        "4g",
        "--executor-cores",
        "5",
        "--total-executor-cores",
        "10",
        "--conf",
        "spark.driver.maxResultSize=4g",
        "/opt/ingestion/spark/scala/fisca-ingestion.jar",
        "2024-01-01",
        "--full",
    ]


def test_bad_spark_keys_are_reported_with_their_place(project: Project):
    project.write_tasks(
        [
            {"id": "a", "type": "spark", "master": "yran", "ingestor-file": "/opt/a.py"},
            {
                "id": "b",
                "type": "spark",
                "master": "yarn",
                "deploy-mode": "clster",
                "ingestor-file": "/opt/b.py",
            },
            {
                "id": "c",
                "type": "spark",
                "master": "yarn",
                "executor-memory": "4x",
                "ingestor-file": "/opt/c.py",
            },
            {"id": "d", "type": "spark", "master": "yarn", "ingestor-file": "missing.py"},
            {"id": "e", "type": "spark", "master": "yarn"},
            {
                "id": "f",
                "type": "spark",
                "master": "yarn",
                "executor-cores": "0",
                "ingestor-file": "/opt/f.py",
            },
        ]
    )
    result = project.mflow("validate")
    assert_exit(result, 2)
    assert_no_traceback(result)
    found = {p.line: p.text for p in problems(result.stderr)}
    assert "'yran' is not a Spark master" in found[3]
    assert "key 'deploy-mode': must be client or cluster" in found[4]
    assert "key 'executor-memory'" in found[5] and "such as 512m or 4g" in found[5]
    assert "no application at" in found[6]
    assert "key 'ingestor-file': required key is missing" in found[7]
    assert "key 'executor-cores'" in found[8] and "from 1 to 100,000 (got '0')" in found[8]


def test_odd_values_in_confs_and_parameters_are_refused_not_passed_on(project: Project):
    def spark(task_id: str, **keys: object) -> dict[str, object]:
        return {"id": task_id, "type": "spark", "master": "yarn", "ingestor-file": "/a.py", **keys}

    project.write_tasks(
        [
            spark("a", confs={"spark.x": None}),
            spark("b", confs=[{"key": "", "value": "v"}]),
            spark("c", parameters=["ok", {"parameter": {"a": 1}}]),
            spark("d", **{"num-executors": 1.5}),
            spark("e", **{"class": "--verbose"}),
        ]
    )
    result = project.mflow("validate")
    assert_exit(result, 2)
    found = {p.line: p.text for p in problems(result.stderr)}
    assert found[3].endswith("conf spark.x must be text, a number or true/false (got None)")
    assert "a key is a name such as spark.driver.memory" in found[4]
    assert "parameter #2 must be text, a number or true/false" in found[5]
    assert found[6].endswith(
        "key 'num-executors': must be a whole number from 1 to 100,000 (got 1.5)"
    )
    assert "not starting with '-'" in found[7]
    assert len(found) == 5  # one problem each, however many types a key accepts


def test_values_become_arguments_as_spark_writes_them():
    spec = SparkSpec.model_validate(
        {
            "id": "x",
            "type": "spark",
            "master": "yarn",
            "ingestor-file": "/a.py",
            "jars": "a.jar, b.jar",
            "parameters": [1, 2.5, "x", {"Parameter": False}],
            "confs": {"spark.a": 1, "spark.b": True},
        },
        strict=True,
    )
    argv = SparkType(TypeSetup(None, NO_DATASOURCES)).argv(spec, {}, Path("/flows"))
    assert argv[1:] == [
        "--master", "yarn", "--jars", "a.jar,b.jar",
        "--conf", "spark.a=1", "--conf", "spark.b=true",
        "/a.py", "1", "2.5", "x", "false",
    ]  # fmt: skip
