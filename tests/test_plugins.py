"""Task-type plugins: `mflow types`, `mflow plugin new`, and plugins that are broken or
take a built-in's name. One test installs a generated plugin into a new virtual
environment and runs the plugin's own tests there.

Plugins other than the generated one are declared by a `*.dist-info` folder on PYTHONPATH:
that is all `importlib.metadata` needs to see an installed distribution's entry points."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import site
import subprocess
import sys
import time
import tomllib
import warnings
from pathlib import Path

import pytest

import mflow
from conftest import Project, assert_exit, assert_no_traceback, bash

ROOT = Path(__file__).resolve().parents[1]
RUFF = [sys.executable, "-m", "ruff"]

PLUGIN_MODULE = '''\
"""A test plugin: `echo` writes `text` to a file."""

from pydantic import Field

from mflow.tasktypes.base import TaskResult, TaskSpec, TaskType


class EchoSpec(TaskSpec):
    text: str = Field(description="what to write")
    out_file: str = Field(default="echo.txt", alias="out-file")


class EchoType(TaskType):
    """Writes text to a file.

    More words that `mflow types` does not show."""

    name = "echo"
    spec = EchoSpec

    async def run(self, task, ctx):
        (ctx.cwd / task.out_file).write_text(task.text)
        ctx.record("chars", len(task.text))
        return TaskResult(True)


class NotAType:
    pass


class OtherBash(EchoType):
    async def run(self, task, ctx):
        (ctx.cwd / "plugin-bash-ran").touch()
        return TaskResult(True)
'''


def fake_dist(site_dir: Path, name: str, entry_points: dict[str, str]) -> None:
    """An installed distribution as importlib.metadata sees one: METADATA, entry_points.txt."""
    info = site_dir / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[mflow.task_types]\n{lines}")


@pytest.fixture
def plugins(tmp_path: Path) -> dict[str, str]:
    """Three plugins on PYTHONPATH: one good (`echo`, alias `say`), one with broken types
    (`exploding`, `notatype`), one registering `bash`; returns the env for mflow."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "echo_plugin.py").write_text(PLUGIN_MODULE)
    (site_dir / "exploding_plugin.py").write_text('raise RuntimeError("this plugin is broken")\n')
    fake_dist(
        site_dir, "mflow-echo", {"echo": "echo_plugin:EchoType", "say": "echo_plugin:EchoType"}
    )
    fake_dist(
        site_dir,
        "mflow-broken",
        {"exploding": "exploding_plugin:Exploding", "notatype": "echo_plugin:NotAType"},
    )
    fake_dist(site_dir, "mflow-clash", {"bash": "echo_plugin:OtherBash"})
    return {"PYTHONPATH": str(site_dir)}


# -- mflow types ------------------------------------------------------------------------------


def test_types_lists_the_built_ins_with_their_keys(project: Project) -> None:
    result = project.mflow("types", "--json")
    assert_exit(result, 0)
    data = json.loads(result.stdout)
    found = {entry["name"]: entry for entry in data["types"]}
    assert {"bash", "oracle", "spark"} <= set(found)
    assert found["oracle"]["aliases"] == ["sql"]
    assert "sql" not in found
    bash_type = found["bash"]
    assert bash_type["origin"] == "built-in" and bash_type["distribution"] is None
    assert bash_type["class"] == "mflow.tasktypes.bash:BashType"
    assert bash_type["description"].startswith("A shell command, run with bash")
    assert bash_type["keys"] == [
        {
            "key": "command",
            "field": "command",
            "type": "str",
            "constraints": [],
            "required": True,
            "default": None,
            "description": "run with bash -c (or exec'd directly when plain)",
        }
    ]
    spark = {key["key"]: key for key in found["spark"]["keys"]}
    assert spark["deploy-mode"]["field"] == "deploy_mode"  # keys are listed as files spell them
    assert spark["deploy-mode"]["type"] == "str | None"
    assert spark["verbose"]["default"] is False and not spark["verbose"]["required"]
    assert spark["parameters"]["default"] == []
    common = [key["key"] for key in data["common_keys"]]
    assert common[:3] == ["id", "type", "depends"] and "timeout" in common
    for entry in data["types"]:  # common keys are listed once, not with each type
        assert not {key["key"] for key in entry["keys"]} & set(common)
    assert data["ignored"] == []


def test_types_text(project: Project) -> None:
    result = project.mflow("types")
    assert_exit(result, 0)
    assert "bash  [built-in]  mflow.tasktypes.bash:BashType" in result.stdout
    assert "oracle (alias sql)  [built-in]" in result.stdout
    assert re.search(r"^  command +str +required", result.stdout, re.MULTILINE)
    assert "Keys every type has: id (required), type (required), depends," in result.stdout
    assert project.nothing_recorded()


