"""Run history as people and scripts read it: the stable JSON of `runs`/`status`, text
tables, and a task log read (or followed) from its file."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from mflow.errors import UsageError
from mflow.logs import log_is_current
from mflow.modelcheck import suggest
from mflow.states import RunState, TaskState


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def _duration(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def run_json(run: dict[str, Any]) -> dict[str, Any]:
    """The documented, stable fields of a run."""
    return {
        "run_id": run["run_id"],
        "state": run["state"],
        "flow_path": run["flow_path"],
        "started_at": _iso(run["started_at"]),
        "ended_at": _iso(run["ended_at"]),
        "duration_s": _duration(run["started_at"], run["ended_at"]),
        "task_count": run["task_count"],
        "task_states": dict(sorted(run.get("task_states", {}).items())),
        "pid": run["pid"],
        "host": run["host"],
        "message": run["message"],
        "resumed_from": run.get("resumed_from"),
        "parent": (
            {
                "run_id": run["parent_run_id"],
                "task_id": run.get("parent_task_id"),
                "attempt": run.get("parent_attempt"),
            }
            if run.get("parent_run_id") is not None
            else None
        ),
    }


def status_json(
    run: dict[str, Any], tasks: list[dict[str, Any]], attempts: list[dict[str, Any]]
) -> dict[str, Any]:
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in attempts:
        by_task.setdefault(row["task_id"], []).append(attempt_json(row))
    return {
        **run_json(run),
        "tasks": [
            {
                "task_id": task["task_id"],
                "type": task["task_type"],
                "state": task["state"],
                "max_attempts": task["max_attempts"],
                "attempts": by_task.get(task["task_id"], []),
                "message": task["message"],
            }
            for task in tasks
        ],
    }


def _details(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        return {"unreadable": raw}
    return found if isinstance(found, dict) else {"value": found}


def status_tree(store: Any, run: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """status_json of a run, each `mflow` task with the nested runs it started."""
    run_id = run["run_id"]
    data = status_json(run, store.task_rows(run_id), store.attempt_rows(run_id))
    children: dict[str, list[dict[str, Any]]] = {}
    if depth < 20:  # nesting is bounded when runs start; this guards a doctored database
        for child in store.child_runs(run_id):
            children.setdefault(child["parent_task_id"], []).append(
                status_tree(store, child, depth + 1)
            )
    for task in data["tasks"]:
        if task["task_id"] in children:
            task["nested_runs"] = children[task["task_id"]]
    return data


def attempt_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "state": row["state"],
        "started_at": _iso(row["started_at"]),
        "ended_at": _iso(row["ended_at"]),
        "duration_s": _duration(row["started_at"], row["ended_at"]),
        "exit_code": row["exit_code"],
        "message": row["message"],
        "pid": row["pid"],
        "host": row["host"],
        "log_path": row["log_path"],
        "details": _details(row.get("details")),
    }


def runs_table(rows: list[dict[str, Any]]) -> str:
    table = [["RUN", "STATE", "STARTED (UTC)", "DURATION", "TASKS", "FLOW"]]
    for row in rows:
        duration = f"{row['duration_s']:.1f} s" if row["duration_s"] is not None else "-"
        counts = ", ".join(f"{n} {s}" for s, n in row["task_states"].items())
        table.append(
            [
                str(row["run_id"]),
                row["state"],
                (row["started_at"] or "")[:23],
                duration,
                counts,
                row["flow_path"] + _nested_in(row),
            ]
        )
    return _columns(table, right={0, 3})


def _nested_in(row: dict[str, Any]) -> str:
    parent = row.get("parent")
    return f"  (nested: run {parent['run_id']}, task {parent['task_id']})" if parent else ""


def _columns(table: list[list[str]], right: set[int]) -> str:
    """Rows as aligned text columns, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row[:-1])
        ]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def status_text(data: dict[str, Any]) -> str:
    duration = f"{data['duration_s']:.2f} s" if data["duration_s"] is not None else "running"
    lines = [
        f"run {data['run_id']} {data['state']}  {data['flow_path']}",
        f"started {data['started_at']}  {duration}  pid {data['pid']} on {data['host']}",
    ]
    if data["parent"]:
        parent = data["parent"]
        lines.append(
            f"nested flow of run {parent['run_id']}, task {parent['task_id']} "
            f"(attempt {parent['attempt']})"
        )
    if data["message"]:
        lines.append(data["message"])
    width = max([len(t["task_id"]) for t in _all_tasks(data)] + [4]) + 4 * _depth(data)
    width = max([width, *(len(f"  > run {r}") + 4 * _depth(data) for r in _nested_ids(data))])
    lines.append(
        f"{'TASK':<{width}}  {'STATE':<15} {'TRY':>5} {'EXIT':>4} {'TIME':>8}  MESSAGE / LOG"
    )
    _task_lines(data, lines, width, "")
    return "\n".join(lines)


