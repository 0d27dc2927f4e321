"""`--resume RUN`: which tasks to run again, and whether the task file still fits that run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mflow.checked import Flow
from mflow.errors import UsageError
from mflow.states import RunState, TaskState
from mflow.store.rows import stored_depends


class NothingToResume(UsageError):
    """Not an error: what the resume would do was done (exit 0)."""


@dataclass
class ResumePlan:
    run_id: int
    task_ids: list[str]  # the resumed run's tasks, in file order
    skipped: dict[str, str]  # those that already succeeded, with where they did
    notes: list[str] = field(default_factory=list)
    scope: str | None = None  # the resumed run's, if it was a partial run
    resumes_seen: int = 0  # the newest run that resumed it when this plan was made


def plan_resume(
    run: dict[str, Any] | None,
    run_id: int,
    tasks: list[dict[str, Any]],
    flow: Flow,
    digests: dict[str, str],
    *,
    force: bool,
    resumers: Sequence[dict[str, Any]] = (),
) -> ResumePlan:
    """`resumers`: the runs that resumed this one before, newest first."""
    if run is None:
        raise UsageError(f"no run {run_id} to resume; `mflow runs` lists the runs")
    if run["state"] == RunState.RUNNING:
        raise UsageError(
            f"run {run_id} is still running (pid {run['pid']} on {run['host']}); "
            "wait for it to end, or stop it first"
        )
    changes, notes = [], []
    notes += _resumed_before(run_id, resumers, force)
    previous = {row["task_id"]: row for row in tasks}
    for task_id, row in previous.items():
        spec = flow.tasks.get(task_id)
        if spec is None:
            changes.append(f"task '{task_id}' was removed from the task file")
            continue
        old_deps = stored_depends(row)
        if sorted(set(old_deps)) != sorted(set(spec.depends)):
            changes.append(f"task '{task_id}': depends changed from {old_deps} to {spec.depends}")
        elif row["digest"] and row["digest"] != digests[task_id]:
            notes.append(
                f"task '{task_id}' changed since run {run_id}"
                + (
                    "; it succeeded there and is not run again"
                    if row["state"] in (TaskState.SUCCESS, TaskState.SKIPPED)
                    else ""
                )
            )
    added = [task_id for task_id in flow.tasks if task_id not in previous]
    whole_flow = run.get("scope") is None
    if added:
        shown = ", ".join(added[:10]) + (f" and {len(added) - 10} more" if len(added) > 10 else "")
        notes.append(
            f"new since run {run_id}, so run now: {shown}"
            if whole_flow
            else f"not part of run {run_id} ({run['scope']}), so not run: {shown}"
        )
    if changes and not force:
        raise UsageError(
            f"the task file changed since run {run_id}, so resuming it is unsafe:\n  "
            + "\n  ".join(changes)
            + "\nstart a new run, or resume anyway with --force"
        )
    notes += [f"resuming despite: {change}" for change in changes]
    task_ids = [t for t in flow.tasks if t in previous or (whole_flow and t in added)]
    skipped = {}
    for task_id in task_ids:
        row = previous.get(task_id)
        if row is None:
            continue
        if row["state"] == TaskState.SUCCESS:
            skipped[task_id] = f"succeeded in run {run_id}"
        elif row["state"] == TaskState.SKIPPED:
            skipped[task_id] = row["message"] or f"succeeded before run {run_id}"
    seen = max((r["run_id"] for r in resumers), default=0)
    return ResumePlan(run_id, task_ids, skipped, notes, run.get("scope"), seen)


def _resumed_before(run_id: int, resumers: Sequence[dict[str, Any]], force: bool) -> list[str]:
    """A resume of a run another run resumes now is refused (both would run its tasks).
    One of a run whose resume succeeded has nothing left to do (a second click, a cron job
    fired twice), unless forced."""
    running = [r for r in resumers if r["state"] == RunState.RUNNING]
    if running:
        other = running[0]
        raise UsageError(
            f"run {run_id} is being resumed by run {other['run_id']} (pid {other['pid']} on "
            f"{other['host']}); wait for it to end (mflow status {other['run_id']})"
        )
    if not resumers:
        return []
    latest = resumers[0]
    if latest["state"] == RunState.SUCCESS and not force:
        raise NothingToResume(
            f"run {run_id} was resumed by run {latest['run_id']}, which succeeded; nothing "
            "to resume (to run its unfinished tasks again anyway: --force)"
        )
    return [
        f"run {run_id} was resumed before by run {latest['run_id']} ({latest['state']}); "
        f"`mflow resume {latest['run_id']}` would not run again what that one finished"
    ]
