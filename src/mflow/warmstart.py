"""A warm start: `mflow run` of a flow checked before, without loading click or pydantic.

Checking the files (config.json, the task file, oracle.json) is worth doing once per
change, not at every start: the command line, the models and the checks cost more than
the rest of a short run (about 100 ms of a one-task run's 160). So after a full check,
`run` keeps what the run needs of the checked files (settings, tasks, their digests, the
warnings) in a cache file, and the next `run` reads that instead when all of these are as
they were: the command line, the current folder, the files byte for byte, the value of
every variable the files name as ${VAR}, the number of CPUs, Python, mflow itself and
the libraries that check the files (pydantic, PyYAML).

Anything else takes the usual way: another command or option, a terminal on stdout (the
live view loads rich anyway), a nested run, a task of another type than bash, a state
database other than SQLite, or MFLOW_FLOW_CACHE=off. The cache lives in
$XDG_CACHE_HOME/mflow (else ~/.cache/mflow); losing it costs one full check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from mflow import __version__
from mflow.loading import without_cycle_collection

if TYPE_CHECKING:
    from mflow.checked import Inputs
    from mflow.tasktypes.context import TaskContext, TaskResult

SWITCH = "MFLOW_FLOW_CACHE"  # "off": always check the files
FILE_OPTIONS = ("config", "taskfile", "datasources")
DEFAULTS = {"config": "config.json", "taskfile": "tasks.json", "datasources": "oracle.json"}
KEEP_FILES = 200  # cache files kept; the least recently written go first
_VARIABLE = re.compile(rb"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ESCAPED_DOLLAR = re.compile(rb"\\(?:u0024|x24|U00000024)")  # JSON and YAML escapes of "$"
_FORMAT = 2  # of the cache file; bump when what it holds changes


def run(argv: list[str]) -> int | None:
    """Run the flow warm and return the exit code, or None: take the usual way."""
    paths = file_arguments(argv)
    if paths is None or not applies():
        return None
    with without_cycle_collection():  # as a cold start loads the flow
        found = _kept_inputs(paths)
    if found is None:
        return None
    inputs, warnings = found
    for warning in warnings:
        _say(f"warning: {warning}")
    from mflow.runner import execute, exit_code

    try:
        return exit_code(execute(inputs))
    except BaseException as exc:
        from mflow.cli import report_failure  # what every command says of a failure

        return report_failure(exc)


def _kept_inputs(paths: dict[str, str]) -> tuple[Inputs, list[str]] | None:
    """The inputs kept for these files, if they are still what was checked."""
    try:
        with open(cache_file(paths), "rb") as f:
            if not _yours(os.fstat(f.fileno()), os.stat(os.path.dirname(f.name))):
                return None
            kept = json.load(f)
    except (OSError, ValueError):  # none kept (or no cache folder, or no current folder)
        return None
    if not isinstance(kept, dict) or kept.get("fingerprint") != fingerprint(paths):
        return None
    try:
        return _inputs(kept)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a cache file of another shape: check the files


def _yours(*stats: os.stat_result) -> bool:
    """Owned by this user and writable by no one else: a file another user could have
    written would have mflow run their commands."""
    return all(st.st_uid == os.getuid() and not st.st_mode & 0o022 for st in stats)


def _say(text: str) -> None:
    if sys.stderr is not None:  # started with it closed: the command line says nothing either
        print(text, file=sys.stderr)


def file_arguments(argv: list[str]) -> dict[str, str] | None:
    """The files named by a plain `[run] [--config F] [--taskfile F] [--datasources F]`
    (or the original's -config F, -config=F), or None for any other command line."""
    args = argv[1:] if argv[:1] == ["run"] else argv
    given: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        name = flag.lstrip("-")
        if flag not in (f"-{name}", f"--{name}") or name not in FILE_OPTIONS or name in given:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            i += 1
            value = args[i]
        if not value:
            return None
        given[name] = str(Path(value))  # as click's Path type hands it to `run`
        i += 1
    return given


def applies() -> bool:
    """Whether this process could start warm, or keep a flow for a warm start."""
    from mflow.nesting import PARENT_VARIABLE

    return (
        os.environ.get(SWITCH, "").lower() != "off"
        and PARENT_VARIABLE not in os.environ
        and sys.stdout is not None  # mflow started without one: see Terminal
        and not sys.stdout.isatty()
    )


def cache_file(paths: dict[str, str]) -> Path:
    where = json.dumps([os.getcwd(), *(paths.get(name, "") for name in FILE_OPTIONS)])
    return cache_folder() / (hashlib.blake2b(where.encode(), digest_size=16).hexdigest() + ".json")


def cache_folder() -> Path:
    """Raises OSError where there is none (no usable home)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, empty or relative: to be ignored, says the XDG spec
        home = os.path.expanduser("~")
        if not os.path.isabs(home) or home == "/":
            raise FileNotFoundError("no home folder for a cache")
        base = os.path.join(home, ".cache")
    return Path(base, "mflow")


def fingerprint(paths: dict[str, str]) -> str | None:
    """All that a check of these files depends on, hashed; None: a flow never to keep."""
    digest = hashlib.blake2b(digest_size=20)
    names: set[bytes] = set()
    for name in FILE_OPTIONS:
        path = paths.get(name, DEFAULTS[name])
        try:
            kind = stat.S_IFMT(os.stat(path).st_mode)
            # where the name leads (a switched symlink is another flow), and what it holds
            where = f"{name}: {os.path.realpath(path)} {kind}\n"
            digest.update(where.encode("utf-8", "surrogateescape"))  # any name a folder has
            if kind != stat.S_IFREG:  # a pipe or a device: the check says what is wrong
                continue
            data = Path(path).read_bytes()
        except OSError as exc:
            digest.update(f"{name}: {type(exc).__name__}\n".encode())
            continue
        if _ESCAPED_DOLLAR.search(data):
            return None  # a ${VAR} written with escapes would escape the scan below
        digest.update(f"{name}: {len(data)}\n".encode())
        digest.update(data)
        names.update(_VARIABLE.findall(data))
    names.add(b"HOME")  # a path's `~` in config.json
    variables = {name.decode(): os.environ.get(name.decode()) for name in sorted(names)}
    facts = [
        *(_FORMAT, __version__, sys.version, os.cpu_count(), _code_stamp()),
        _library_stamps(),
        variables,
    ]
    digest.update(json.dumps(facts).encode())
    return digest.hexdigest()


def _code_stamp() -> int:
    """The newest of mflow's own source files: a changed mflow checks differently."""
    newest = 0
    package = Path(__file__).parent
    for folder in (package, package / "tasktypes", package / "store"):
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".py"):
                    newest = max(newest, entry.stat().st_mtime_ns)
    return newest


