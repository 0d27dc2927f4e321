"""The web page in a real browser: chromium driven by Playwright, against a real `mflow serve`
on 127.0.0.1 and real runs. Skipped when chromium or Playwright is missing, unless
MFLOW_REQUIRE_SERVICES=1 (as in CI): then it fails.

Every test checks at its end that the page asked nothing of any host but the mflow server
(the page must work offline) and logged no error in the console."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import MFLOW, Project, bash, wait_for

REQUIRED = os.environ.get("MFLOW_REQUIRE_SERVICES") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "web-test-token-0123456789"
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
TIMEOUT_MS = 15_000
# A task that prints, then waits until the test creates the file `go` in the project.
GATED = "echo hello-from-task; while [ ! -e go ]; do sleep 0.1; done; echo gate-opened"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} (MFLOW_REQUIRE_SERVICES=1: the browser tests must run)")
    pytest.skip(reason)


def _chromium() -> str | None:
    named = os.environ.get("MFLOW_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    executable = _chromium()
    if executable is None:
        _unavailable("no chromium on this machine (set MFLOW_CHROMIUM to its path)")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    except Exception as exc:  # a broken browser install is reported, not a test failure
        playwright.stop()
        _unavailable(f"chromium does not start: {exc}")
    yield launched
    launched.close()
    playwright.stop()


class Browser:
    """A browser tab that records what it requests and what it logs."""

    def __init__(self, context: Any):
        self.context = context
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def assert_clean(self) -> None:
        """No request left 127.0.0.1 and nothing went wrong in the page's script."""
        outside = [
            url
            for url in self.requests
            if not url.startswith(("http://127.0.0.1:", "data:", "blob:", "about:"))
        ]
        assert not outside, f"requests that left 127.0.0.1: {outside}"
        assert not self.errors, f"console errors: {self.errors}"


@pytest.fixture
def tab(browser: Any) -> Iterator[Browser]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield Browser(context)
    finally:
        context.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str) -> Any:
    import json

    with _NO_PROXY.open(url, timeout=5) as answer:
        return json.loads(answer.read())


@pytest.fixture
def serve(project: Project) -> Iterator[Callable[..., str]]:
    """serve(token=None) -> base URL: `mflow serve` in the project folder, on a free port."""
    started: list[subprocess.Popen[bytes]] = []

    def start(token: str | None = None) -> str:
        port = _free_port()
        env = dict(os.environ)
        env.pop("MFLOW_API_TOKEN", None)
        if token:
            env["MFLOW_API_TOKEN"] = token
        log = project.root / f".serve-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*MFLOW, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=project.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        started.append(process)
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"mflow serve exited {process.returncode}:\n{log.read_text()}")
            try:
                return get_json(f"{base}/api/health")["status"] == "ok"
            except OSError:
                return False

        wait_for(healthy, timeout=20, what="mflow serve to answer")
        return base

    yield start
    for process in started:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _expect() -> Any:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    return expect


def _task_running(project: Project, task_id: str) -> bool:
    rows = project.db_when_ready(
        "SELECT state FROM mf_tasks WHERE task_id = ? ORDER BY run_id DESC LIMIT 1", task_id
    )
    return bool(rows) and rows[0]["state"] == "RUNNING"


