"""The REST API of `mflow serve`, over real runs recorded by the real `mflow run`, on SQLite
and PostgreSQL. Requests go through FastAPI's test client (the app in this process, the
runs in their own processes)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import Project, assert_exit, bash, wait_for
from databases import postgres_url  # noqa: F401 - fixture
from mflow.server.serve import build_app
from mflow.store.store import StateStore

TOKEN = "t0ken-for-the-api-tests-0123456789"


def client_for(project: Project, token: str | None = None) -> TestClient:
    if token:
        os.environ["MFLOW_API_TOKEN"] = token
    try:
        app, _, _ = build_app(project.root / "config.json", None)
    finally:
        os.environ.pop("MFLOW_API_TOKEN", None)
    return TestClient(app)


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a server-sent event stream."""
    event, data = "message", []
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield event, json.loads("\n".join(data))
            event, data = "message", []


@pytest.fixture(params=["sqlite", "postgresql"])
def recorded(request: pytest.FixtureRequest, project: Project) -> Project:
    """A project with three runs: a failed one (with retries), a success, a partial one."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        store = StateStore(url)  # module-scoped database: each test starts empty
        with store.engine.begin() as conn:
            for table in ("mf_attempts", "mf_tasks", "mf_runs"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        store.close()
        project.write_config(backend=url)
    project.write_tasks(
        [
            bash("extract", "echo extracted; echo line2; echo line3"),
            bash("flaky", "echo try; exit 3", "extract", retries=1, retry_delay=0),
            bash("load", "echo never", "flaky"),
        ],
        name="nightly.json",
    )
    assert_exit(project.mflow("run", "--taskfile", "nightly.json"), 1)
    project.write_tasks([bash("a", "echo A"), bash("b", "echo B", "a")], name="small.json")
    assert_exit(project.mflow("run", "--taskfile", "small.json"), 0)
    assert_exit(project.mflow("run", "--taskfile", "small.json", "--only", "b"), 0)
    return project


def test_health_says_where_the_state_is_and_that_actions_are_off(recorded: Project):
    answer = client_for(recorded).get("/api/health").json()
    assert answer["status"] == "ok"
    assert answer["actions"] is False


def test_runs_are_listed_newest_first_with_filters_and_paging(recorded: Project):
    client = client_for(recorded)
    page = client.get("/api/runs").json()
    assert page["total"] == 3
    assert [r["state"] for r in page["runs"]] == ["SUCCESS", "SUCCESS", "FAILED"]
    newest = page["runs"][0]
    assert newest["task_count"] == 1 and newest["task_states"] == {"SUCCESS": 1}
    failed = client.get("/api/runs", params={"state": "FAILED"}).json()
    assert [r["flow_path"].rsplit("/", 1)[1] for r in failed["runs"]] == ["nightly.json"]
    assert failed["total"] == 1
    assert client.get("/api/runs", params={"state": "failed"}).json() == failed  # as the CLI
    small = client.get("/api/runs", params={"flow": "small"}).json()
    assert small["total"] == 2
    second = client.get("/api/runs", params={"limit": 1, "offset": 1}).json()
    assert second["total"] == 3 and [r["run_id"] for r in second["runs"]] == [
        page["runs"][1]["run_id"]
    ]
    future = client.get("/api/runs", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future == {"runs": [], "total": 0, "limit": 50, "offset": 0}
    past = client.get("/api/runs", params={"until": "2000-01-01"}).json()
    assert past["total"] == 0
    today = client.get("/api/runs", params={"since": time.strftime("%Y-%m-%d")}).json()
    assert today["total"] == 3


@pytest.mark.parametrize(
    "query",
    [
        {"state": "DONE"},
        {"state": ""},
        {"since": "yesterday"},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"until": "9999-12-31T23:59:59-14:00"},
        {"limit": 0},
        {"limit": 5000},
        {"offset": -1},
    ],
)
def test_bad_run_filters_are_json_errors(recorded: Project, query: dict[str, Any]):
    answer = client_for(recorded).get("/api/runs", params=query)
    assert answer.status_code == 422
    assert "detail" in answer.json()


def test_a_run_has_its_tasks_and_every_attempt(recorded: Project):
    client = client_for(recorded)
    failed_id = client.get("/api/runs", params={"state": "FAILED"}).json()["runs"][0]["run_id"]
    run = client.get(f"/api/runs/{failed_id}").json()
    assert run["state"] == "FAILED"
    tasks = {t["task_id"]: t for t in run["tasks"]}
    assert [t["task_id"] for t in run["tasks"]] == ["extract", "flaky", "load"]
    assert tasks["flaky"]["depends"] == ["extract"]
    assert [(a["attempt"], a["state"], a["exit_code"]) for a in tasks["flaky"]["attempts"]] == [
        (1, "FAILED", 3),
        (2, "FAILED", 3),
    ]
    assert tasks["load"]["state"] == "UPSTREAM_FAILED" and tasks["load"]["attempts"] == []
    attempts = client.get(f"/api/runs/{failed_id}/tasks/flaky/attempts").json()
    assert [a["attempt"] for a in attempts] == [1, 2]


def test_the_dag_has_nodes_with_states_and_edges(recorded: Project):
    client = client_for(recorded)
    failed_id = client.get("/api/runs", params={"state": "FAILED"}).json()["runs"][0]["run_id"]
    dag = client.get(f"/api/runs/{failed_id}/dag").json()
    assert {n["id"]: n["state"] for n in dag["nodes"]} == {
        "extract": "SUCCESS",
        "flaky": "FAILED",
        "load": "UPSTREAM_FAILED",
    }
    assert {(e["source"], e["target"]) for e in dag["edges"]} == {
        ("extract", "flaky"),
        ("flaky", "load"),
    }
    # a partial run's task depends on a task it did not run: no edge into nowhere
    partial = client.get("/api/runs").json()["runs"][0]["run_id"]
    assert client.get(f"/api/runs/{partial}/dag").json()["edges"] == []


def test_a_log_is_read_whole_by_range_or_by_its_tail(recorded: Project):
    client = client_for(recorded)
    run_id = client.get("/api/runs", params={"state": "FAILED"}).json()["runs"][0]["run_id"]
    url = f"/api/runs/{run_id}/tasks/extract/attempts/1/log"
    whole = client.get(url)
    assert whole.text == "extracted\nline2\nline3\n"
    assert whole.headers["x-log-size"] == str(len(whole.text))
    assert whole.headers["x-attempt-state"] == "SUCCESS"
    part = client.get(url, params={"offset": 10, "length": 5})
    assert part.text == "line2" and part.headers["x-log-offset"] == "10"
    assert client.get(url, params={"tail": 2}).text == "line2\nline3\n"
    assert client.get(url, params={"tail": 10}).text == whole.text
    assert client.get(url, params={"offset": 1000}).text == ""
    assert client.get(url, params={"tail": 1, "offset": 2}).text == "line3\n"  # tail wins
    for bad in ("/api/runs/0", "/api/runs/-4", f"/api/runs/{run_id}/tasks/extract/attempts/0/log"):
        assert client.get(bad).status_code == 422
    second = client.get(f"/api/runs/{run_id}/tasks/flaky/attempts/2/log")
    assert second.text == "try\n"


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/999999",
        "/api/runs/999999/dag",
        "/api/runs/999999/tasks/x/attempts",
        "/api/runs/{run}/tasks/nope/attempts",
        "/api/runs/{run}/tasks/extract/attempts/9/log",
        "/api/runs/{run}/tasks/nope/attempts/1/log",
        "/api/nothing-here",
    ],
)
def test_unknown_ids_are_404_with_a_json_reason(recorded: Project, path: str):
    client = client_for(recorded)
    run_id = client.get("/api/runs", params={"state": "FAILED"}).json()["runs"][0]["run_id"]
    answer = client.get(path.format(run=run_id))
    assert answer.status_code == 404
    assert answer.json()["detail"]


def test_a_live_log_is_followed_until_the_attempt_ends(project: Project):
    project.write_tasks(
        [bash("slow", "echo first; while [ ! -e go ]; do sleep 0.05; done; echo second")]
    )
    bg = project.start("run")
    wait_for(
        lambda: project.db_when_ready("SELECT 1 FROM mf_attempts WHERE state = 'RUNNING'"),
        what="the attempt recorded",
    )
    run_id = project.last_run_id()
    client = client_for(project)
    texts = []
    with client.stream("GET", f"/api/runs/{run_id}/tasks/slow/attempts/1/log/follow") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        for event, data in _events(answer.iter_lines()):
            if event == "log":
                texts.append(data["text"])
                if "first" in "".join(texts):
                    (project.root / "go").touch()
            elif event == "end":
                assert data == {"state": "SUCCESS"}
                break
    assert "".join(texts) == "first\nsecond\n"
    assert_exit(bg.wait(), 0)


def test_a_followed_log_masks_a_password_written_in_two_pieces(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    secret = "S3cretPassw0rd"
    (project.root / "oracle.json").write_text(
        json.dumps({"connections": [{"name": "dw", "url": f"postgresql://u:{secret}@h/db"}]})
    )
    # block-buffered programs cut their output anywhere: here inside the password, and
    # inside a UTF-8 character
    script = (
        "printf 'conn=S3cret'; while [ ! -e go ]; do sleep 0.05; done; "
        "printf 'Passw0rd a\\303'; sleep 0.3; printf '\\261o\\n'"
    )
    project.write_tasks([bash("leak", script)])
    bg = project.start("run")
    wait_for(lambda: project.task_log(1, "leak").exists(), what="the first piece")
    wait_for(
        lambda: project.db_when_ready("SELECT 1 FROM mf_attempts WHERE state = 'RUNNING'"),
        what="the attempt recorded",
    )
    monkeypatch.chdir(project.root)  # the server finds ./oracle.json as mflow does
    client = client_for(project)
    texts = []
    with client.stream("GET", "/api/runs/1/tasks/leak/attempts/1/log/follow") as answer:
        (project.root / "go").touch()
        for event, data in _events(answer.iter_lines()):
            if event == "log":
                texts.append(data["text"])
            elif event == "end":
                break
    assert "".join(texts) == "conn=*** año\n"
    assert all("Passw0rd" not in text and "S3cret" not in text for text in texts)
    assert_exit(bg.wait(), 0)


def test_the_tail_of_a_log_of_long_lines_keeps_its_end(project: Project):
    lines = "for i in $(seq 300); do head -c 50000 /dev/zero | tr '\\0' x; echo; done"
    project.write_tasks([bash("long", f"{lines}; echo 'FATAL: the real error is here'")])
    assert_exit(project.mflow("run"), 0)
    answer = client_for(project).get("/api/runs/1/tasks/long/attempts/1/log?tail=200")
    assert answer.status_code == 200
    assert answer.text.endswith("FATAL: the real error is here\n")
    assert answer.text.startswith("x")  # whole lines: it starts where one does
    assert len(answer.text) <= 4 << 20


def test_run_events_follow_the_states_until_the_end(project: Project):
    project.write_tasks(
        [bash("gate", "while [ ! -e go ]; do sleep 0.05; done"), bash("next", "true", "gate")]
    )
    bg = project.start("run")
    wait_for(lambda: project.db_when_ready("SELECT 1 FROM mf_runs"), what="the run recorded")
    run_id = project.last_run_id()
    seen = []
    with client_for(project).stream("GET", f"/api/runs/{run_id}/events") as answer:
        for event, data in _events(answer.iter_lines()):
            if event == "run":
                seen.append({t["task_id"]: t["state"] for t in data["tasks"]})
                (project.root / "go").touch()
            elif event == "end":
                assert data == {"state": "SUCCESS"}
                break
    assert seen[0]["next"] == "PENDING" and seen[-1] == {"gate": "SUCCESS", "next": "SUCCESS"}
    assert_exit(bg.wait(), 0)


def test_run_events_end_when_the_runs_mflow_dies(project: Project):
    project.write_tasks([bash("forever", "touch started; sleep 60")])
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the task")
    wait_for(lambda: project.db_when_ready("SELECT 1 FROM mf_runs"), what="the run recorded")
    ended = None
    with client_for(project).stream("GET", "/api/runs/1/events") as answer:
        for event, data in _events(answer.iter_lines()):
            if event == "run" and bg.popen.poll() is None:
                os.kill(bg.pid, signal.SIGKILL)
                bg.popen.wait()
            elif event == "end":
                ended = data
                break
    assert ended == {"state": "INTERRUPTED"}


def test_actions_need_a_token_and_the_right_one(recorded: Project):
    run_id = client_for(recorded).get("/api/runs").json()["runs"][-1]["run_id"]
    read_only = client_for(recorded).post(f"/api/runs/{run_id}/resume")
    assert read_only.status_code == 403 and "read-only" in read_only.json()["detail"]
    client = client_for(recorded, TOKEN)
    assert client.get("/api/health").json()["actions"] is True
    for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        answer = client.post(f"/api/runs/{run_id}/resume", headers=header)
        assert answer.status_code == 401, header


def test_cancel_resume_and_retry_with_the_token(project: Project):
    project.write_tasks(
        [
            bash("first", "echo once >> first.count"),
            bash("gate", "test -e fixed", "first"),
            bash("long", "touch started; sleep 30", "gate"),
        ]
    )
    assert_exit(project.mflow("run"), 1)
    failed = project.last_run_id()
    client = client_for(project, TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}

    refused = client.post(f"/api/runs/{failed}/cancel", headers=auth)
    assert refused.status_code == 409 and "not RUNNING" in refused.json()["detail"]

    retried = client.post(f"/api/runs/{failed}/tasks/gate/retry", headers=auth)
    assert retried.status_code == 200, retried.text
    retry_run = retried.json()["run_id"]
    wait_for(
        lambda: client.get(f"/api/runs/{retry_run}").json()["state"] == "FAILED",
        what="the retry to fail again",
    )
    assert [t["task_id"] for t in client.get(f"/api/runs/{retry_run}").json()["tasks"]] == ["gate"]

    (project.root / "fixed").touch()
    resumed = client.post(f"/api/runs/{failed}/resume", headers=auth)
    assert resumed.status_code == 200, resumed.text
    new_run = resumed.json()["run_id"]
    wait_for(lambda: (project.root / "started").exists(), what="the resumed run's last task")
    run = client.get(f"/api/runs/{new_run}").json()
    assert run["resumed_from"] == failed and run["state"] == "RUNNING"
    assert (project.root / "first.count").read_text() == "once\n"
    twice = client.post(f"/api/runs/{failed}/resume", headers=auth)  # a double click
    assert twice.status_code == 409
    assert f"run {new_run} of this flow is running" in twice.json()["detail"]
    retried_meanwhile = client.post(f"/api/runs/{failed}/tasks/gate/retry", headers=auth)
    assert retried_meanwhile.status_code == 409  # it would run the gate twice at once

    cancelled = client.post(f"/api/runs/{new_run}/cancel", headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    wait_for(
        lambda: client.get(f"/api/runs/{new_run}").json()["state"] == "CANCELLED",
        what="the run to be cancelled",
    )
    assert {t["task_id"]: t["state"] for t in client.get(f"/api/runs/{new_run}").json()["tasks"]}[
        "long"
    ] == "CANCELLED"


def test_two_clicks_on_retry_start_one_run(project: Project):
    import threading

    project.write_tasks([bash("slow", "sleep 1; echo once >> ran.txt; exit 3")])
    assert_exit(project.mflow("run"), 1)
    (project.root / "ran.txt").unlink()
    client = client_for(project, TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = []

    def click() -> None:
        answers.append(client.post("/api/runs/1/tasks/slow/retry", headers=auth))

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join()
    assert sorted(a.status_code for a in answers) == [200, 409]
    refused = next(a for a in answers if a.status_code == 409)
    assert "of this flow is running" in refused.json()["detail"]
    started = next(a for a in answers if a.status_code == 200).json()["run_id"]
    wait_for(lambda: client.get(f"/api/runs/{started}").json()["state"] == "FAILED")
    assert (project.root / "ran.txt").read_text() == "once\n"


def test_a_second_cancel_keeps_the_tasks_grace(project: Project):
    project.write_config(kill_grace=10)
    trap = "trap 'sleep 1; echo cleanup done; exit 0' TERM; touch started; sleep 30 & wait"
    project.write_tasks([bash("graceful", trap)])
    bg = project.start("run")
    wait_for(lambda: (project.root / "started").exists(), what="the task")
    wait_for(lambda: project.db_when_ready("SELECT 1 FROM mf_runs"), what="the run")
    client = client_for(project, TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(2):  # a double click
        assert client.post("/api/runs/1/cancel", headers=auth).status_code == 200
    assert_exit(bg.wait(), 143)
    assert "cleanup done" in project.task_log(1, "graceful").read_text()


def test_a_token_with_any_bytes_is_refused_not_a_crash(project: Project):
    project.write_tasks([bash("a", "true")])
    assert_exit(project.mflow("run"), 0)
    client = client_for(project, TOKEN)
    answer = client.post(
        "/api/runs/1/cancel", headers={"Authorization": "Bearer café-token".encode()}
    )
    assert answer.status_code == 401
    spaced = client.post("/api/runs/1/cancel", headers={"Authorization": f"Bearer  {TOKEN} "})
    assert spaced.status_code == 409  # the token matched: the run is simply not RUNNING


def test_datasource_passwords_never_leave_the_api(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    secret = "s3cret-Passw0rd-xyz"
    (project.root / "oracle.json").write_text(
        json.dumps(
            {"connections": [{"name": "dw", "url": f"postgresql://etl:{secret}@127.0.0.1/dw"}]}
        )
    )
    project.write_tasks([bash("leaky", f"echo connecting with {secret}; exit 1")])
    assert_exit(project.mflow("run"), 1)
    monkeypatch.chdir(project.root)  # the server finds ./oracle.json as mflow does
    client = client_for(project)
    run_id = project.last_run_id()
    answers = [
        client.get(path)
        for path in (
            "/api/health",
            "/api/runs",
            f"/api/runs/{run_id}",
            f"/api/runs/{run_id}/tasks/leaky/attempts/1/log",
            f"/api/runs/{run_id}/tasks/leaky/attempts/1/log?tail=5",
        )
    ]
    assert all(answer.status_code == 200 for answer in answers)
    assert "connecting with ***" in answers[3].text
    for answer in answers:
        assert secret not in answer.text


def test_the_openapi_document_describes_every_endpoint(recorded: Project):
    schema = client_for(recorded).get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        "/api/health",
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/dag",
        "/api/runs/{run_id}/events",
        "/api/runs/{run_id}/tasks/{task_id}/attempts",
        "/api/runs/{run_id}/tasks/{task_id}/attempts/{attempt}/log",
        "/api/runs/{run_id}/tasks/{task_id}/attempts/{attempt}/log/follow",
        "/api/runs/{run_id}/cancel",
        "/api/runs/{run_id}/resume",
        "/api/runs/{run_id}/tasks/{task_id}/retry",
    } <= paths


def test_serve_refuses_a_taken_port_and_a_short_token(project: Project, tmp_path: Path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = project.mflow("serve", "--port", str(port), timeout=30)
    assert_exit(result, 3)
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    result = project.mflow("serve", env={"MFLOW_API_TOKEN": "short"}, timeout=30)
    assert_exit(result, 2)
    assert "at least 16 characters" in result.stderr
    project.write_config(api_token="short")
    result = project.mflow("serve", timeout=30)
    assert_exit(result, 2)
    assert "key 'api_token': must be at least 16 characters" in result.stderr
    assert "1 problem found; the server was not started" in result.stderr


def test_a_task_id_with_a_slash_is_reachable(project: Project):
    project.write_tasks([bash("load/orders", "echo slashed")])
    assert_exit(project.mflow("run"), 0)
    client = client_for(project)
    run_id = project.last_run_id()
    attempts = client.get(f"/api/runs/{run_id}/tasks/load%2Forders/attempts")
    assert attempts.status_code == 200 and attempts.json()[0]["state"] == "SUCCESS"
    log = client.get(f"/api/runs/{run_id}/tasks/load/orders/attempts/1/log")
    assert log.text == "slashed\n"


def test_a_server_started_before_any_run_creates_nothing_and_waits(project: Project):
    client = client_for(project)
    assert client.get("/api/health").json()["status"] == "no runs recorded yet"
    assert client.get("/api/runs").json()["runs"] == []
    assert client.get("/api/runs/1").status_code == 404
    assert not project.log_dir.exists()  # not even the log folder
    project.write_tasks([bash("first", "true")])
    assert_exit(project.mflow("run"), 0)
    assert client.get("/api/health").json()["status"] == "ok"
    assert [r["state"] for r in client.get("/api/runs").json()["runs"]] == ["SUCCESS"]
    # moved away while serving: not re-created empty, and found again when it is back
    moved = project.root / "moved.db"
    project.db_path.rename(moved)
    assert client.get("/api/health").json()["status"] == "no runs recorded yet"
    assert client.get("/api/runs").json()["runs"] == []
    assert not project.db_path.exists()
    moved.rename(project.db_path)
    assert [r["state"] for r in client.get("/api/runs").json()["runs"]] == ["SUCCESS"]


@pytest.mark.parametrize("master_log", ["kept", "deleted too"])
def test_a_log_left_by_a_replaced_database_is_not_shown(project: Project, master_log: str):
    """Run ids restart with a new database; a task that printed nothing then has no log of
    its own, and the file of the same name is an older run's, not its output. mflow.log
    tells that ids went back (the older files are renamed); without it, their time does."""
    project.write_tasks([bash("a", "echo old a"), bash("b", "echo old b")])
    project.run_ok()
    for leftover in project.log_dir.glob("mflow.db*"):
        leftover.unlink()
    if master_log == "deleted too":
        (project.log_dir / "mflow.log").unlink()
        hour_ago = time.time() - 3600
        for task in ("a", "b"):
            os.utime(project.task_log(1, task), (hour_ago, hour_ago))
    project.write_tasks([bash("a", "true"), bash("b", "false")])
    result = project.mflow("run")
    assert_exit(result, 1)
    assert "FAILED b: exit code 1  (log: no output)" in result.stdout
    assert project.last_run_id() == 1
    set_aside = sorted(p.name.split(".replaced-")[0] for p in project.log_dir.glob("*.replaced-*"))
    if master_log == "kept":
        assert set_aside == ["master_1_task_a.log", "master_1_task_b.log"]
    else:
        assert set_aside == [] and project.task_log(1, "a").exists()
    logs = project.mflow("logs", "1", "a")
    assert_exit(logs, 0)
    assert logs.stdout == "" and "no output" in logs.stderr
    status = project.mflow("status", "1").stdout
    assert "(no output)" in status and "master_1_task_a.log" not in status
    client = client_for(project)
    url = "/api/runs/1/tasks/a/attempts/1/log"
    assert client.get(url).text == ""
    with client.stream("GET", url + "/follow") as answer:
        events = list(_events(answer.iter_lines()))
    assert events == [("end", {"state": "SUCCESS"})]
