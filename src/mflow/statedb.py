"""Where run state lives (Backend), and opening it: for a run, or for reading."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow.errors import EnvironmentFault, UsageError

if TYPE_CHECKING:
    from mflow.checked import Settings
    from mflow.store.sqlite_writer import SqliteRunWriter
    from mflow.store.store import StateStore


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
    return StateStore(
        backend.url,
        read_only=read_only,
        connect_args=backend.connect_args,
        display=backend.display,
    )


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


LOG_OWNER_FILE = ".mflow-state"


def claim_log_directory(folder: Path, backend: Backend) -> None:
    """Run ids count per state database, and task logs are named by run id: a log folder
    shared by two databases would hand one run's logs to the other's run of the same id
    (and set them aside as stale). The first run writes in the folder which database its
    logs belong to; a run recording elsewhere is refused there."""
    from mflow.store.store import safe_url

    dsn = backend.connect_args.get("dsn")
    sqlite = backend.sqlite_path and backend.sqlite_path.absolute()
    if sqlite and sqlite.parent == folder.absolute():
        owner = sqlite.name  # its own mflow.db: still its own when the folder is moved
    elif sqlite:
        owner = str(sqlite)
    else:
        owner = safe_url(backend.url) + (f" {dsn}" if dsn else "")
    marker = folder / LOG_OWNER_FILE
    try:
        recorded = marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        try:
            marker.write_text(owner + "\n", encoding="utf-8")
        except OSError:
            pass  # a folder that takes no file fails the run with a better message later
        return
    except (OSError, ValueError):
        return
    if recorded and recorded != owner:
        raise EnvironmentFault(
            f"log_directory {folder} holds the task logs of the state database {recorded}, "
            f"and this run records in {owner}: run ids count per database, so the logs of "
            "two runs would get mixed up; nothing was run. Give this config.json a "
            f"log_directory of its own (or, if that folder's older logs no longer matter, "
            f"delete {marker})"
        )


def prepare_log_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        _write_probe(path)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):
            why, fix = "it, or a folder above it, is a file", "point log_directory at a folder"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why = exc.strerror or str(exc)
            fix = "give this user write access to it, or point log_directory elsewhere"
        else:
            why, fix = exc.strerror or str(exc), "create it or point log_directory elsewhere"
        raise EnvironmentFault(f"log_directory {path} is not usable: {why}; {fix}") from None


def _write_probe(folder: Path) -> None:
    """Write a file in `folder` and let it go. A file without a name where the system can
    make one: nothing to clean up, no clash with another mflow checking the same folder at
    the same moment, and no tempfile module to load."""
    try:
        os.close(os.open(folder, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o600))
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
    import tempfile  # a file system without unnamed files

    with tempfile.NamedTemporaryFile(dir=folder, prefix=".mflow-write-test-"):
        pass
