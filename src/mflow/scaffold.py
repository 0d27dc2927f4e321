"""`mflow plugin new NAME`: write a ready task-type plugin package, `mflow-NAME/`.

The package declares its type under the entry-point group `mflow.task_types`, holds an
example type (a pydantic model of its keys and an async `run`) and tests that run the real
`mflow` on a small flow once the package is installed. The templates below are kept in the
form `ruff format` gives them, so the generated code passes the project's own lint.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from mflow import __version__
from mflow.errors import EnvironmentFault, UsageError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_NAME_LENGTH = 30  # also keeps the generated lines within the formatter's width


def check_name(name: str) -> None:
    """A type name: lower case, digits and single underscores, starting with a letter."""
    if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        raise UsageError(
            f"'{name}' is not a valid task type name: use lower-case letters, digits and "
            f"single underscores, starting with a letter, at most {MAX_NAME_LENGTH} "
            "characters (e.g. 'greet', 's3_copy')"
        )
    if keyword.iskeyword(name):
        raise UsageError(f"'{name}' is a Python keyword; choose another type name")
    from mflow.tasktypes.registry import BUILTIN_TYPES

    if name in BUILTIN_TYPES:
        raise UsageError(
            f"'{name}' is the name of a built-in task type; a plugin of that name would be "
            f"ignored. Built-in types: {', '.join(sorted(BUILTIN_TYPES))}"
        )


def plugin_names(name: str) -> dict[str, str]:
    """The names the templates use for type NAME."""
    camel = "".join(part.capitalize() for part in name.split("_"))
    return {
        "__NAME__": name,
        "__DIST__": f"mflow-{name}",
        "__PACKAGE__": f"mflow_{name}",
        "__CLASS__": camel,
        "__MFLOW_VERSION__": __version__,
    }


def plugin_files(name: str) -> dict[str, str]:
    """Relative path -> content of every file of the plugin package of type `name`."""
    names = plugin_names(name)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        "src/__PACKAGE__/__init__.py": INIT,
        "src/__PACKAGE__/tasktype.py": TASKTYPE,
        "tests/test___NAME__.py": TEST,
    }
    out = {}
    for path, template in files.items():
        for placeholder, value in names.items():
            path = path.replace(placeholder, value)
            template = template.replace(placeholder, value)
        out[path] = template
    return out


def new_plugin(name: str, parent: Path) -> tuple[Path, list[str], list[str]]:
    """Write the package into `parent`/mflow-NAME; return (folder, files written, notes)."""
    check_name(name)
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--dir {parent}: not a folder")
    folder = parent / f"mflow-{name}"
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UsageError(f"{folder} exists and is not a folder; choose another --dir")
    if folder.is_dir() and any(folder.iterdir()):
        raise UsageError(f"{folder} exists and is not empty; nothing was written")
    notes = _name_taken(name)
    files = plugin_files(name)
    try:
        for relative, content in files.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8") as out:
                out.write(content)
    except OSError as exc:
        raise EnvironmentFault(
            f"cannot write the plugin into {folder}: {exc.strerror or exc}"
        ) from None
    return folder, list(files), notes


def _name_taken(name: str) -> list[str]:
    """A note if an installed plugin already registers `name` (one of the two would lose)."""
    from importlib.metadata import entry_points

    from mflow.tasktypes.registry import ENTRY_POINT_GROUP

    notes = []
    for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
        dist = f"{entry.dist.name} {entry.dist.version}" if entry.dist else "a plugin"
        notes.append(
            f"{dist} already registers a task type '{name}' ({entry.value}) in this "
            "environment; of two plugins with one name, only one is used"
        )
    return notes


# -- templates -----------------------------------------------------------------------------
# Placeholders: __NAME__ (the type), __DIST__, __PACKAGE__, __CLASS__ (CamelCase name).

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "The mflow task type '__NAME__'."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["mflow>=__MFLOW_VERSION__"]

[project.optional-dependencies]
test = ["pytest>=8.0", "ruff>=0.6"]

# How mflow finds the type: a task with "type": "__NAME__" uses this class.
[project.entry-points."mflow.task_types"]
__NAME__ = "__PACKAGE__.tasktype:__CLASS__Type"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
addopts = "-ra"
testpaths = ["tests"]

[tool.ruff]
line-length = 100
src = ["src", "tests"]

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP"]
ignore = ["E501"]
"""

