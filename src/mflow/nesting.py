"""The link between a nested flow's `mflow run` and the task of the parent run that started it.

The parent passes it in the environment variable below (not on the command line, where
`ps` would show the backend's password); the child takes it out of its environment at
once, so its own tasks do not inherit it. The child records its run in the parent's state
database, linked to the parent's run, task and attempt, and continues the last run of the
same task (in this run or in the runs it resumes) instead of starting afresh: a retry or a
resume of the parent resumes the child.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mflow.errors import InternalError, UsageError

PARENT_VARIABLE = "MFLOW_PARENT"
MAX_DEPTH = 20  # deeper nesting is surely a flow that starts itself

# Task files of the flow this process runs and of the flows above it, outermost first:
# what a nested flow started from here must not be.
current_chain: tuple[str, ...] = ()
# Task files being validated, outermost first (validating a flow validates its nested ones).
validating: list[str] = []


@dataclass(frozen=True)
class ParentLink:
    run_id: int
    task_id: str
    attempt: int
    backend_url: str
    backend_display: str
    connect_args: dict[str, Any]
    force: bool = False  # the parent resume was asked with --force
    chain: tuple[str, ...] = ()  # task files of the flows above, outermost first

    def to_environment(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def take_from_environment(cls) -> ParentLink | None:
        raw = os.environ.pop(PARENT_VARIABLE, None)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            link = cls(**{**data, "chain": tuple(data.get("chain", ()))})
        except (ValueError, TypeError) as exc:
            raise InternalError(f"{PARENT_VARIABLE} is not what mflow writes: {exc}") from None
        return link

    def check_taskfile(self, taskfile: Path) -> None:
        """Refuse a flow that (through its nested flows) starts itself."""
        path = str(taskfile.resolve())
        shown = " -> ".join([*self.chain, path])
        if path in self.chain:
            raise UsageError(f"a nested flow that starts itself: {shown}")
        if len(self.chain) >= MAX_DEPTH:
            raise UsageError(f"nested flows deeper than {MAX_DEPTH} levels: {shown}")

    def run_columns(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.run_id,
            "parent_task_id": self.task_id,
            "parent_attempt": self.attempt,
        }

    @property
    def backend(self) -> Any:
        from mflow.inputs import Backend

        return Backend(self.backend_url, self.connect_args, self.backend_display)
