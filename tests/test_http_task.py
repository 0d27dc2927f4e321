"""`http` tasks, for real: a local HTTP server in a thread and the real `mflow` command.

What a user notices: the state of the task, its message, its log, what the server received,
what `validate` says about a wrong task."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import (
    MFLOW,
    TASK_LINE,
    Project,
    Result,
    assert_exit,
    assert_no_traceback,
    problems,
    wait_for,
)

# The tests talk to 127.0.0.1: no proxy of the machine running them may get in the way.
NO_PROXIES = {
    name: ""
    for base in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
}
BIG_BODY_MIB = 64
BIG_LINE = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy\n"
BIG_CHUNK = BIG_LINE * (1024 * 1024 // len(BIG_LINE))
BIG_CHUNKS = BIG_BODY_MIB * 1024 * 1024 // len(BIG_CHUNK)
HELLO = "hello from the server\n"


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str  # as sent: absolute when it came through a proxy
    headers: dict[str, str]  # names in lower case
    body: bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", content_type: str = "text/plain", **headers):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        app = self.server
        app.seen.append(Seen(self.command, self.path, headers, body))
        parts = urlsplit(self.path)
        path = parts.path
        app.hits[path] += 1
        if self.path.startswith("http://"):  # a proxy's request line holds the whole URL
            self._reply(200, b"proxied\n")
        elif path == "/hello":
            self._reply(200, HELLO.encode())
        elif path == "/created":
            self._reply(201, b'{"id": 42}\n', "application/json")
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            self._reply(status, f"the server says {status}\n".encode())
        elif path == "/flaky":  # fails the first time, then works
            if app.hits[path] == 1:
                self._reply(503, b"try again later\n")
            else:
                self._reply(200, b"ok now\n")
        elif path == "/redirect":
            self._reply(302, b"", Location="/hello")
        elif path == "/signed":  # hands out a signed URL of its own secrets
            self._reply(302, b"", Location="/echo?X-Amz-Signature=SIGSECRET999&token=TOKSECRET888")
        elif path == "/zlib":  # a charset that is no text encoding
            self._reply(200, b"plain words\n", "text/plain; charset=zlib")
        elif path == "/echo":  # a server that repeats the credentials it received
            echoed = {
                "authorization": headers.get("authorization"),
                "cookie": headers.get("cookie"),
                "query": parse_qs(parts.query),
            }
            self._reply(200, json.dumps(echoed).encode(), "application/json")
        elif path == "/hang":  # accepts the request, never answers
            app.stop.wait(30)
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(BIG_CHUNK) * BIG_CHUNKS))
            self.end_headers()
            for _ in range(BIG_CHUNKS):
                self.wfile.write(BIG_CHUNK)
        elif path == "/image":
            self._reply(200, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(500), "image/png")
        else:
            self._reply(404, b"no such page\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self.hits: Counter[str] = Counter()
        self.stop = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()


def http(task_id: str, url: str, **keys: Any) -> dict[str, Any]:
    """An http task as it appears in tasks.json."""
    return {"id": task_id, "type": "http", "url": url, **keys}


def run(project: Project, tasks: list[dict[str, Any]], **env: str) -> Result:
    project.write_tasks(tasks)
    result = project.mflow("run", env={**NO_PROXIES, **env})
    assert_no_traceback(result)
    return result


def attempts(project: Project, task_id: str) -> list[dict[str, Any]]:
    rows = project.db(
        "SELECT attempt, state, exit_code, message, details, log_path FROM mf_attempts "
        "WHERE run_id = ? AND task_id = ? ORDER BY attempt",
        project.last_run_id(),
        task_id,
    )
    for row in rows:
        row["details"] = json.loads(row["details"]) if row["details"] else {}
    return rows


def only_attempt(project: Project, task_id: str) -> dict[str, Any]:
    found = attempts(project, task_id)
    assert len(found) == 1, found
    return found[0]


def log_text(project: Project, task_id: str) -> str:
    return project.task_log(project.last_run_id(), task_id).read_text()


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# `python -c THIS REPORT ARGS...` runs `mflow ARGS...`; as mflow ends (with os._exit) it
# writes to the file REPORT the modules it imported and its peak memory. VmHWM counts this
# program only: the rusage of a child also counts the memory of the test process it was
# forked from.
_MFLOW_REPORTING = """
import json, os, sys
from mflow import cli
report_path, sys.argv = sys.argv[1], ["mflow", *sys.argv[2:]]
real_exit = os._exit
def report(code):
    with open("/proc/self/status") as status:
        peak = int(status.read().split("VmHWM:")[1].split()[0])
    with open(report_path, "w") as out:
        json.dump({"modules": sorted(sys.modules), "peak_kib": peak}, out)
    real_exit(code)
