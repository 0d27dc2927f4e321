"""oracle.json / datasources: named database connections, ${ENV} expansion, and secret masking.

The file is the original's, `{"connections": [{"name", "connection_string", "user",
"password"}]}` (Oracle, reached by python-oracledb in thin mode: no Instant Client), or a
connection may give `"url"`, any SQLAlchemy URL. Nothing here connects or imports a driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mflow.documents import load_document
from mflow.envvars import environment, expand, unset_names
from mflow.errors import InvalidFilesError, Problem
from mflow.modelcheck import check_model, key_in_any_case

# The driver each kind of database is reached with, where a URL names none.
DEFAULT_DRIVERS = {
    "postgresql": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
    "oracle": "oracledb",
}


class ConnectionModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(min_length=1)
    connection_string: str | None = None  # the original's Oracle form, with user/password
    user: str | None = None
    password: str | None = None
    url: str | None = None  # any SQLAlchemy URL instead
    max_connections: int = Field(default=4, ge=1, le=1000)
    connect_timeout: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> ConnectionModel:
        for key in ("name", "connection_string", "user", "password", "url"):
            if "\0" in (getattr(self, key) or ""):
                raise ValueError(f"'{key}' holds a NUL character, which no connection can take")
        if (self.url is None) == (self.connection_string is None):
            raise ValueError(
                "give either 'connection_string' (with 'user' and 'password') or 'url'"
            )
        if self.url is not None and "://" not in self.url and "${" not in self.url:
            raise ValueError(
                "'url' must be a database URL such as postgresql://user:password@host/dbname"
            )
        return self


@dataclass(frozen=True)
class Datasource:
    name: str
    kind: str  # oracle, postgresql, mysql, mariadb, sqlite, ...
    url: str  # a SQLAlchemy URL, password included: never print it (see display_url)
    connect_args: dict[str, Any] = field(default_factory=dict)
    max_connections: int = 4
    connect_timeout: float = 10.0

    def display_url(self) -> str:
        from mflow.store.store import safe_url

        return safe_url(self.url) + (
            f" ({self.connect_args['dsn']})" if "dsn" in self.connect_args else ""
        )


@dataclass(frozen=True)
class Datasources:
    path: Path | None
    by_name: dict[str, Datasource]
    secrets: tuple[str, ...] = ()
    warnings: tuple[Problem, ...] = ()
    broken: bool = False  # the file had problems (reported): names in it are not checked
    # Connections naming a ${VAR} that is not set here: not an error until something uses
    # one (a task's `db`, the state database), since one file often serves many flows.
    unusable: dict[str, Problem] = field(default_factory=dict)

    def unusable_because(self, name: str) -> str | None:
        """Why connection `name` cannot be used, if it is one of those."""
        problem = self.unusable.get(name)
        return None if problem is None else f"datasource '{name}' cannot be used: {problem}"

    def mask(self, text: str) -> str:
        """`text` with every password of the file replaced by ***."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


NO_DATASOURCES = Datasources(None, {})
BROKEN_DATASOURCES = Datasources(None, {}, broken=True)