def test_types_shows_plugins_broken_ones_and_clashes(
    project: Project, plugins: dict[str, str]
) -> None:
    result = project.mflow("types", "--json", env=plugins)
    assert_exit(result, 0)
    assert_no_traceback(result)
    data = json.loads(result.stdout)
    found = {entry["name"]: entry for entry in data["types"]}
    echo = found["echo"]
    assert echo["aliases"] == ["say"] and "say" not in found
    assert (echo["origin"], echo["distribution"], echo["version"]) == (
        "plugin",
        "mflow-echo",
        "1.0",
    )
    assert echo["class"] == "echo_plugin:EchoType"
    assert echo["description"] == "Writes text to a file."
    assert echo["error"] is None
    keys = {key["key"]: key for key in echo["keys"]}
    assert keys["text"]["required"] and keys["text"]["description"] == "what to write"
    assert keys["out-file"]["default"] == "echo.txt"
    assert "RuntimeError: this plugin is broken" in found["exploding"]["error"]
    assert "mflow-broken 1.0" in found["exploding"]["error"]
    assert "not a subclass of mflow.tasktypes.base.TaskType" in found["notatype"]["error"]
    assert found["bash"]["origin"] == "built-in"
    [ignored] = data["ignored"]
    assert "'bash' of plugin mflow-clash 1.0" in ignored and "is ignored" in ignored
    assert f"warning: {ignored}" in result.stderr

    text = project.mflow("types", env=plugins)
    assert_exit(text, 0)
    assert "echo (alias say)  [plugin mflow-echo 1.0]  echo_plugin:EchoType" in text.stdout
    assert "  BROKEN: task type 'exploding' (plugin mflow-broken 1.0) cannot be loaded" in (
        text.stdout
    )
    assert "warning: 'bash' of plugin mflow-clash 1.0" in text.stderr
    summary = text.stdout.splitlines()[-1]
    assert re.fullmatch(
        r"\d+ task types \(\d+ built-in, 3 from plugins\); cannot be loaded: .*", summary
    )
    assert "exploding, " in summary and "notatype" in summary
    assert_no_traceback(text)


def test_a_plugin_type_runs_and_records(project: Project, plugins: dict[str, str]) -> None:
    project.write_tasks(
        [
            {"id": "a", "type": "echo", "text": "hello", "out-file": "a.txt"},
            {"id": "b", "type": "say", "text": "hi", "depends": ["a"]},
        ]
    )
    result = project.mflow("run", env=plugins)
    assert_exit(result, 0)
    assert (project.root / "a.txt").read_text() == "hello"
    assert (project.root / "echo.txt").read_text() == "hi"
    attempts = {task["task_id"]: task["attempts"][-1] for task in project.status(1)["tasks"]}
    assert attempts["a"]["details"] == {"chars": 5}


@pytest.mark.parametrize(
    ("type_name", "message"),
    [
        (
            "exploding",
            "task type 'exploding' (plugin mflow-broken 1.0) cannot be loaded from "
            "exploding_plugin:Exploding: RuntimeError: this plugin is broken",
        ),
        (
            "notatype",
            "task type 'notatype' (plugin mflow-broken 1.0): echo_plugin:NotAType is not a "
            "subclass of mflow.tasktypes.base.TaskType",
        ),
    ],
)
def test_a_broken_plugin_is_a_validation_error(
    project: Project, plugins: dict[str, str], type_name: str, message: str
) -> None:
    project.write_tasks([bash("ok", "true"), {"id": "t", "type": type_name}])
    for command in ("validate", "run"):
        result = project.mflow(command, env=plugins)
        assert_exit(result, 2)
        assert_no_traceback(result)
        assert f"tasks.json:4:25: task 't': key 'type': {message}" in result.stderr
    assert project.nothing_recorded()


def test_a_plugin_named_like_a_built_in_is_ignored(
    project: Project, plugins: dict[str, str]
) -> None:
    # The echo task makes mflow read the plugins' entry points, so it sees the clash too.
    project.write_tasks(
        [bash("b", "echo built-in > b.txt"), {"id": "e", "type": "echo", "text": "x"}]
    )
    result = project.mflow("run", env=plugins)
    assert_exit(result, 0)
    assert (project.root / "b.txt").read_text() == "built-in\n"
    assert not (project.root / "plugin-bash-ran").exists()


# -- mflow plugin new -------------------------------------------------------------------------