os._exit = report
cli.main()
"""


def mflow_reporting(
    project: Project, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    path = project.root / "report.json"
    completed = subprocess.run(
        [MFLOW[0], "-c", _MFLOW_REPORTING, str(path), *args],
        cwd=project.root,
        env={**os.environ, **NO_PROXIES},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return completed, json.loads(path.read_text())


# -- requests that work ---------------------------------------------------------------------


def test_get_succeeds_with_the_body_in_the_log(project: Project, server: _Server) -> None:
    result = run(project, [http("fetch", server.url("/hello"))])
    assert_exit(result, 0)
    attempt = only_attempt(project, "fetch")
    assert attempt["state"] == "SUCCESS"
    assert attempt["details"] == {"method": "GET", "url": server.url("/hello"), "status": 200}
    log = log_text(project, "fetch")
    assert f"> GET {server.url('/hello')}\n" in log
    assert "< HTTP/1.1 200 OK\n" in log
    assert "< Content-Type: text/plain\n" in log
    assert HELLO in log
    assert [seen.method for seen in server.seen] == ["GET"]
    assert server.seen[0].headers["user-agent"].startswith("mflow/")


def test_post_json_with_variables_in_url_header_and_body(project: Project, server: _Server) -> None:
    project.write_config(env={"BASE": server.url("")})
    task = http(
        "create",
        "${BASE}/created",
        method="post",
        headers={"X-Request-Id": "run-${MFLOW_RUN_ID}-${TAG}"},
        json={"tag": "${TAG}", "count": 3, "ok": True, "items": ["${TAG}", None]},
        env={"TAG": "nightly"},
        expect_status=201,
    )
    result = run(project, [task])
    assert_exit(result, 0)
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == "/created"
    run_id = project.last_run_id()
    assert seen.headers["x-request-id"] == f"run-{run_id}-nightly"
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body) == {
        "tag": "nightly",
        "count": 3,
        "ok": True,
        "items": ["nightly", None],
    }
    assert only_attempt(project, "create")["details"]["status"] == 201
    assert '{"id": 42}' in log_text(project, "create")


def test_a_header_value_beyond_ascii_is_sent_as_utf8(project: Project, server: _Server) -> None:
    result = run(project, [http("accents", server.url("/hello"), headers={"X-Name": "ñandú 日本"})])
    assert_exit(result, 0)
    [seen] = server.seen
    assert seen.headers["x-name"].encode("latin-1").decode("utf-8") == "ñandú 日本"
    assert "X-Name: ñandú 日本" in log_text(project, "accents")


def test_body_is_sent_as_written(project: Project, server: _Server) -> None:
    task = http(
        "put",
        server.url("/hello"),
        method="PUT",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="a=${A}&b=2 é",
        env={"A": "1"},
    )
    assert_exit(run(project, [task]), 0)
    [seen] = server.seen
    assert (seen.method, seen.body) == ("PUT", "a=1&b=2 é".encode())
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"


def test_redirects_are_followed_unless_told_not_to(project: Project, server: _Server) -> None:
    result = run(
        project,
        [
            http("follow", server.url("/redirect")),
            http("stay", server.url("/redirect"), follow_redirects=False),
        ],
    )
    assert_exit(result, 1)
    follow = only_attempt(project, "follow")
    assert follow["state"] == "SUCCESS"
    assert follow["details"]["final_url"] == server.url("/hello")
    assert "< HTTP/1.1 302 Found" in log_text(project, "follow")
    assert HELLO in log_text(project, "follow")
    stay = only_attempt(project, "stay")
    assert (stay["state"], stay["message"]) == ("FAILED", "HTTP 302 Found (expected 2xx)")


def test_proxy_named_in_the_task_environment(project: Project, server: _Server) -> None:
    task = http("out", "http://example.invalid/api?x=1", env={"http_proxy": server.url("")})
    assert_exit(run(project, [task]), 0)
    assert [seen.path for seen in server.seen] == ["http://example.invalid/api?x=1"]
    assert f"-- through the proxy {server.url('')}" in log_text(project, "out")


# -- statuses -------------------------------------------------------------------------------


def test_unexpected_status_fails_with_a_clear_message(project: Project, server: _Server) -> None:
    result = run(project, [http("report", server.url("/status/503"))])
    assert_exit(result, 1)
    attempt = only_attempt(project, "report")
    assert attempt["state"] == "FAILED"
    assert attempt["message"] == "HTTP 503 Service Unavailable (expected 2xx)"
    assert attempt["details"]["status"] == 503
    assert "FAILED report: HTTP 503 Service Unavailable (expected 2xx)" in result.stdout
    assert "the server says 503" in log_text(project, "report")  # the server's explanation


def test_expect_status_accepts_what_it_names(project: Project, server: _Server) -> None:
    result = run(
        project,
        [
            http("gone", server.url("/status/404"), expect_status=404),
            http("either", server.url("/status/404"), expect_status=[200, 204]),
        ],
    )
    assert_exit(result, 1)
    assert project.task_states(project.last_run_id()) == {"gone": "SUCCESS", "either": "FAILED"}
    assert only_attempt(project, "either")["message"] == "HTTP 404 Not Found (expected 200 or 204)"


def test_retries_reach_an_endpoint_that_fails_once(project: Project, server: _Server) -> None:
    task = http("flaky", server.url("/flaky"), retries=2, retry_delay=0)
    assert_exit(run(project, [task]), 0)
    first, second = attempts(project, "flaky")
    assert (first["state"], first["message"]) == (
        "FAILED",
        "HTTP 503 Service Unavailable (expected 2xx)",
    )
    assert second["state"] == "SUCCESS"
    assert server.hits["/flaky"] == 2
    assert "try again later" in Path(first["log_path"]).read_text()
    assert "ok now" in Path(second["log_path"]).read_text()


# -- failures to talk -----------------------------------------------------------------------


def test_connection_refused_fails_clearly(project: Project) -> None:
    port = closed_port()
    result = run(project, [http("ping", f"http://127.0.0.1:{port}/health")])
    assert_exit(result, 1)
    attempt = only_attempt(project, "ping")
    assert attempt["message"] == f"connection refused by 127.0.0.1:{port}"
    assert attempt["exit_code"] is None
    assert f"-- failed: connection refused by 127.0.0.1:{port}" in log_text(project, "ping")


def test_tls_and_name_resolution_failures(project: Project, server: _Server) -> None:
    plain = server.url("/hello").replace("http://", "https://")  # TLS to a plain HTTP server
    result = run(
        project,
        [http("tls", plain), http("dns", "http://no-such-host.invalid/", timeout=20)],
    )
    assert_exit(result, 1)
    assert only_attempt(project, "tls")["message"].startswith("TLS error with 127.0.0.1: ")
    assert only_attempt(project, "dns")["message"].startswith(
        "cannot resolve host 'no-such-host.invalid': "
    )


def test_hanging_server_is_cut_off_by_the_task_timeout(project: Project, server: _Server) -> None:
    # the server never answers: without the timeout the run would not end at all
    result = run(project, [http("stuck", server.url("/hang"), timeout=1)])
    assert_exit(result, 1)
    attempt = only_attempt(project, "stuck")
    assert (attempt["state"], attempt["message"]) == ("FAILED", "timeout after 1 s")
    assert "-- cancelled" in log_text(project, "stuck")


def test_request_timeout_limits_the_wait_for_an_answer(project: Project, server: _Server) -> None:
    result = run(project, [http("slow", server.url("/hang"), request_timeout=0.3)])
    assert_exit(result, 1)
    assert only_attempt(project, "slow")["message"] == (
        "no response from 127.0.0.1 within 0.3 s (request_timeout)"
    )


@pytest.fixture
def tls_server(project: Project) -> Iterator[_Server]:
    """The same server over TLS, with a self-signed certificate in the project's cert.pem."""
    import shutil
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        cwd=project.root, check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(project.root / "cert.pem", project.root / "key.pem")
    httpd = _Server()
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_tls_certificate_checks(project: Project, tls_server: _Server) -> None:
    url = tls_server.url("/hello").replace("http://", "https://")
    result = run(
        project,
        [
            http("untrusted", url),
            http("own_ca", url, verify="cert.pem"),
            http("unchecked", url, verify=False),
        ],
    )
    assert_exit(result, 1)
    states = project.task_states(project.last_run_id())
    assert states == {"untrusted": "FAILED", "own_ca": "SUCCESS", "unchecked": "SUCCESS"}
    assert only_attempt(project, "untrusted")["message"].startswith(
        "TLS error with 127.0.0.1: certificate not trusted: self"  # self-signed / self signed
    )
    assert HELLO in log_text(project, "own_ca")


