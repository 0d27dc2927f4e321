"""Load and check the input files, and open the state store they point at."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow.datasources import (
    BROKEN_DATASOURCES,
    NO_DATASOURCES,
    Datasources,
    load_datasources,
    url_problem,
    with_driver,
)
from mflow.errors import EnvironmentFault, InvalidFilesError, Problem, UsageError
from mflow.flow import Flow, load_flow
from mflow.modelcheck import suggest
from mflow.reaper import TOKEN_VARIABLE
from mflow.settings import Settings, load_settings
from mflow.tasktypes import TaskTypes
from mflow.tasktypes.base import TypeSetup

if TYPE_CHECKING:
    from mflow.store.sqlite_writer import SqliteRunWriter
    from mflow.store.store import StateStore

DEFAULT_DATASOURCES = Path("oracle.json")
STATE_DATASOURCE = "mflow"  # the original kept its state in the connection of this name
RUN_ID_VARIABLE = "MFLOW_RUN_ID"
# Set by mflow for every task (their values are known only when the run starts).
RUN_VARIABLES = dict.fromkeys((RUN_ID_VARIABLE, TOKEN_VARIABLE), "")


@dataclass(frozen=True)
class Backend:
    """Where run state lives: a SQLAlchemy URL (password included: show `display`)."""

    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)
    display: str = ""

    @property
    def sqlite_path(self) -> Path | None:
        """The file of a plain SQLite backend, else None."""
        prefix = "sqlite:///"
        if not self.url.startswith(prefix) or "?" in self.url or self.url.endswith(":memory:"):
            return None
        return Path(self.url[len(prefix) :])


@dataclass(frozen=True)
class Inputs:
    settings: Settings
    flow: Flow
    types: TaskTypes
    datasources: Datasources = NO_DATASOURCES
    backend: Backend | None = None
    warnings: tuple[Problem, ...] = ()  # of every file: printed before anything runs


def load_inputs(
    config: Path,
    config_required: bool,
    taskfile: Path,
    datasources: Path | None = None,
    *,
    backend: Backend | None = None,
) -> Inputs:
    """Settings, datasources and flow, validated; every file's problems reported together.
    `backend`: record there, whatever config.json says (a nested flow uses its parent's)."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    settings = sources = None
    try:
        settings = load_settings(config, required=config_required)
    except InvalidFilesError as exc:
        problems += exc.problems
        warnings += exc.warnings
    try:
        sources = load_datasources(
            datasources or DEFAULT_DATASOURCES, required=datasources is not None
        )
    except InvalidFilesError as exc:
        problems += exc.problems
        warnings += exc.warnings
    if settings is not None and sources is not None and backend is None:
        try:
            backend = resolve_backend(settings, sources)
        except InvalidFilesError as exc:
            problems += exc.problems
    types = TaskTypes(TypeSetup(settings, sources or BROKEN_DATASOURCES, backend))
    variables = {**RUN_VARIABLES, **os.environ, **(settings.env if settings else {})}
    try:
        flow = load_flow(taskfile, types, variables)
    except InvalidFilesError as exc:
        problems += exc.problems
        warnings += exc.warnings
    if problems:
        raise InvalidFilesError(problems, warnings)
    assert settings is not None and sources is not None
    every = (*settings.warnings, *sources.warnings, *flow.warnings)
    return Inputs(settings, flow, types, sources, backend, every)


def load_backend(config: Path | None, datasources: Path | None) -> tuple[Settings, Backend]:
    """For the commands that only read state: config.json and datasources, no task file."""
    settings = load_settings(config or Path("config.json"), required=config is not None)
    sources = load_datasources(datasources or DEFAULT_DATASOURCES, required=datasources is not None)
    return settings, resolve_backend(settings, sources)


def resolve_backend(settings: Settings, datasources: Datasources) -> Backend:
    """config.json's `backend` (a URL or a datasource's name), else the datasource named
    `mflow` as in the original, else SQLite in the log folder."""
    named = settings.model.backend
    if named is not None and "://" in named:
        problem = url_problem(named)
        if problem:
            where = settings.source or Path("config.json")
            raise InvalidFilesError([Problem(str(where), key="backend", message=problem)])
        return Backend(with_driver(named), display=_safe(named))
    name = (
        named
        if named is not None
        else (STATE_DATASOURCE if STATE_DATASOURCE in datasources.by_name else None)
    )
    if name is None:
        url = f"sqlite:///{settings.log_directory / 'mflow.db'}"
        return Backend(url, display=url[len("sqlite:///") :])
    source = datasources.by_name.get(name)
    if source is None:
        where = settings.source or Path("config.json")
        known = ", ".join(sorted(datasources.by_name)) or "none"
        raise InvalidFilesError(
            [
                Problem(
                    str(where),
                    key="backend",
                    message=(
                        f"no datasource '{name}'{suggest(name, datasources.by_name)} "
                        f"(datasources: {known}); give a database URL or a datasource's name"
                    ),
                )
            ]
        )
    return Backend(source.url, source.connect_args, f"datasource '{name}': {source.display_url()}")


def _safe(url: str) -> str:
    from mflow.store.store import safe_url

    return safe_url(url)


class NoStateDatabase(UsageError):
    """A read-only command found no state database where config.json says it is."""


def open_store(settings: Settings, backend: Backend, *, create: bool = True) -> StateStore:
    """The store for reading and for non-SQLite backends. (Imports SQLAlchemy.)
    With create=False a missing SQLite file is an error rather than a new database."""
    from mflow.store.store import StateStore

    read_only = False
    path = backend.sqlite_path
    if not create and path is not None:
        if not path.exists():
            where = settings.source or "./config.json (not found)"
            raise NoStateDatabase(
                f"no state database at {path}, where {where} puts it; "
                "run a flow first, or give the --config it was run with"
            )
        read_only = not os.access(path, os.W_OK)  # looking needs no write permission
    if create:
        prepare_log_directory(settings.log_directory)
    return StateStore(backend.url, read_only=read_only, connect_args=backend.connect_args)


def open_run_writer(settings: Settings, backend: Backend) -> SqliteRunWriter | StateStore:
    """What `mflow run` records through: a lean sqlite3 writer for a plain SQLite file."""
    path = backend.sqlite_path
    if path is None:
        return open_store(settings, backend)
    from mflow.store.sqlite_writer import SqliteRunWriter

    prepare_log_directory(settings.log_directory)
    if path.parent != settings.log_directory:
        prepare_log_directory(path.parent)
    return SqliteRunWriter(path)


def prepare_log_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A probe of its own: several mflow may check the same folder at the same moment.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".mflow-write-test-"):
            pass
    except OSError as exc:
        raise EnvironmentFault(
            f"log_directory {path} is not usable: {exc.strerror or exc}; "
            "create it or point log_directory elsewhere"
        ) from None