# -- (a) a live run ---------------------------------------------------------------------------
def test_a_live_run_page_shows_the_dag_a_followed_log_and_the_run_ending(
    project: Project, serve: Callable[..., str], tab: Browser
):
    expect = _expect()
    project.write_tasks(
        [
            bash("prepare", "echo prepared"),
            bash("gated", GATED, "prepare"),
            bash("after", "echo after", "gated"),
            bash("broken", "echo broken-output; exit 3", "gated"),
            bash("unreached", "true", "broken"),
            bash("<b>bold</b> & <i>x", "echo tags", "prepare"),
        ]
    )
    running = project.start("run")
    wait_for(lambda: _task_running(project, "gated"), what="task gated to run")
    run_id = project.last_run_id()
    base = serve()
    page = tab.page
    page.goto(f"{base}/runs/{run_id}")
    expect(page.locator("#dag")).to_have_attribute("data-rendered", "true")
    expect(page.locator("#dag g.node")).to_have_count(6)
    expect(page.locator('#dag g.node[data-task="gated"]')).to_have_attribute(
        "data-state", "RUNNING"
    )
    expect(page.locator('#dag g.node[data-task="prepare"]')).to_have_attribute(
        "data-state", "SUCCESS"
    )
    expect(page.locator('#dag g.node[data-task="after"]')).to_have_attribute(
        "data-state", "PENDING"
    )
    expect(page.locator("#run-state")).to_have_attribute("data-state", "RUNNING")
    # text from the API is shown as text: no element made of a task id
    tagged = page.locator('#dag g.node[data-task="<b>bold</b> & <i>x"]')
    expect(tagged.locator("text")).to_have_text("<b>bold</b> & <i>x")
    made = "[...document.querySelectorAll('b, i')].filter(e => /^(bold|x)$/.test(e.textContent))"
    assert page.evaluate(f"{made}.length") == 0
    page.evaluate("window.notReloaded = true")

    # the running task's panel follows its log
    page.locator('#dag g.node[data-task="gated"]').click()
    expect(page.locator("#panel-task")).to_have_text("gated")
    expect(page.locator("#log-follow")).to_have_class(re.compile(r"\bon\b"))
    expect(page.locator("#log")).to_contain_text("hello-from-task")
    expect(page.locator("#panel tr.attempt")).to_have_count(1)

    # let the run go on: the page changes by itself
    (project.root / "go").touch()
    expect(page.locator("#log")).to_contain_text("gate-opened")
    expect(page.locator("#log-status")).to_contain_text("attempt ended: SUCCESS")
    expected = {
        "prepare": "SUCCESS",
        "gated": "SUCCESS",
        "after": "SUCCESS",
        "broken": "FAILED",
        "unreached": "UPSTREAM_FAILED",
    }
    for task_id, state in expected.items():
        expect(page.locator(f'#dag g.node[data-task="{task_id}"]')).to_have_attribute(
            "data-state", state
        )
    expect(page.locator("#run-state")).to_have_attribute("data-state", "FAILED")
    assert page.evaluate("window.notReloaded") is True
    result = running.wait()
    assert result.returncode == 1, str(result)

    # the timeline: a bar per attempt, coloured by its state
    bars = page.locator("#timeline rect.bar")
    expect(bars).to_have_count(5)  # `unreached` never started
    expect(page.locator('#timeline rect.bar[data-state="FAILED"]')).to_have_count(1)
    # a finished attempt's panel shows the tail of its log
    page.locator('#dag g.node[data-task="broken"]').click()
    expect(page.locator("#panel-task")).to_have_text("broken")
    expect(page.locator("#log")).to_contain_text("broken-output")
    expect(page.locator("#panel tr.attempt").first).to_contain_text("exit code 3")

    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "run-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    tab.assert_clean()


# -- (b) the runs list ------------------------------------------------------------------------
def test_b_the_runs_list_shows_states_filters_pages_and_refreshes(
    project: Project, serve: Callable[..., str], tab: Browser
):
    expect = _expect()
    project.write_tasks([bash("fine", "true")], name="good.json")
    project.write_tasks([bash("bad", "exit 1")], name="bad.json")
    assert project.mflow("run", "--taskfile", "good.json").returncode == 0
    assert project.mflow("run", "--taskfile", "bad.json").returncode == 1
    base = serve()
    page = tab.page
    page.goto(f"{base}/")
    rows = page.locator("#runs tr.run")
    expect(rows).to_have_count(2)
    assert {rows.nth(i).get_attribute("data-state") for i in range(2)} == {"SUCCESS", "FAILED"}
    expect(rows.first.locator(".badge").first).to_have_text("FAILED")  # newest first
    expect(page.locator("#page-info")).to_have_text("1–2 of 2")

    page.select_option("#state-filter", "FAILED")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-state", "FAILED")
    expect(rows.first).to_contain_text("bad.json")
    assert "state=FAILED" in page.url
    page.select_option("#state-filter", "SUCCESS")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-state", "SUCCESS")
    page.select_option("#state-filter", "")
    page.fill("#flow-filter", "bad")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bad.json")
    page.fill("#flow-filter", "")
    expect(rows).to_have_count(2)

    # a new run shows up without reloading the page
    assert project.mflow("run", "--taskfile", "good.json").returncode == 0
    expect(rows).to_have_count(3, timeout=12_000)
    # a run opens from its row
    rows.first.locator("a").first.click()
    page.wait_for_url(f"{base}/runs/3")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "SUCCESS")
    tab.assert_clean()


# -- (c) nested flows -------------------------------------------------------------------------
def test_c_a_nested_flows_run_opens_from_its_parent_tasks_panel(
    project: Project, serve: Callable[..., str], tab: Browser
):
    expect = _expect()
    project.write_tasks(
        [bash("inner_a", "echo inner"), bash("inner_b", "true", "inner_a")],
        name="flows/child.json",
    )
    project.write_tasks(
        [
            bash("first", "true"),
            {"id": "child", "type": "mflow", "taskfile": "flows/child.json", "depends": ["first"]},
        ]
    )
    assert project.mflow("run").returncode == 0
    runs = project.db("SELECT run_id, parent_run_id FROM mf_runs ORDER BY run_id")
    parent_id = next(r["run_id"] for r in runs if r["parent_run_id"] is None)
    child_id = next(r["run_id"] for r in runs if r["parent_run_id"] == parent_id)
    base = serve()
    page = tab.page
    page.goto(f"{base}/")
    expect(page.locator(f'#runs tr.run[data-run-id="{child_id}"] .nested')).to_contain_text(
        f"nested in #{parent_id}"
    )
    page.goto(f"{base}/runs/{parent_id}")
    page.locator('#dag g.node[data-task="child"]').click()
    link = page.locator("#nested-runs a")
    expect(link).to_have_text(f"run {child_id}")
    link.click()
    page.wait_for_url(f"{base}/runs/{child_id}")
    expect(page.locator("#dag g.node")).to_have_count(2)
    expect(page.locator("#parent-link")).to_contain_text(f"run {parent_id}")
    expect(page.locator("#parent-link")).to_contain_text("task child")
    # and back: the parent link opens the parent run with its task's panel
    page.locator("#parent-link a").click()
    page.wait_for_url(f"{base}/runs/{parent_id}?task=child")
    expect(page.locator("#panel-task")).to_have_text("child")
    tab.assert_clean()