# -- the log --------------------------------------------------------------------------------


def test_credentials_never_reach_the_log_or_the_details(project: Project, server: _Server) -> None:
    token, password, key, cookie = "tok-5f3a9c1e", "pa55-w0rd", "k3y-77aa", "sid-0042abcd"
    url = server.url("/echo").replace("://", f"://etl:{password}@") + f"?day=1&api_key={key}"
    task = http(
        "secret",
        url,
        headers={"Authorization": "Bearer ${TOKEN}", "Cookie": f"session={cookie}"},
        env={"TOKEN": token},
    )
    result = run(project, [task])
    assert_exit(result, 0)
    [seen] = server.seen
    assert seen.headers["authorization"] == f"Bearer {token}"  # it was sent, for real
    log = log_text(project, "secret")
    details = json.dumps(only_attempt(project, "secret")["details"])
    for secret in (token, password, key, cookie):
        assert secret not in log, f"{secret} in the log:\n{log}"
        assert secret not in details
        assert secret not in result.stdout + result.stderr
    assert "> Authorization: Bearer ***\n" in log
    assert "> Cookie: ***\n" in log
    assert f"> GET http://etl:***@127.0.0.1:{server.server_address[1]}/echo" in log
    assert "day=1&api_key=***" in details
    assert '"authorization": "***"' in log  # the server's echo, masked as well


