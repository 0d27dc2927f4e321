"""Load and check the input files, and open the state store they point at."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.errors import EnvironmentFault, InvalidFilesError, Problem, UsageError
from mflow.flow import Flow, load_flow
from mflow.settings import Settings, load_settings
from mflow.tasktypes import TaskTypes, builtin_types

if TYPE_CHECKING:
    from mflow.store.sqlite_writer import SqliteRunWriter
    from mflow.store.store import StateStore


@dataclass(frozen=True)
class Inputs:
    settings: Settings
    flow: Flow
    types: TaskTypes


def load_inputs(config: Path, config_required: bool, taskfile: Path) -> Inputs:
    """Settings and flow, validated; problems of both files are reported together."""
    types = builtin_types()
    problems: list[Problem] = []
    warnings: list[Problem] = []
    try:
        settings = load_settings(config, required=config_required)
        variables = {**os.environ, **settings.env}
    except InvalidFilesError as exc:
        problems += exc.problems
        warnings += exc.warnings
        variables = dict(os.environ)
    try:
        flow = load_flow(taskfile, types, variables)
    except InvalidFilesError as exc:
        problems += exc.problems
        warnings += exc.warnings
    if problems:
        raise InvalidFilesError(problems, warnings)
    return Inputs(settings, flow, types)


def backend_url(settings: Settings) -> str:
    """The backend named in config.json, else SQLite in the log folder."""
    return settings.model.backend or f"sqlite:///{settings.log_directory / 'mflow.db'}"


class NoStateDatabase(UsageError):
    """A read-only command found no state database where config.json says it is."""


def open_store(settings: Settings, *, create: bool = True) -> StateStore:
    """The store for reading and for non-SQLite backends. (Imports SQLAlchemy.)
    With create=False a missing SQLite file is an error rather than a new database."""
    from mflow.store.store import StateStore

    url = backend_url(settings)
    read_only = False
    if not create and url.startswith("sqlite:///"):
        path = Path(url[10:])
        if not path.exists():
            where = settings.source or "./config.json (not found)"
            raise NoStateDatabase(
                f"no state database at {path}, where {where} puts it; "
                "run a flow first, or give the --config it was run with"
            )
        read_only = not os.access(path, os.W_OK)  # looking needs no write permission
    if create:
        prepare_log_directory(settings.log_directory)
    return StateStore(url, read_only=read_only)


def open_run_writer(settings: Settings) -> SqliteRunWriter | StateStore:
    """What `mflow run` records through: a lean sqlite3 writer for a plain SQLite file."""
    url = backend_url(settings)
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or url == prefix + ":memory:":
        return open_store(settings)
    from mflow.store.sqlite_writer import SqliteRunWriter

    prepare_log_directory(settings.log_directory)
    path = Path(url[len(prefix) :])
    if path.parent != settings.log_directory:
        prepare_log_directory(path.parent)
    return SqliteRunWriter(path)


def prepare_log_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".mflow-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise EnvironmentFault(
            f"log_directory {path} is not usable: {exc.strerror or exc}; "
            "create it or point log_directory elsewhere"
        ) from None