def test_plugin_new_writes_a_package(project: Project) -> None:
    result = project.mflow("plugin", "new", "greet", "--dir", "plugins/here")
    assert_exit(result, 0)
    folder = project.root / "plugins" / "here" / "mflow-greet"
    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert written == [
        "README.md",
        "pyproject.toml",
        "src/mflow_greet/__init__.py",
        "src/mflow_greet/tasktype.py",
        "tests/test_greet.py",
    ]
    assert "src/mflow_greet/tasktype.py" in result.stdout and "pip install" in result.stdout
    pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "mflow-greet"
    assert pyproject["project"]["entry-points"]["mflow.task_types"] == {
        "greet": "mflow_greet.tasktype:GreetType"
    }
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert any(dep.startswith("mflow") for dep in pyproject["project"]["dependencies"])
    # The generated code is held to this project's lint settings.
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    theirs = pyproject["tool"]["ruff"]
    assert theirs["line-length"] == ours["line-length"]
    assert theirs["lint"]["select"] == ours["lint"]["select"]
    assert theirs["lint"]["ignore"] == ours["lint"]["ignore"]


@pytest.mark.parametrize("name", ["greet", "s3", "a_very_long_type_name_of_30_ch"])
def test_generated_code_passes_ruff(tmp_path: Path, name: str) -> None:
    project = Project(tmp_path)
    assert_exit(project.mflow("plugin", "new", name), 0)
    folder = tmp_path / f"mflow-{name}"
    for command in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run(
            [*RUFF, *command], cwd=folder, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"ruff {' '.join(command)}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Greet", "'Greet' is not a valid task type name"),
        ("my-type", "'my-type' is not a valid task type name"),
        ("_x", "'_x' is not a valid task type name"),
        ("a__b", "'a__b' is not a valid task type name"),
        ("x" * 31, "at most 30 characters"),
        ("class", "'class' is a Python keyword"),
        ("bash", "'bash' is the name of a built-in task type"),
        ("sql", "'sql' is the name of a built-in task type"),
    ],
)
def test_plugin_new_checks_the_name(project: Project, name: str, message: str) -> None:
    result = project.mflow("plugin", "new", name)
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert message in result.stderr
    assert not list(project.root.glob("mflow-*"))


def test_plugin_new_never_overwrites(project: Project) -> None:
    (project.root / "mflow-greet").mkdir()
    assert_exit(project.mflow("plugin", "new", "greet"), 0)  # an empty folder is fine
    readme = project.root / "mflow-greet" / "README.md"
    readme.write_text("mine")
    result = project.mflow("plugin", "new", "greet")
    assert_exit(result, 2)
    assert "mflow-greet exists and is not empty; nothing was written" in result.stderr
    assert readme.read_text() == "mine"
    (project.root / "mflow-other").write_text("a file")
    result = project.mflow("plugin", "new", "other")
    assert_exit(result, 2)
    assert "exists and is not a folder" in result.stderr
    result = project.mflow("plugin", "new", "third", "--dir", "config.json")
    assert_exit(result, 2)
    assert "--dir config.json: not a folder" in result.stderr


def test_plugin_new_warns_of_a_name_an_installed_plugin_has(
    project: Project, plugins: dict[str, str]
) -> None:
    result = project.mflow("plugin", "new", "echo", env=plugins)
    assert_exit(result, 0)
    assert "warning: mflow-echo 1.0 already registers a task type 'echo'" in result.stderr


# -- a generated plugin, installed ---------------------------------------------------------------


def _builds_wheels_offline() -> bool:
    """Whether this environment's setuptools can build a wheel without downloading: on its
    own from 70.1 on, with the `wheel` package before."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _new_venv(folder: Path) -> Path:
    """A virtual environment that sees this one's packages (mflow, pydantic, pytest, pip,
    setuptools) through a .pth file, so nothing has to be downloaded; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # addsitedir also runs the .pth files there (an editable install of mflow is one).
    lines = [f"import site; site.addsitedir({path!r})" for path in site.getsitepackages()]
    lines.append(str(Path(mflow.__file__).resolve().parents[1]))
    (Path(purelib) / "_outer_environment.pth").write_text("\n".join(lines) + "\n")
    return python