README = """\
# __DIST__

A plugin for mflow: the task type `__NAME__`. It is an
example to make your own from: it writes a greeting to the task's log (and to a file if
asked) and records whom it greeted on the attempt.

## Install

In the environment where mflow is installed:

```sh
pip install -e .          # or: pip install -e '.[test]' to run the tests
mflow types               # lists '__NAME__' and its keys
```

## Use

```json
{
  "tasks": [
    {"id": "hello", "type": "__NAME__", "greeting": "Hello", "to": "world", "output": "out/hello.txt"},
    {"id": "show", "type": "bash", "command": "cat out/hello.txt", "depends": ["hello"]}
  ]
}
```

| key | meaning |
|---|---|
| `greeting` | what to say (required) |
| `to` | whom to greet [default: `$USER` of the task's environment, else `world`] |
| `repeat` | how many times, 1 to 1000 [default: 1] |
| `output` | also write the greeting to this file, relative to the task file's folder |
| `delay` | seconds to wait before greeting [default: 0] |

Every task also has the keys common to all types: `id`, `depends`, `env`, `retries`,
`timeout`, ...

## Develop

The type is `__CLASS__Type` in `src/__PACKAGE__/tasktype.py`; its keys are the pydantic
model `__CLASS__Spec`. The entry point in `pyproject.toml` names it; after renaming
anything there, install the package again.

```sh
python -m pytest          # runs real flows with `python -m mflow`
ruff check . && ruff format --check .
```
"""

INIT = '''\
"""mflow plugin: the task type `__NAME__` (see tasktype.py)."""
'''

TASKTYPE = '''\
"""The task type `__NAME__`: an example to make your own from.

It writes a greeting to the task's log (and to a file if asked) and records whom it
greeted on the attempt. It shows how a type declares and checks its keys, reads the
task's environment, writes its log, and handles a timeout or a cancelled run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from mflow.tasktypes.base import TaskContext, TaskResult, TaskSpec, TaskType, open_log
from pydantic import Field, field_validator


class __CLASS__Spec(TaskSpec):
    """The keys of a `__NAME__` task, besides those every task has (id, depends, ...)."""

    greeting: str = Field(description="what to say, e.g. Hello")
    to: str | None = Field(
        default=None, description="whom to greet [default: $USER of the task's environment]"
    )
    repeat: int = Field(default=1, ge=1, le=1000, description="how many times to say it")
    output: str | None = Field(
        default=None, description="also write the greeting to this file (relative path)"
    )
    delay: float = Field(default=0, ge=0, le=3600, description="seconds to wait first")

    @field_validator("greeting")
    @classmethod
    def _not_blank(cls, greeting: str) -> str:
        if not greeting.strip():
            raise ValueError("the greeting is empty")
        return greeting.strip()


class __CLASS__Type(TaskType):
    """Writes a greeting to the task log, and to a file if asked."""

    name = "__NAME__"  # the name of its entry point, which is what task files use
    spec = __CLASS__Spec

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        """Problems the model cannot see, as (key, message); `folder` is the task file's."""
        assert isinstance(task, __CLASS__Spec)
        if task.output is not None and (folder / task.output).is_dir():
            return [("output", f"{folder / task.output} is a folder; name a file")]
        return []

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        assert isinstance(task, __CLASS__Spec)
        whom = task.to or ctx.env.get("USER", "world")
        text = f"{task.greeting}, {whom}!"
        with open_log(ctx) as log:
            log.write(f"task {ctx.task_id}, attempt {ctx.attempt}\\n")
            if task.delay:
                log.write(f"waiting {task.delay:g} s\\n")
                try:
                    await asyncio.sleep(task.delay)
                except asyncio.CancelledError:
                    # A timeout or a stopped run cancels run(): clean up, then re-raise.
                    log.write("stopped before greeting\\n")
                    raise
            for _ in range(task.repeat):
                log.write(text + "\\n")
            if task.output is not None:
                path = ctx.cwd / task.output
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text((text + "\\n") * task.repeat, encoding="utf-8")
                except OSError as exc:  # an expected failure: a result, not an exception
                    log.write(f"cannot write {path}: {exc}\\n")
                    return TaskResult(False, message=f"cannot write {path}: {exc.strerror}")
                log.write(f"wrote {path}\\n")
        ctx.record("greeted", whom)  # kept on the attempt in mflow's state database
        return TaskResult(True)
'''

