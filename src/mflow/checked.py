"""The checked input files as a run uses them: settings, flow, and both together.

No pydantic here, nor in anything the run path imports: a flow checked once can run again
without loading the models that checked it (see warmstart.py). The models are in
settings.py, flow.py and the task types' modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow.errors import EnvironmentFault, InvalidFilesError, Problem
from mflow.graph import Graph

if TYPE_CHECKING:
    from mflow.datasources import Datasources
    from mflow.statedb import Backend
    from mflow.tasktypes.registry import TaskTypes


@dataclass(frozen=True)
class Settings:
    """Settings with paths resolved and env expanded, ready to use."""

    source: Path | None  # None: no config.json, defaults only
    model: Any  # settings.SettingsModel, or its fields as attributes (warmstart.py)
    log_directory: Path
    env: dict[str, str]  # config env, expanded; merged over the process env at run time
    warnings: tuple[Problem, ...] = ()
    given: Path | None = None  # config.json as named (a symbolic link may be re-pointed)

    @property
    def max_process_concurrency(self) -> int:
        return self.model.max_process_concurrency


@dataclass(frozen=True)
class Flow:
    """A validated task file: tasks in file order, all dependencies known, no cycle."""

    path: Path
    tasks: dict[str, Any]  # id -> its TaskSpec (or the same keys as attributes)
    graph: Graph
    warnings: tuple[Problem, ...] = ()

    @property
    def folder(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class Inputs:
    settings: Settings
    flow: Flow
    types: TaskTypes
    datasources: Datasources | None = None  # None: none were read (a warm start)
    backend: Backend | None = None
    warnings: tuple[Problem, ...] = ()  # of every file: printed before anything runs


class SettingsWatcher:
    """Re-reads config.json when it changes, so a new limit applies without a restart."""

    def __init__(self, settings: Settings):
        self.current = settings
        self._stamp = self._read_stamp()
        self.last_error: str | None = None

    @property
    def watched(self) -> Path | None:
        """The file as named: a symbolic link re-pointed to another file is a change."""
        return self.current.given or self.current.source

    def _read_stamp(self) -> tuple[int, int, int, int] | None:
        if self.watched is None:
            return None
        try:
            st = os.stat(self.watched)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def poll(self) -> bool:
        """Reload if the file changed. True when the settings were replaced."""
        stamp = self._read_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        assert self.watched is not None
        from mflow.settings import load_settings  # the models load only when the file changed

        try:
            self.current = load_settings(self.watched, required=True)
        except (InvalidFilesError, EnvironmentFault) as exc:
            # Keep the old settings; the caller reports the problems.
            problems = getattr(exc, "problems", None)
            self.last_error = "\n".join(map(str, problems)) if problems else str(exc)
            return False
        self.last_error = None
        return True
