"""config.json: the global settings model, its defaults, and the hot reload of the live limit."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mflow.checked import Settings, SettingsWatcher  # re-exported
from mflow.datasources import sqlite_relative_to
from mflow.documents import Document, load_document
from mflow.envvars import environment, expand, expand_in_order, unset_names
from mflow.errors import EnvironmentFault, InvalidFilesError, Problem
from mflow.modelcheck import EnvBlock, check_model, env_of
from mflow.tasktypes.base import MAX_SECONDS, empty_dict


class SettingsModel(BaseModel):
    """The keys of config.json. All optional."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_process_concurrency: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=100_000
    )
    # below 50 ms re-reading the file would cost more than it could ever be worth
    check_new_config_interval: float = Field(default=1.0, ge=0.05, le=3600)
    log_directory: str = "./logs/"
    env: EnvBlock = Field(default_factory=empty_dict)
    backend: str | None = None
    default_retries: int = Field(default=0, ge=0, le=1000)
    default_retry_delay: float = Field(default=10.0, ge=0, le=MAX_SECONDS)
    default_retry_backoff: float = Field(default=1.0, ge=1, le=100)
    default_timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    kill_grace: float = Field(default=10.0, ge=0, le=3600)
    # spark tasks: the spark-submit to run (else $SPARK_HOME/bin/spark-submit, else PATH)
    spark_submit: str | None = Field(default=None, min_length=1)
    # `mflow serve`: the token that allows actions (cancel, retry, resume); else read-only
    api_token: str | None = None

    @field_validator("log_directory")
    @classmethod
    def _usable_path(cls, value: str) -> str:
        if not value.strip() or "\0" in value:
            raise ValueError("must be a folder path (not empty, no NUL character)")
        return value

    @field_validator("api_token")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        # a ValueError's message never repeats the value: the token stays out of the report
        if value is not None and len(value.strip()) < 16:
            raise ValueError("must be at least 16 characters (a random one: openssl rand -hex 24)")
        return value

    @field_validator("backend")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("is empty; leave it out to keep state in <log_directory>/mflow.db")
        if "\0" in value:
            raise ValueError("holds a NUL character")
        if in_memory_sqlite(value):
            raise ValueError(
                "is an in-memory SQLite database, which keeps nothing once mflow ends; "
                "give a file (sqlite:///state.db) or leave it out"
            )
        if "://" not in value and not re.fullmatch(r"[\w.@-]+", value):
            raise ValueError(
                f"{value!r} is neither a database URL (such as "
                "postgresql://user:password@host/dbname) nor a datasource's name"
            )
        return value


def in_memory_sqlite(url: str) -> bool:
    """sqlite://, sqlite:///:memory: or a URI with mode=memory: state that vanishes."""
    return bool(re.fullmatch(r"sqlite(\+\w+)?://(/:memory:)?", url.split("?", 1)[0])) or (
        url.startswith("sqlite") and "mode=memory" in url
    )


def load_settings(path: Path, *, required: bool, tasks_env: bool = True) -> Settings:
    """Read config.json. A missing default file means defaults; a missing named file is an error.
    `tasks_env`: expand `env`, the tasks' variables (False for the commands that only read
    state: they start no task, and need not have the tasks' secrets set)."""
    try:
        missing = not path.exists()
    except OSError as exc:  # a name too long for the file system, say
        raise InvalidFilesError(
            [Problem(str(path)[:200], message=f"unusable path: {exc.strerror}")]
        ) from None
    if missing and not required:
        model = SettingsModel()
        try:
            here = Path.cwd()
        except FileNotFoundError:
            raise EnvironmentFault(
                "the current folder no longer exists; cd somewhere else"
            ) from None
        return Settings(None, model, here / model.log_directory, {})
    doc = load_document(path, "config file")
    if not isinstance(doc.data, dict):
        raise InvalidFilesError(
            [doc.problem(message="config file must hold a JSON object { ... }")]
        )
    model, problems, warnings = check_model(doc, SettingsModel, doc.data, ())
    # Without a model, its env alone: every problem of the file is listed at once
    entries = model.env if model is not None else env_of(doc.data) or {}
    env, unset = expand_in_order(entries, environment())
    for name, missing in unset.items() if tasks_env else ():  # (not the readers' business)
        problems.append(
            doc.problem(
                "env",
                name,
                key=f"env.{name}",
                message=f"${{{missing}}} is set neither in the environment nor above it in "
                "this env",
            )
        )
    expanded = _expanded_paths(doc, model, env, problems) if model else {}
    if problems or model is None:
        raise InvalidFilesError(problems, warnings)
    given = path.absolute()  # mflow changes directory before it re-reads this file
    path = path.resolve()
    expanded["backend"] = model.backend and sqlite_relative_to(model.backend, path.parent)
    changed = {key: value for key, value in expanded.items() if value != getattr(model, key)}
    if changed:
        model = model.model_copy(update=changed)
    return Settings(
        path,
        model,
        path.parent / model.log_directory,
        env if tasks_env else {},
        tuple(warnings),
        given=given,
    )


def _expanded_paths(
    doc: Document, model: SettingsModel, env: dict[str, str], problems: list[Problem]
) -> dict[str, str]:
    """`~` and ${VAR} (from the environment or this file's env) in log_directory, as a
    shell would expand them: left as written, they made folders named `~` or `${HOME}`.
    (spark_submit is expanded with the task's environment when a spark task runs; `~` in
    a SQLite URL by sqlite_relative_to.)"""
    value = model.log_directory
    variables = {**environment(), **env}
    missing = unset_names(value, variables)
    if missing:
        problems.append(
            doc.problem(
                "log_directory",
                key="log_directory",
                message=f"${{{missing[0]}}} is set neither in the environment nor in env",
            )
        )
        return {}
    return {"log_directory": os.path.expanduser(expand(value, variables))}


__all__ = ["Settings", "SettingsModel", "SettingsWatcher", "load_settings"]