def load_datasources(path: Path, *, required: bool) -> Datasources:
    """Read the datasources file; a missing default file means none."""
    if not path.exists() and not required:
        return NO_DATASOURCES
    doc = load_document(path, "datasources file")
    data = doc.data
    key = key_in_any_case(data, "connections")
    if key is None or not isinstance(data[key], list):
        raise InvalidFilesError(
            [
                doc.problem(
                    message=(
                        'a datasources file holds {"connections": [{"name": ..., "connection_string": '
                        '..., "user": ..., "password": ...}, ...]}'
                    )
                )
            ]
        )
    problems: list[Problem] = []
    warnings: list[Problem] = []
    by_name: dict[str, Datasource] = {}
    unusable: dict[str, Problem] = {}
    secrets: list[str] = []
    variables = environment()
    for index, raw in enumerate(data[key]):
        where = (key, index)
        if not isinstance(raw, dict):
            problems.append(
                doc.problem(*where, message=f"connection #{index + 1} must be an object {{...}}")
            )
            continue
        expanded = {}
        unset: list[Problem] = []
        for name, value in raw.items():
            missing = unset_names(value, variables) if isinstance(value, str) else []
            if missing:
                unset.append(
                    doc.problem(
                        *where,
                        name,
                        key=str(name),
                        message=(f"${{{missing[0]}}} is not set in the environment"),
                    )
                )
            expanded[name] = (
                expand(value, variables) if isinstance(value, str) and not missing else value
            )
        model, found, notes = check_model(doc, ConnectionModel, expanded, where, hide_input=True)
        problems += found
        warnings += notes
        if model is None or any(str(p.key).lower() == "name" for p in unset):
            problems += unset  # without its name, nothing could say it is unused
            continue
        for secret in (model.password, _url_password(model.url)):
            if secret and "${" not in secret:  # as written, and as it appears in a URL
                secrets += [secret, quote(secret, safe="")]  # (also if it is not usable)
        if model.name in by_name or model.name in unusable:
            problems.append(
                doc.problem(
                    *where,
                    "name",
                    key="name",
                    message=(f"connection '{model.name}' is defined twice"),
                )
            )
            continue
        if unset:
            unusable[model.name] = unset[0]
            continue
        source = _datasource(model, path.resolve().parent)
        problem = _url_problem(source.url) if model.url is not None else None
        if problem:
            problems.append(doc.problem(*where, "url", key="url", message=problem))
            continue
        by_name[model.name] = source
    if problems:
        raise InvalidFilesError(problems, warnings)
    return Datasources(
        path.resolve(),
        by_name,
        tuple(sorted(set(secrets), key=len, reverse=True)),
        tuple(warnings),
        unusable=unusable,
    )


def _datasource(model: ConnectionModel, folder: Path) -> Datasource:
    common = {"max_connections": model.max_connections, "connect_timeout": model.connect_timeout}
    if model.url is not None:
        url = sqlite_relative_to(with_driver(model.url), folder)
        return Datasource(model.name, url.split(":", 1)[0].split("+", 1)[0], url, **common)
    user = quote(model.user or "", safe="")
    password = quote(model.password or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return Datasource(
        model.name,
        "oracle",
        f"oracle+oracledb://{credentials}",
        {"dsn": model.connection_string},
        **common,
    )


def sqlite_relative_to(url: str, folder: Path) -> str:
    """A SQLite URL with a relative path means relative to the folder of the file naming it;
    one starting with `~` is in the home folder, as a shell would say."""
    prefix = "sqlite:///"
    if url.startswith(prefix + "~"):
        url = prefix + os.path.expanduser(url[len(prefix) :])
    if not url.startswith(prefix) or url[len(prefix) :].startswith(("/", ":")):
        return url
    return prefix + str(folder / url[len(prefix) :])


def url_problem(url: str) -> str | None:
    """What is wrong with a database URL, checked without connecting; None if nothing."""
    return _url_problem(with_driver(url))


def _url_problem(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except NoSuchModuleError:
        kind = url.split(":", 1)[0]
        return (
            f"unknown kind of database '{kind}'; use postgresql://, mysql://, "
            "mariadb://, oracle:// or sqlite:///"
        )
    except (ArgumentError, ValueError) as exc:
        reason = str(exc).replace(url, "<url>")
        return f"not a usable database URL ({reason})"
    return None


def with_driver(url: str) -> str:
    """`postgresql://...` -> `postgresql+psycopg://...`: the driver mflow installs."""
    scheme, sep, rest = url.partition("://")
    scheme = {"postgres": "postgresql"}.get(scheme, scheme)  # a common spelling
    if "+" in scheme or scheme not in DEFAULT_DRIVERS:
        return url
    return f"{scheme}+{DEFAULT_DRIVERS[scheme]}{sep}{rest}"


def _url_password(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    authority = url.split("://", 1)[1].split("/", 1)[0]
    if "@" not in authority or ":" not in authority.rsplit("@", 1)[0]:
        return None
    return unquote(authority.rsplit("@", 1)[0].split(":", 1)[1]) or None
