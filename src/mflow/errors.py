"""Errors users see, each with its exit code; and `Problem`, one finding in an input file.

MflowError (70: a bug if it escapes unclassified)
├── UsageError        2  bad command line
├── InvalidFilesError 2  config.json / tasks.json / datasources invalid: lists every Problem
├── EnvironmentFault  3  backend unreachable, log folder not writable, ...
└── InternalError    70  a bug caught during a run (its traceback is printed)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an input file, located as precisely as we can."""

    file: str
    line: int = 0
    column: int = 0
    task_id: str | None = None
    key: str | None = None
    message: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.column or 1}"
        parts = [where]
        if self.task_id is not None:
            parts.append(f"task '{self.task_id}'")
        if self.key:
            parts.append(f"key '{self.key}'")
        return ": ".join(parts) + ": " + self.message

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.message)


class MflowError(Exception):
    exit_code = 70


class UsageError(MflowError):
    exit_code = 2


class InvalidFilesError(MflowError):
    exit_code = 2

    def __init__(
        self,
        problems: list[Problem],
        warnings: list[Problem] | tuple[Problem, ...] = (),
        outcome: str = "nothing was run",
    ):
        self.problems = sorted(problems, key=Problem.sort_key)
        self.warnings = sorted(warnings, key=Problem.sort_key)
        count = len(self.problems)
        self.summary = f"{count} problem{'s' if count != 1 else ''} found; {outcome}"
        super().__init__("\n".join([*map(str, self.problems), self.summary]))

    def instead(self, outcome: str) -> InvalidFilesError:
        """The same problems, for a command that was to do something else than run."""
        return InvalidFilesError(self.problems, self.warnings, outcome)


class EnvironmentFault(MflowError):
    exit_code = 3


class InternalError(MflowError):
    """A bug found while running: reported with its traceback, exit 70."""

    exit_code = 70
