"""config.json: the global settings model, its defaults, and the hot reload of the live limit."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from mflow.documents import load_document
from mflow.envvars import EnvBlock, expand, unset_names
from mflow.errors import InvalidFilesError, Problem
from mflow.modelcheck import check_model


class SettingsModel(BaseModel):
    """The keys of config.json. All optional."""

    model_config = ConfigDict(extra="forbid")

    max_process_concurrency: PositiveInt = Field(default_factory=lambda: os.cpu_count() or 1)
    check_new_config_interval: PositiveFloat = 1.0
    log_directory: str = "./logs/"
    env: EnvBlock = Field(default_factory=dict)
    backend: str | None = None
    default_retries: int = Field(default=0, ge=0)
    default_retry_delay: float = Field(default=10.0, ge=0)
    default_retry_backoff: float = Field(default=1.0, ge=1)
    default_timeout: PositiveFloat | None = None
    kill_grace: float = Field(default=10.0, ge=0)


@dataclass(frozen=True)
class Settings:
    """Settings with paths resolved and env expanded, ready to use."""

    source: Path | None  # None: no config.json, defaults only
    model: SettingsModel
    log_directory: Path
    env: dict[str, str]  # config env, expanded; merged over the process env at run time
    warnings: tuple[Problem, ...] = ()

    @property
    def max_process_concurrency(self) -> int:
        return self.model.max_process_concurrency


def load_settings(path: Path, *, required: bool) -> Settings:
    """Read config.json. A missing default file means defaults; a missing named file is an error."""
    if not path.exists() and not required:
        model = SettingsModel()
        return Settings(None, model, (Path.cwd() / model.log_directory), {})
    doc = load_document(path, "config file")
    if not isinstance(doc.data, dict):
        raise InvalidFilesError(
            [doc.problem(message="config file must hold a JSON object { ... }")]
        )
    model, problems, warnings = check_model(doc, SettingsModel, doc.data, ())
    if model is None:
        raise InvalidFilesError(problems, warnings)
    env = {}
    variables = dict(os.environ)
    for name, value in model.env.items():
        missing = unset_names(value, variables)
        if missing:
            problems.append(
                doc.problem(
                    "env",
                    key=f"env.{name}",
                    message=f"${{{missing[0]}}} is not set in the environment",
                )
            )
            continue
        env[name] = variables[name] = expand(value, variables)
    if problems:
        raise InvalidFilesError(problems, warnings)
    path = path.resolve()  # mflow changes directory before it re-reads this file
    return Settings(path, model, path.parent / model.log_directory, env, tuple(warnings))


class SettingsWatcher:
    """Re-reads config.json when it changes, so a new limit applies without a restart."""

    def __init__(self, settings: Settings):
        self.current = settings
        self._stamp = self._read_stamp()
        self.last_error: str | None = None

    def _read_stamp(self) -> tuple[int, int] | None:
        if self.current.source is None:
            return None
        try:
            st = os.stat(self.current.source)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def poll(self) -> bool:
        """Reload if the file changed. True when the settings were replaced."""
        stamp = self._read_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        assert self.current.source is not None
        try:
            self.current = load_settings(self.current.source, required=True)
        except InvalidFilesError as exc:
            # Keep the old settings; the caller reports the problems.
            self.last_error = "\n".join(map(str, exc.problems))
            return False
        self.last_error = None
        return True