def test_large_body_is_streamed_not_held(project: Project, server: _Server) -> None:
    project.write_tasks([http("big", server.url("/big")), http("image", server.url("/image"))])
    completed, report = mflow_reporting(project, "run")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    size = len(BIG_CHUNK) * BIG_CHUNKS
    log = project.task_log(project.last_run_id(), "big")
    assert log.stat().st_size > size
    with open(log, "rb") as file:
        file.seek(-200, os.SEEK_END)
        assert f"\n-- {size} bytes of body; ".encode() in file.read()
    peak_mib = report["peak_kib"] / 1024
    # mflow alone takes some 50 MiB; holding the body would add all of it
    assert peak_mib < BIG_BODY_MIB, f"peak memory {peak_mib:.0f} MiB"
    image = log_text(project, "image")
    assert "-- binary body (image/png), not shown: 516 bytes of body" in image
    assert "PNG" not in image.split("\n\n", 1)[1]


# -- validation -----------------------------------------------------------------------------


def test_validate_reports_every_wrong_key_with_its_place(project: Project) -> None:
    tasks = [
        http("a", "ftp://files.example.com/x"),
        http("b", "https://api.example.com/", method="FETCH"),
        http("c", "https://api.example.com/", body="x", json={"x": 1}),
        http("d", "https://api.example.com/", expect_status="200"),
        http("e", "https://api.example.com/${NOT_SET_ANYWHERE_42}"),
        http("f", "http:///nohost"),
    ]
    path = project.write_tasks(tasks)
    result = project.mflow("validate", env=NO_PROXIES)
    assert_exit(result, 2)
    assert_no_traceback(result)
    lines = path.read_text().splitlines()
    found = problems(result.stderr)
    assert "6 problems found; nothing was run" in result.stderr, result
    expected = [
        ("a", "url", '"ftp://', "unsupported scheme 'ftp': use an http:// or https:// URL"),
        ("b", "method", '"FETCH"', "unknown HTTP method 'FETCH'"),
        ("c", "json", '{"x": 1}', "give either 'body' or 'json', not both"),
        ("d", "expect_status", '"200"', "must be an HTTP status code (100 to 599)"),
        ("e", "url", '"https://api', "${NOT_SET_ANYWHERE_42} is set neither in the environment"),
        ("f", "url", '"http:///', "the URL has no host name"),
    ]
    assert len(found) == len(expected), result
    for problem, (task_id, key, value, text) in zip(found, expected, strict=True):
        line = TASK_LINE + [t["id"] for t in tasks].index(task_id)
        assert problem.file.endswith("tasks.json")
        assert (problem.line, problem.col) == (line, lines[line - 1].index(value) + 1), problem
        assert f"task '{task_id}': key '{key}': {text}" in problem.text, problem
    assert project.nothing_recorded()