# -- (d) actions ------------------------------------------------------------------------------
def test_d_cancel_asks_for_the_token_and_cancels_and_a_read_only_server_shows_no_actions(
    project: Project, serve: Callable[..., str], tab: Browser
):
    expect = _expect()
    project.write_tasks([bash("wait", GATED)])
    running = project.start("run")
    wait_for(lambda: _task_running(project, "wait"), what="task wait to run")
    run_id = project.last_run_id()
    read_only = serve()
    page = tab.page
    page.goto(f"{read_only}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "RUNNING")
    page.locator('#dag g.node[data-task="wait"]').click()
    expect(page.locator("#log")).to_contain_text("hello-from-task")
    assert page.locator("#cancel-run, #resume-run, #retry-task").count() == 0

    base = serve(token=TOKEN)
    page.goto(f"{base}/runs/{run_id}")
    cancel = page.locator("#cancel-run")
    expect(cancel).to_be_visible()
    cancel.click()
    expect(page.locator("#action-dialog")).to_be_visible()
    page.fill("#token-input", "not-the-token-at-all")
    page.click("#action-confirm")
    expect(page.locator("#action-error")).to_contain_text("Bearer")  # the API's own message
    assert [error for error in tab.errors if "401" not in error] == []
    tab.errors.clear()  # the browser logs the refused request, rightly
    page.fill("#token-input", TOKEN)
    page.click("#action-confirm")
    expect(page.locator("#action-dialog")).to_be_hidden()
    expect(page.locator("#run-state")).to_have_attribute("data-state", "CANCELLED")
    result = running.wait()
    assert result.returncode == 143, str(result)
    assert project.db("SELECT state FROM mf_runs WHERE run_id = ?", run_id)[0]["state"] == (
        "CANCELLED"
    )
    # the run is over: Resume now, with the token kept for this tab
    expect(page.locator("#resume-run")).to_be_visible()
    expect(page.locator("#cancel-run")).to_have_count(0)
    page.locator("#resume-run").click()
    expect(page.locator("#token-kept")).to_be_visible()
    page.click("#action-close")

    page.goto(f"{read_only}/runs/{run_id}")
    expect(page.locator("#run-state")).to_have_attribute("data-state", "CANCELLED")
    page.locator('#dag g.node[data-task="wait"]').click()
    expect(page.locator("#panel-task")).to_have_text("wait")
    assert page.locator("#cancel-run, #resume-run, #retry-task").count() == 0
    tab.assert_clean()


# -- (e) offline ------------------------------------------------------------------------------
def test_e_every_asset_comes_from_the_server_and_the_console_stays_clean(
    project: Project, serve: Callable[..., str], tab: Browser
):
    expect = _expect()
    project.write_tasks([bash("one", "echo one"), bash("two", "echo two", "one")])
    assert project.mflow("run").returncode == 0
    base = serve()
    page = tab.page
    page.goto(f"{base}/")
    expect(page.locator("#runs tr.run")).to_have_count(1)
    page.goto(f"{base}/runs/1?task=two")
    expect(page.locator("#dag")).to_have_attribute("data-rendered", "true")
    expect(page.locator("#log")).to_contain_text("two")
    page.click("#log-follow")
    expect(page.locator("#log-status")).to_contain_text("attempt ended: SUCCESS")
    # pan and zoom: the wheel zooms, a drag pans
    viewport = page.locator("#dag g.viewport")
    box = page.locator("#dag svg").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    before = viewport.get_attribute("transform")
    page.mouse.wheel(0, -400)
    expect(viewport).not_to_have_attribute("transform", before)
    zoomed = viewport.get_attribute("transform")
    page.mouse.down()
    page.mouse.move(box["x"] + 220, box["y"] + 160, steps=6)
    page.mouse.up()
    expect(viewport).not_to_have_attribute("transform", zoomed)
    assert zoomed.split("scale")[1] == viewport.get_attribute("transform").split("scale")[1]
    page.goto(f"{base}/runs/999")
    expect(page.locator("#main")).to_contain_text("no run 999")
    tab.errors.clear()  # the 404 of that missing run is logged by the browser, rightly

    # the API's docs: Swagger UI from the package, not from a CDN
    page.goto(f"{base}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("mflow")
    expect(page.locator(".opblock-tag-section").first).to_be_visible()
    assert any(
        url.endswith("/static/vendor/swagger-ui/swagger-ui-bundle.js") for url in tab.requests
    )
    assert any(url.endswith("/static/vendor/dagre/dagre.min.js") for url in tab.requests)
    tab.assert_clean()
