"""Load and check the input files, and open the state store they point at."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from mflow.checked import Flow, Inputs, Settings
from mflow.datasources import (
    BROKEN_DATASOURCES,
    Datasources,
    load_datasources,
    url_problem,
    with_driver,
)
from mflow.envvars import RUN_ID_VARIABLE, environment
from mflow.errors import InvalidFilesError, Problem
from mflow.flow import load_flow
from mflow.modelcheck import env_of, suggest
from mflow.reaper import TOKEN_VARIABLE
from mflow.settings import in_memory_sqlite, load_settings
from mflow.statedb import (  # re-exported: the commands open the store through here
    Backend,
    NoStateDatabase,
    open_run_writer,
    open_store,
    prepare_log_directory,
)
from mflow.tasktypes.base import TypeSetup
from mflow.tasktypes.registry import TaskTypes

DEFAULT_DATASOURCES = Path("oracle.json")
STATE_DATASOURCE = "mflow"  # the original kept its state in the connection of this name
# Set by mflow for every task (their values are known only when the run starts).
RUN_VARIABLES = dict.fromkeys((RUN_ID_VARIABLE, TOKEN_VARIABLE), "")


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
    variables = (
        {**RUN_VARIABLES, **environment(), **settings.env}
        if settings is not None
        else _variables_of_a_broken_config(config)
    )
    try:
        flow = load_flow(taskfile, types, variables)
    except InvalidFilesError as exc:
        problems += exc.problems
        warnings += exc.warnings
    if backend is not None and not problems:
        problems += _ids_mysql_takes_for_one(flow, backend)
    if problems:
        raise InvalidFilesError(problems, warnings)
    assert settings is not None and sources is not None
    every = (*settings.warnings, *sources.warnings, *flow.warnings)
    return Inputs(settings, flow, types, sources, backend, every)


def _ids_mysql_takes_for_one(flow: Flow, backend: Backend) -> list[Problem]:
    """MySQL and MariaDB compare text ignoring case, accents and trailing spaces (their
    default collations): tasks 'a' and 'A' would be one row there, and the run would stop
    at its first record. Refused here instead, naming both."""
    if not backend.url.startswith(("mysql", "mariadb")):
        return []
    seen: dict[str, str] = {}
    problems = []
    for task_id in flow.tasks:
        other = seen.setdefault(_as_mysql_compares(task_id), task_id)
        if other != task_id:
            problems.append(
                Problem(
                    str(flow.path),
                    task_id=task_id,
                    key="id",
                    message=(
                        f"the MySQL/MariaDB state database takes it for task '{other}' (it "
                        "compares ids ignoring case, accents and trailing spaces); rename "
                        "one of them"
                    ),
                )
            )
    return problems


def _as_mysql_compares(text: str) -> str:
    """Close to MySQL's and MariaDB's default collations (general_ci, 0900_ai_ci): case,
    accents and trailing spaces ignored. Only close: the cure would be a binary collation
    for the id columns, a schema change of its own."""
    text = text.rstrip(" ")
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _variables_of_a_broken_config(config: Path) -> dict[str, str] | None:
    """What the tasks' ${VAR}s can use when config.json has problems: the names its env
    sets count as set (their values do not matter to the check). None if even its env
    cannot be read: the tasks' ${VAR}s are then checked once config.json is fixed."""
    from mflow.documents import load_document

    try:
        names = env_of(load_document(config, "config file").data)
    except InvalidFilesError:
        return None
    if names is None:  # an env block with problems of its own
        return None
    return {**RUN_VARIABLES, **environment(), **dict.fromkeys(names, "")}


def load_backend(config: Path | None, datasources: Path | None) -> tuple[Settings, Backend]:
    """For the commands that only read state: config.json and datasources, no task file.
    The tasks' `env` is left unexpanded (a run that follows loads the files again)."""
    settings = load_settings(
        config or Path("config.json"), required=config is not None, tasks_env=False
    )
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
    original = STATE_DATASOURCE in datasources.by_name or STATE_DATASOURCE in datasources.unusable
    name = named if named is not None else (STATE_DATASOURCE if original else None)
    if name is None:
        url = f"sqlite:///{settings.log_directory / 'mflow.db'}"
        return Backend(url, display=url[len("sqlite:///") :])
    unusable = datasources.unusable.get(name)
    if unusable is not None:  # the state database's own connection: needed now
        raise InvalidFilesError([unusable])
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
    if source.kind == "sqlite" and in_memory_sqlite(source.url):
        where = settings.source or Path("config.json")
        raise InvalidFilesError(
            [
                Problem(
                    str(where),
                    key="backend",
                    message=(
                        f"datasource '{name}' is an in-memory SQLite database, which keeps "
                        "nothing once mflow ends; give one with a file"
                    ),
                )
            ]
        )
    return Backend(source.url, source.connect_args, f"datasource '{name}': {source.display_url()}")


def _safe(url: str) -> str:
    from mflow.store.store import safe_url

    return safe_url(url)


__all__ = [
    "Backend",
    "Inputs",
    "NoStateDatabase",
    "load_backend",
    "load_inputs",
    "open_run_writer",
    "open_store",
    "prepare_log_directory",
    "resolve_backend",
]