def test_validate_stays_light(project: Project) -> None:
    project.write_tasks([http("a", "https://api.example.com/", method="post", json=[1])])
    completed, report = mflow_reporting(project, "validate")
    assert completed.returncode == 0, completed.stderr[-2000:]
    imported = set(report["modules"])
    assert "mflow.tasktypes.http" in imported  # the task was checked...
    heavy = {name for name in imported if name.split(".")[0] in ("httpx", "ssl", "asyncio")}
    assert not heavy  # ...without what only running it needs


def test_variable_unset_when_the_task_runs_fails_it(tmp_path: Path) -> None:
    """A variable validate could not see missing (one mflow sets per run, say) fails the task."""
    from mflow.datasources import NO_DATASOURCES
    from mflow.tasktypes.base import TaskContext, TypeSetup
    from mflow.tasktypes.http import HttpSpec, HttpType

    spec = HttpSpec.model_validate(
        {"id": "t", "type": "http", "url": "http://127.0.0.1:9/?run=${MFLOW_SOMETHING}"},
        strict=True,
    )
    ctx = TaskContext(
        run_id=1, task_id="t", attempt=1, log_path=tmp_path / "t.log", cwd=tmp_path, env={}
    )
    result = asyncio.run(HttpType(TypeSetup(None, NO_DATASOURCES)).run(spec, ctx))
    assert not result.ok
    assert result.message == "url: ${MFLOW_SOMETHING} is not set in the task's environment"
    assert result.message in (tmp_path / "t.log").read_text()


def test_stopping_the_run_stops_the_request_at_once(project: Project, server: _Server) -> None:
    project.write_tasks([http("stuck", server.url("/hang"))])
    background = project.start("run", env=NO_PROXIES)
    wait_for(lambda: server.hits["/hang"], what="the request to reach the server")
    background.popen.send_signal(signal.SIGTERM)
    result = background.wait(10)  # the request hangs for ever: ending at all means stopped
    assert_exit(result, 143)
    assert project.task_states(project.last_run_id()) == {"stuck": "CANCELLED"}


def test_secrets_a_redirect_brings_are_masked_too(project: Project, server: _Server) -> None:
    project.write_tasks([http("r", server.url("/signed?token=ORIGSECRET777"))])
    assert_exit(project.mflow("run"), 0)
    log = project.task_log(1, "r").read_text()
    assert "< Location: /echo?X-Amz-Signature=***&token=***" in log
    for secret in ("SIGSECRET999", "TOKSECRET888", "ORIGSECRET777"):
        assert secret not in log  # neither in the headers nor in the echoed body


def test_a_charset_that_is_no_text_encoding_is_read_as_utf8(
    project: Project, server: _Server
) -> None:
    project.write_tasks([http("z", server.url("/zlib"))])
    assert_exit(project.mflow("run"), 0)
    assert "plain words" in project.task_log(1, "z").read_text()