def _run(args: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_a_generated_plugin_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    started = time.monotonic()
    project = Project(tmp_path)
    assert_exit(project.mflow("plugin", "new", "greet"), 0)
    plugin = tmp_path / "mflow-greet"
    python = _new_venv(tmp_path / "venv")

    pip = [python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q"]
    if _builds_wheels_offline():
        pip += ["--no-build-isolation", "--no-index"]
    else:  # the build backend is fetched for an isolated build: slower, needs the network
        warnings.warn(
            "setuptools here cannot build wheels offline (it needs 70.1 or newer, or the "
            "wheel package): pip downloads the plugin's build requirements",
            stacklevel=1,
        )
    installed = _run([*pip, plugin], tmp_path)
    assert installed.returncode == 0, f"pip install failed:\n{installed.stdout}{installed.stderr}"

    tests = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], plugin)
    assert tests.returncode == 0, f"the plugin's tests failed:\n{tests.stdout}{tests.stderr}"
    assert re.search(r"\b4 passed\b", tests.stdout), tests.stdout

    listed = _run([python, "-m", "mflow", "types", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    greet = {entry["name"]: entry for entry in json.loads(listed.stdout)["types"]}["greet"]
    assert greet["error"] is None
    assert greet["origin"] == "plugin" and greet["version"] == "0.1.0"
    assert greet["class"] == "mflow_greet.tasktype:GreetType"
    assert [key["key"] for key in greet["keys"]] == ["greeting", "to", "repeat", "output", "delay"]
    text = _run([python, "-m", "mflow", "types"], tmp_path).stdout
    assert re.search(r"^greet  \[plugin mflow.greet 0\.1\.0\]", text, re.MULTILINE), text

    flow = Project(tmp_path / "flow")
    flow.write_config()
    flow.write_tasks(
        [
            {"id": "hi", "type": "greet", "greeting": "Good morning", "to": "Ada"},
            bash("after", "echo done", "hi"),
        ]
    )
    ran = _run([python, "-m", "mflow", "run"], flow.root)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert flow.task_states(1) == {"hi": "SUCCESS", "after": "SUCCESS"}
    assert "Good morning, Ada!" in flow.task_log(1, "hi").read_text()
    [row] = flow.db("SELECT details FROM mf_attempts WHERE task_id = 'hi'")
    assert json.loads(row["details"]) == {"greeted": "Ada"}
    print(f"generated plugin: installed and tested in {time.monotonic() - started:.1f} s")


def test_the_documented_example_is_the_generated_one() -> None:
    from mflow.scaffold import plugin_files

    doc = (ROOT / "docs" / "plugins.md").read_text()
    example = doc.split("## The example", 1)[1].split("```python\n", 1)[1].split("```\n", 1)[0]
    assert example == plugin_files("greet")["src/mflow_greet/tasktype.py"]


MISBEHAVING_MODULE = '''\
"""Task types, each with one bug."""

import sys

from mflow.tasktypes.base import TaskResult, TaskSpec, TaskType


class CheckRaises(TaskType):
    name = "check_raises"
    spec = TaskSpec

    def check(self, task, folder):
        raise KeyError("oops")


class ReturnsText(TaskType):
    name = "returns_text"
    spec = TaskSpec

    async def run(self, task, ctx):
        return "ok"


class Exits(TaskType):
    name = "exits"
    spec = TaskSpec

    async def run(self, task, ctx):
        sys.exit(5)


class CloseRaises(TaskType):
    name = "close_raises"
    spec = TaskSpec

    async def run(self, task, ctx):
        return TaskResult(True)

    def close(self):
        raise RuntimeError("cannot close")
'''


@pytest.fixture
def misbehaving(tmp_path: Path) -> dict[str, str]:
    site_dir = tmp_path / "bugs"
    site_dir.mkdir()
    (site_dir / "buggy_plugin.py").write_text(MISBEHAVING_MODULE)
    names = ("check_raises", "returns_text", "exits", "close_raises")
    fake_dist(
        site_dir, "mflow-buggy", {n: f"buggy_plugin:{n.title().replace('_', '')}" for n in names}
    )
    return {"PYTHONPATH": str(site_dir)}


def test_a_plugin_whose_check_raises_is_a_problem_of_that_type(
    project: Project, misbehaving: dict[str, str]
) -> None:
    project.write_tasks([{"id": "c", "type": "check_raises"}])
    result = project.mflow("validate", env=misbehaving)
    assert_exit(result, 2)
    assert_no_traceback(result)
    assert "task type 'check_raises' failed to check this task (a bug in it): KeyError('oops')" in (
        result.stderr
    )


def test_a_plugin_that_misbehaves_when_it_runs_fails_its_task_not_the_run(
    project: Project, misbehaving: dict[str, str]
) -> None:
    project.write_tasks(
        [
            bash("before", "true"),
            {"id": "text", "type": "returns_text", "depends": ["before"]},
            {"id": "exit", "type": "exits", "depends": ["before"]},
            {"id": "closes", "type": "close_raises"},
        ]
    )
    result = project.mflow("run", env=misbehaving)
    assert_exit(result, 1)
    assert_no_traceback(result)
    states = project.task_states(1)
    assert states == {"before": "SUCCESS", "text": "FAILED", "exit": "FAILED", "closes": "SUCCESS"}
    messages = {
        r["task_id"]: r["message"] for r in project.db("SELECT task_id, message FROM mf_tasks")
    }
    assert "its run() returned str, not a TaskResult" in messages["text"]
    assert "internal error in task type 'exits': SystemExit(5)" in messages["exit"]
    assert "warning: task type 'close_raises' failed to close: RuntimeError('cannot close')" in (
        result.stderr
    )
    assert "run 1 FAILED" in result.stdout  # the summary is there
