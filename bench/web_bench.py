#!/usr/bin/env python3
"""Benchmark of the REST API and the web page at scale (not a test: prints figures).

(i)  A SQLite state database with 10,000 recorded runs (8 tasks each, written straight into
     mflow's tables after mflow created them), `mflow serve` on it, and the latency of
     GET /api/runs (the first page, 50 runs): median and p95 over 50 requests on one
     keep-alive connection, against the 100 ms target. A state filter, a task-file filter
     and the last page are timed too, for information.
(ii) A real `mflow run` of 2,000 `true` tasks in 20 layers of 100 (each task of a layer
     after the first depends on 4 of the layer before), then its run page opened in
     chromium: the time from navigation start until the DAG is drawn (the page sets
     window.mflowDagRendered after the frame that shows it), median of 5 page loads,
     against the 2 s target. The page picks its layout by size (dagre up to a size, the
     built-in layered layout above); the same page with dagre forced is timed once, for
     information.

  python bench/web_bench.py                  # both parts
  python bench/web_bench.py --no-browser     # (i) only
  python bench/web_bench.py --runs 20000 --tasks 3000 --out /tmp/web-bench   # keep the files

Writes the figures to bench/results-web.json as well (--json to change). Chromium: the
`chromium` on the PATH, or MFLOW_CHROMIUM. Exit status 1 only if something failed to run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIST_TARGET_MS = 100.0
RENDER_TARGET_MS = 2000.0
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
RUN_STATES = ["SUCCESS"] * 85 + ["FAILED"] * 10 + ["CANCELLED"] * 3 + ["INTERRUPTED"] * 2


# -- (i) 10,000 recorded runs -----------------------------------------------------------------
def record_runs(folder: Path, runs: int, tasks_per_run: int) -> Path:
    """mflow creates the state database; the rows go in with plain SQL, in one transaction."""
    from mflow.store.rows import sqlite_timestamp
    from mflow.store.sqlite_writer import SqliteRunWriter

    db = folder / "logs" / "mflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    writer = SqliteRunWriter(db)  # the schema, as `mflow run` makes it
    conn = writer.conn
    rng = random.Random(42)
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10 * runs)
    run_rows = []
    task_rows = []
    for run_id in range(1, runs + 1):
        state = rng.choice(RUN_STATES)
        begun = start + timedelta(minutes=10 * run_id, seconds=rng.random())
        ended = begun + timedelta(seconds=rng.uniform(1, 600))
        nested = run_id > 1 and rng.random() < 0.05
        run_rows.append(
            (
                run_id,
                f"/data/flows/nightly_{run_id % 20}.json",
                "/data/flows/config.json",
                state,
                sqlite_timestamp(begun),
                sqlite_timestamp(ended),
                sqlite_timestamp(ended),
                10_000 + run_id,
                "batch1",
                tasks_per_run,
                run_id - 1 if nested else None,
                "child" if nested else None,
                1 if nested else None,
                f"{tasks_per_run} tasks",
            )
        )
        for position in range(tasks_per_run):
            if state == "SUCCESS":
                task_state = "SUCCESS"
            elif position < tasks_per_run // 2:
                task_state = "SUCCESS"
            elif position == tasks_per_run // 2:
                task_state = state if state != "FAILED" else "FAILED"
            else:
                task_state = "UPSTREAM_FAILED" if state == "FAILED" else state
            task_rows.append(
                (
                    run_id,
                    f"task_{position}",
                    position,
                    "bash",
                    task_state,
                    1,
                    1,
                    sqlite_timestamp(ended),
                    json.dumps([f"task_{position - 1}"] if position else []),
                )
            )
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO mf_runs (run_id, flow_path, config_path, state, started_at, ended_at,"
        " heartbeat_at, pid, host, task_count, parent_run_id, parent_task_id, parent_attempt,"
        " message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        run_rows,
    )
    conn.executemany(
        "INSERT INTO mf_tasks (run_id, task_id, position, task_type, state, attempts,"
        " max_attempts, updated_at, depends_on) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        task_rows,
    )
    conn.execute("COMMIT")
    writer.close()
    return db


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, mflow: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "MFLOW_API_TOKEN"}
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - open while the server runs
    process = subprocess.Popen(
        [*mflow, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mflow serve exited {process.returncode}: see {folder}/serve.log")
        try:
            status, _ = get(port, "/api/health")
            if status == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("mflow serve did not answer within 30 s")


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        if own:
            conn.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def time_requests(port: int, path: str, count: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(5):  # warm-up: imports, caches, the first reap of dead runs
            status, _ = get(port, path, conn)
            if status != 200:
                raise SystemExit(f"GET {path}: HTTP {status}")
        times = []
        for _ in range(count):
            begun = time.perf_counter()
            status, body = get(port, path, conn)
            times.append((time.perf_counter() - begun) * 1000)
            if status != 200:
                raise SystemExit(f"GET {path}: HTTP {status}")
    finally:
        conn.close()
    return {
        "median_ms": statistics.median(times),
        "p95_ms": percentile(times, 0.95),
        "min_ms": min(times),
        "max_ms": max(times),
        "requests": count,
        "bytes": len(body),
    }


# -- (ii) a 2,000-task run --------------------------------------------------------------------
def layered_tasks(count: int, width: int, deps: int) -> dict:
    tasks = []
    for n in range(count):
        layer, i = divmod(n, width)
        task: dict = {"id": f"l{layer}_{i}", "type": "bash", "command": "true"}
        if layer:
            task["depends"] = sorted(
                {f"l{layer - 1}_{(i + j * 7 + layer) % width}" for j in range(deps)}
            )
        tasks.append(task)
    return {"tasks": tasks}


def record_big_run(folder: Path, mflow: list[str], count: int) -> tuple[int, float, int]:
    flow = folder / "big"
    flow.mkdir(exist_ok=True)
    tasks = layered_tasks(count, width=100, deps=4)
    (flow / "tasks.json").write_text(json.dumps(tasks))
    (flow / "config.json").write_text(
        json.dumps({"log_directory": "../logs/", "max_process_concurrency": 8})
    )
    begun = time.monotonic()
    done = subprocess.run(
        [*mflow, "run"], cwd=flow, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    took = time.monotonic() - begun
    if done.returncode != 0:
        raise SystemExit(f"mflow run of {count} tasks exited {done.returncode}:\n{done.stderr}")
    run_id = int(done.stdout.split(":")[0].split()[1])
    edges = sum(len(task.get("depends", [])) for task in tasks["tasks"])
    return run_id, took, edges


def chromium() -> str | None:
    if os.environ.get("MFLOW_CHROMIUM"):
        return os.environ["MFLOW_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def time_page(port: int, run_id: int, repeat: int, forced: str | None) -> dict:
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{port}/runs/{run_id}" + (f"?layout={forced}" if forced else "")
    loads = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")  # the static files in the browser's cache
        for _ in range(repeat):
            page.goto(url)
            page.wait_for_function("window.mflowDagRendered !== undefined", timeout=120_000)
            stats = page.evaluate("window.mflowDagStats")
            stats["nodes_drawn"] = page.locator("#dag g.node").count()
            loads.append(stats)
        browser.close()
    totals = [load["since_navigation_ms"] for load in loads]
    return {
        "url": url,
        "layout": loads[-1]["layout"],
        "nodes": loads[-1]["nodes"],
        "edges": loads[-1]["edges"],
        "nodes_drawn": loads[-1]["nodes_drawn"],
        "median_ms": statistics.median(totals),
        "max_ms": max(totals),
        "loads": loads,
    }


def median_of(loads: list[dict], key: str) -> float:
    return statistics.median(load[key] for load in loads)


# -- main ---------------------------------------------------------------------------------------
def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs recorded for (i)")
    parser.add_argument("--tasks", type=int, default=2_000, help="tasks of the run for (ii)")
    parser.add_argument("--requests", type=int, default=50, help="timed GETs per measure")
    parser.add_argument("--repeat", type=int, default=5, help="page loads timed in (ii)")
    parser.add_argument("--no-browser", action="store_true", help="(i) only")
    parser.add_argument("--no-dagre", action="store_true", help="skip the forced-dagre load")
    parser.add_argument("--out", type=Path, help="keep the generated files in this folder")
    parser.add_argument("--json", type=Path, default=HERE / "results-web.json")
    args = parser.parse_args()
    mflow = [sys.executable, "-m", "mflow"]
    folder = args.out or Path(tempfile.mkdtemp(prefix="mflow-web-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"log_directory": "./logs/"}))
    results: dict = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "runs": args.runs,
    }
    rows = []
    server = None
    try:
        begun = time.monotonic()
        if not (folder / "logs" / "mflow.db").exists():
            record_runs(folder, args.runs, 8)
        results["record_s"] = round(time.monotonic() - begun, 2)
        server, port = start_server(folder, mflow)
        measures = {
            f"GET /api/runs (first page of {args.runs:,} runs)": "/api/runs",
            "GET /api/runs?state=FAILED": "/api/runs?state=FAILED",
            "GET /api/runs?flow=nightly_7": "/api/runs?flow=nightly_7",
            "GET /api/runs (last page)": f"/api/runs?offset={max(0, args.runs - 50)}",
        }
        results["api"] = {}
        for i, (name, path) in enumerate(measures.items()):
            timing = time_requests(port, path, args.requests)
            results["api"][path] = timing
            target = f"{LIST_TARGET_MS:.0f} ms" if i == 0 else "-"
            result = verdict(timing["p95_ms"], LIST_TARGET_MS) if i == 0 else "info"
            rows.append(
                (
                    name,
                    f"{timing['median_ms']:.1f} ms",
                    f"{timing['p95_ms']:.1f} ms",
                    target,
                    result,
                )
            )

        if not args.no_browser:
            if chromium() is None:
                print("no chromium found (set MFLOW_CHROMIUM): the page part is skipped")
            else:
                run_id, took, edges = record_big_run(folder, mflow, args.tasks)
                results["big_run"] = {
                    "run_id": run_id,
                    "tasks": args.tasks,
                    "edges": edges,
                    "mflow_run_s": round(took, 2),
                }
                timing = time_requests(port, f"/api/runs/{run_id}/dag", 10)
                rows.append(
                    (
                        f"GET /api/runs/{{id}}/dag ({args.tasks:,} tasks)",
                        f"{timing['median_ms']:.1f} ms",
                        f"{timing['p95_ms']:.1f} ms",
                        "-",
                        "info",
                    )
                )
                timing = time_requests(port, f"/api/runs/{run_id}", 10)
                rows.append(
                    (
                        f"GET /api/runs/{{id}} ({args.tasks:,} tasks)",
                        f"{timing['median_ms']:.1f} ms",
                        f"{timing['p95_ms']:.1f} ms",
                        "-",
                        "info",
                    )
                )
                page = time_page(port, run_id, args.repeat, None)
                results["page"] = page
                rows.append(
                    (
                        f"run page, {page['nodes']:,} tasks / {page['edges']:,} edges ({page['layout']})",
                        f"{page['median_ms']:.0f} ms",
                        f"{page['max_ms']:.0f} ms",
                        f"{RENDER_TARGET_MS:.0f} ms",
                        verdict(page["median_ms"], RENDER_TARGET_MS),
                    )
                )
                for key in ("fetch_ms", "layout_ms", "draw_ms"):
                    rows.append(
                        (
                            f"  of which {key[:-3]}",
                            f"{median_of(page['loads'], key):.0f} ms",
                            "",
                            "",
                            "",
                        )
                    )
                if not args.no_dagre:
                    forced = time_page(port, run_id, 1, "dagre")
                    results["page_dagre_forced"] = forced
                    rows.append(
                        (
                            f"run page, same run, dagre forced ({forced['layout']})",
                            f"{forced['median_ms']:.0f} ms",
                            "",
                            "-",
                            "info",
                        )
                    )
                    rows.append(
                        (
                            "  of which layout",
                            f"{median_of(forced['loads'], 'layout_ms'):.0f} ms",
                            "",
                            "",
                            "",
                        )
                    )
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if args.out is None:
            shutil.rmtree(folder, ignore_errors=True)

    widths = [
        max(len(row[i]) for row in [("measure", "median", "p95/max", "target", ""), *rows])
        for i in range(5)
    ]
    header = ("measure", "median", "p95/max", "target", "")
    print(results["machine"])
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
        )
    results["table"] = [
        dict(zip(("measure", "median", "p95_or_max", "target", "result"), row, strict=True))
        for row in rows
    ]
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"(written to {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