TEST = '''\
"""Tests of the task type `__NAME__`. They run the real `mflow` on small flows, so the
package must be installed first (pip install -e . where mflow is installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TYPE = "__NAME__"


def mflow(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def write_flow(folder: Path, *tasks: dict[str, Any]) -> None:
    (folder / "config.json").write_text(json.dumps({"log_directory": "./logs/"}))
    (folder / "tasks.json").write_text(json.dumps({"tasks": list(tasks)}, indent=2))


def tasks(folder: Path, run_id: int) -> dict[str, dict[str, Any]]:
    """The tasks of a run as `mflow status --json` shows them, by id."""
    result = mflow(folder, "status", str(run_id), "--json")
    assert result.returncode == 0, result.stderr
    return {task["task_id"]: task for task in json.loads(result.stdout)["tasks"]}


def states(folder: Path, run_id: int) -> dict[str, str]:
    return {task_id: task["state"] for task_id, task in tasks(folder, run_id).items()}


def test_a_flow_runs_it(tmp_path: Path) -> None:
    hello = {"id": "hello", "type": TYPE, "greeting": "Hello", "to": "world", "repeat": 2}
    write_flow(
        tmp_path,
        {**hello, "output": "out/hello.txt"},
        {"id": "show", "type": "bash", "command": "cat out/hello.txt", "depends": ["hello"]},
    )
    result = mflow(tmp_path, "run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert states(tmp_path, 1) == {"hello": "SUCCESS", "show": "SUCCESS"}
    assert tasks(tmp_path, 1)["hello"]["attempts"][-1]["details"] == {"greeted": "world"}
    assert (tmp_path / "out" / "hello.txt").read_text() == "Hello, world!\\n" * 2
    log = mflow(tmp_path, "logs", "1", "hello").stdout
    assert log.count("Hello, world!") == 2
    assert "wrote " in log
    assert "Hello, world!" in mflow(tmp_path, "logs", "1", "show").stdout


def test_a_timeout_stops_it(tmp_path: Path) -> None:
    slow = {"id": "slow", "type": TYPE, "greeting": "Hi", "delay": 60, "timeout": 0.5}
    write_flow(tmp_path, slow)
    result = mflow(tmp_path, "run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert states(tmp_path, 1) == {"slow": "FAILED"}
    assert "stopped before greeting" in mflow(tmp_path, "logs", "1", "slow").stdout


def test_bad_keys_are_reported_and_nothing_runs(tmp_path: Path) -> None:
    write_flow(tmp_path, {"id": "bad", "type": TYPE, "repeat": 0})
    result = mflow(tmp_path, "run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "'greeting'" in result.stderr
    assert "'repeat'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "logs").exists()


def test_mflow_types_lists_it(tmp_path: Path) -> None:
    result = mflow(tmp_path, "types", "--json")
    assert result.returncode == 0, result.stderr
    found = {entry["name"]: entry for entry in json.loads(result.stdout)["types"]}
    assert found[TYPE]["error"] is None
    assert found[TYPE]["origin"] == "plugin"
    keys = {key["key"]: key for key in found[TYPE]["keys"]}
    assert set(keys) == {"greeting", "to", "repeat", "output", "delay"}
    assert keys["greeting"]["required"]
    assert keys["repeat"]["default"] == 1
'''
