"""Task and run states (persisted values: never rename, only add) and the transition table."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"
    INTERRUPTED = "INTERRUPTED"

    @property
    def finished(self) -> bool:
        return self in FINISHED_TASK_STATES


class RunState(StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"


FINISHED_TASK_STATES = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.UPSTREAM_FAILED,
        TaskState.CANCELLED,
        TaskState.SKIPPED,
        TaskState.INTERRUPTED,
    }
)

# The one place that says which task-state changes are legal.
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset(
        {TaskState.RUNNING, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED, TaskState.SKIPPED}
    ),
    TaskState.RUNNING: frozenset(
        {
            TaskState.SUCCESS,
            TaskState.FAILED,
            TaskState.RETRYING,
            TaskState.CANCELLED,
            TaskState.INTERRUPTED,
        }
    ),
    TaskState.RETRYING: frozenset({TaskState.RUNNING, TaskState.CANCELLED}),
}


def check_transition(old: TaskState, new: TaskState) -> None:
    """Raise on an illegal change: that would be a bug in the engine, not a user error."""
    if new not in TASK_TRANSITIONS.get(old, frozenset()):
        raise AssertionError(f"illegal task transition {old} -> {new}")