def _task_lines(data: dict[str, Any], lines: list[str], width: int, indent: str) -> None:
    for task in data["tasks"]:
        last = task["attempts"][-1] if task["attempts"] else {}
        exit_code = "" if last.get("exit_code") is None else str(last["exit_code"])
        took = f"{last['duration_s']:.2f}s" if last.get("duration_s") is not None else ""
        log = _log_or_none(last.get("log_path"), last.get("started_at"))
        # A failed task's log is the one most wanted: shown after its message
        detail = (
            f"{task['message']}; log: {log}"
            if task["message"] and log.startswith("/")
            else task["message"] or log
        )
        tries = f"{len(task['attempts'])}/{task['max_attempts']}"
        name = indent + task["task_id"]
        lines.append(
            f"{name:<{width}}  {task['state']:<15} {tries:>5} {exit_code:>4} {took:>8}  {detail}"
        )
        for child in task.get("nested_runs", ()):
            took = f"{child['duration_s']:.2f}s" if child["duration_s"] is not None else ""
            head = f"{indent}  > run {child['run_id']}"
            lines.append(
                f"{head:<{width}}  {child['state']:<15} {'':>5} {'':>4} {took:>8}  "
                f"{child['flow_path']}"
            )
            _task_lines(child, lines, width, indent + "    ")


def _all_tasks(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for task in data["tasks"]:
        yield task
        for child in task.get("nested_runs", ()):
            yield from _all_tasks(child)


def _nested_ids(data: dict[str, Any]) -> Iterator[int]:
    for task in data["tasks"]:
        for child in task.get("nested_runs", ()):
            yield child["run_id"]
            yield from _nested_ids(child)


def _depth(data: dict[str, Any]) -> int:
    nested = [child for task in data["tasks"] for child in task.get("nested_runs", ())]
    return 1 + max(_depth(child) for child in nested) if nested else 0


def _log_or_none(path: str | None, started_at: datetime | str | None) -> str:
    if not path:
        return ""
    try:
        current = log_is_current(os.stat(path), started_at)
    except OSError:
        current = False
    return path if current else "(no output)"


def log_chunks(
    store: Any, run_id: int, task_id: str, attempt: int | None, follow: bool
) -> Iterator[bytes]:
    """The bytes of a task attempt's log; with `follow`, more as they come until it ends."""
    rows = _attempts_to_read(store, run_id, task_id, follow)
    if attempt is None:
        row = max(rows, key=lambda r: r["attempt"])
    else:
        row = next((r for r in rows if r["attempt"] == attempt), None)
        if row is None:
            raise UsageError(
                f"task '{task_id}' of run {run_id} has attempts "
                f"{', '.join(str(r['attempt']) for r in rows)}, not {attempt}"
            )
    path = row["log_path"]
    log = None
    over = _Watch(store, run_id, task_id, row["attempt"])
    try:
        while True:
            if log is None:
                log = _open_current(path, row["started_at"])
                if log is None:
                    # No file yet: the task has printed nothing (so far).
                    if not follow or over():
                        return
                    time.sleep(0.2)
                    continue
            chunk = log.read(65536)
            if chunk:
                yield chunk
                continue
            if not follow or over():
                rest = log.read()
                if rest:
                    yield rest
                return
            time.sleep(0.2)
    finally:
        if log is not None:
            log.close()


def _open_current(path: str, started_at: datetime | str | None) -> Any:
    """The attempt's log opened for reading, or None if it has none (see log_is_current)."""
    try:
        log = open(path, "rb")  # noqa: SIM115
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not the task's log") from None
    except FileNotFoundError:
        return None
    if log_is_current(os.fstat(log.fileno()), started_at):
        return log
    log.close()
    return None


def _attempts_to_read(store: Any, run_id: int, task_id: str, follow: bool) -> list[dict]:
    """The task's attempts; with `follow`, waits for a task of a live run to start."""
    run = store.get_run(run_id)
    if run is None:
        raise UsageError(f"no run {run_id}; `mflow runs` lists the runs")
    tasks = {row["task_id"]: row for row in store.task_rows(run_id)}
    task = tasks.get(task_id)
    if task is None:
        raise UsageError(f"run {run_id} has no task '{task_id}'{suggest(task_id, tasks)}")
    while True:
        rows = store.attempt_rows(run_id, task_id)
        if rows:
            return rows
        if task["state"] == TaskState.SKIPPED:
            raise UsageError(
                f"task '{task_id}' was SKIPPED in run {run_id}: "
                f"{task['message']}; see the log of that run"
            )
        if (
            not follow
            or store.get_run(run_id)["state"] != RunState.RUNNING
            or store.run_is_gone(run_id)
        ):
            raise UsageError(
                f"task '{task_id}' of run {run_id} did not start "
                f"({task['state']}); `mflow status {run_id}` says why"
            )
        time.sleep(0.2)  # -f on a task still waiting for its turn
        task = {row["task_id"]: row for row in store.task_rows(run_id)}[task_id]


class _Watch:
    """Whether a followed attempt is over: recorded so, or its run's mflow is gone (which
    would never record it; looked at every LIVENESS_EVERY checks)."""

    LIVENESS_EVERY = 5  # one second of 0.2 s waits

    def __init__(self, store: Any, run_id: int, task_id: str, attempt: int):
        self.store, self.run_id, self.task_id, self.attempt = store, run_id, task_id, attempt
        self.checks = 0

    def __call__(self) -> bool:
        rows = self.store.attempt_rows(self.run_id, self.task_id)
        row = next((r for r in rows if r["attempt"] == self.attempt), None)
        if row is None or row["state"] != TaskState.RUNNING:
            return True
        self.checks += 1
        return self.checks % self.LIVENESS_EVERY == 0 and self.store.run_is_gone(self.run_id)