# What checks the files besides mflow: another version may judge them otherwise.
_CHECKING_LIBRARIES = ("pydantic", "pydantic_core", "yaml")


def _library_stamps() -> list[Any]:
    """Where each checking library is installed, with its file's identity, size and time:
    an upgrade rewrites it. Found without importing it (that is what a warm start saves)."""
    from importlib.machinery import PathFinder

    stamps: list[Any] = []
    for name in _CHECKING_LIBRARIES:
        spec = PathFinder.find_spec(name)
        try:
            found = os.stat(spec.origin) if spec and spec.origin else None
        except OSError:
            found = None
        stamps.append(
            [name, spec.origin, found.st_ino, found.st_size, found.st_mtime_ns] if found else name
        )
    return stamps


def remember(paths: dict[str, str], before: str, inputs: Inputs) -> None:
    """Keep the checked `inputs` for the next run, if a warm start could use them and the
    files did not change while they were checked (`before`: their fingerprint then).
    Called only where applies() holds."""
    backend = inputs.backend
    tasks = inputs.flow.tasks.values()
    if backend is None or backend.sqlite_path is None:
        return
    from mflow.tasktypes.bash import BashSpec

    if any(type(spec) is not BashSpec or spec.type != "bash" for spec in tasks):
        return
    if fingerprint(paths) != before:
        return  # changed while it was checked
    from mflow.runner import task_digest

    settings = inputs.settings
    kept = {
        "fingerprint": before,
        "settings": {
            "source": settings.source and str(settings.source),
            "given": settings.given and str(settings.given),
            # Not the token (a run has no use for it), nor the env expanded: secrets taken
            # from the environment stay out of the file.
            "model": settings.model.model_dump(mode="json", exclude={"api_token"}),
            "log_directory": str(settings.log_directory),
        },
        "backend": {"url": backend.url, "display": backend.display},
        "flow": str(inputs.flow.path),
        "tasks": [[spec.model_dump(mode="json"), task_digest(spec)] for spec in tasks],
        "warnings": [str(problem) for problem in inputs.warnings],
    }
    _write(paths, kept)


def _write(paths: dict[str, str], kept: dict[str, Any]) -> None:
    """Atomically, and quietly: the cache only saves time."""
    try:
        path = cache_file(paths)
    except OSError:  # no home, or no current folder
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # the user's alone, as the task file's env may hold a password
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            # dumps, not dump: only a one-shot encoding takes json's C encoder (100,000
            # tasks: 0.15 s against 0.7 s)
            f.write(json.dumps(kept, separators=(",", ":")))
        os.replace(temporary, path)
        _prune(path.parent)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[KEEP_FILES:]:
        old.unlink(missing_ok=True)


class CheckedTask(SimpleNamespace):
    """A checked task as the run path reads it: its keys as attributes, and the digest
    its model gave it (which tells a later resume whether the task changed)."""

    digest: str


def _inputs(kept: dict[str, Any]) -> tuple[Inputs, list[str]]:
    from mflow.checked import Flow, Inputs, Settings
    from mflow.envvars import expand_in_order
    from mflow.graph import Graph
    from mflow.statedb import Backend

    s = kept["settings"]
    model = SimpleNamespace(**s["model"])
    env, _ = expand_in_order(model.env, os.environ)  # as load_settings did: each one set
    source = Path(s["source"]) if s["source"] else None
    given = Path(s["given"]) if s.get("given") else None
    settings = Settings(source, model, Path(s["log_directory"]), env, given=given)
    tasks = {}
    for fields, digest in kept["tasks"]:
        tasks[fields["id"]] = CheckedTask(**fields, digest=digest)
    graph = Graph({task_id: task.depends for task_id, task in tasks.items()})
    flow = Flow(Path(kept["flow"]), tasks, graph)
    backend = Backend(kept["backend"]["url"], display=kept["backend"]["display"])
    return Inputs(settings, flow, BashOnly(), None, backend), kept["warnings"]


class BashOnly:
    """The task types of a warm start: bash alone, run as BashType runs it."""

    def get(self, name: str) -> BashOnly | None:
        return self if name == "bash" else None

    async def run(self, task: Any, ctx: TaskContext) -> TaskResult:
        from mflow.tasktypes.shell import run_command

        return await run_command(task.command, ctx)

    def start_now(self, task: Any, ctx: TaskContext) -> Any:
        from mflow.tasktypes.shell import start_command

        return start_command(task.command, ctx)

    def close(self) -> None:
        pass
