"""`spark` tasks: spark-submit with the original's keys, built into an argv (never a shell
string). The driver's output goes to the task log; the exit code is spark-submit's. In
YARN cluster mode the application id is read from that output, recorded on the attempt,
and the application is killed when the task is stopped (killing spark-submit alone would
leave it running on the cluster)."""

from __future__ import annotations

import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from mflow.envvars import expand, unset_names
from mflow.tasktypes.base import TaskContext, TaskResult, TaskSpec, TaskType, empty_list

_MASTER = re.compile(r"local(\[(\d+|\*)(,\s*\d+)?\])?|yarn|(spark|k8s|mesos)://\S+")
_MEMORY = re.compile(r"\d+[kmgtp]?b?", re.IGNORECASE)
APPLICATION_ID = re.compile(r"\bapplication_\d+_\d+\b")
KILL_TIMEOUT_S = 60.0

# spark-submit option -> SparkSpec field; the file spells keys as the options ("deploy-mode").
_VALUE_OPTIONS = {
    "master": "master",
    "deploy-mode": "deploy_mode",
    "name": "name",
    "class": "class_",
    "queue": "queue",
    "driver-memory": "driver_memory",
    "driver-cores": "driver_cores",
    "executor-memory": "executor_memory",
    "executor-cores": "executor_cores",
    "num-executors": "num_executors",
    "total-executor-cores": "total_executor_cores",
}
_LIST_OPTIONS = {"jars": "jars", "py-files": "py_files", "files": "files"}  # comma-joined


MAX_COUNT = 100_000  # cores or executors: more is surely a typo


def _count(value: Any) -> str:
    text = str(value).strip() if isinstance(value, int | str) and value is not True else ""
    if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
        raise ValueError(f"must be a whole number from 1 to {MAX_COUNT:,} (got {value!r:.40})")
    return text


def _memory(value: Any) -> str:
    text = str(value).strip() if isinstance(value, int | str) and value is not True else ""
    if not _MEMORY.fullmatch(text):
        raise ValueError(f"must be an amount of memory such as 512m or 4g (got {value!r:.40})")
    return text


def _scalar(value: Any, what: str) -> str:
    """A value as spark-submit should see it: text, a number, or true/false (in lower case,
    as Spark writes them). Anything else (null, a list, NaN) is a mistake in the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise ValueError(f"{what} must be text, a number or true/false (got {value!r:.40})")


def _in_any_case(item: dict[str, Any], key: str) -> Any:
    found = [value for name, value in item.items() if str(name).lower() == key]
    return found[0] if len(found) == 1 else None


class SparkSpec(TaskSpec):
    master: str = Field(description="--master: yarn, local[N], spark://host:port...")
    deploy_mode: str | None = Field(
        default=None, alias="deploy-mode", description="--deploy-mode: client or cluster"
    )
    name: str | None = Field(default=None, description="--name")
    class_: str | None = Field(default=None, alias="class", description="--class (a jar's main)")
    queue: str | None = Field(default=None, description="--queue (YARN)")
    # numbers may be written as strings, as the original's files do ("executor-cores": "5")
    driver_memory: str | None = Field(
        default=None, alias="driver-memory", description="--driver-memory"
    )
    driver_cores: str | None = Field(
        default=None, alias="driver-cores", description="--driver-cores"
    )
    executor_memory: str | None = Field(
        default=None, alias="executor-memory", description="--executor-memory"
    )
    executor_cores: str | None = Field(
        default=None, alias="executor-cores", description="--executor-cores"
    )
    num_executors: str | None = Field(
        default=None, alias="num-executors", description="--num-executors"
    )
    total_executor_cores: str | None = Field(
        default=None, alias="total-executor-cores", description="--total-executor-cores"
    )
    jars: list[str] | None = Field(default=None, description="--jars (a list, or comma-separated)")
    py_files: list[str] | None = Field(default=None, alias="py-files", description="--py-files")
    files: list[str] | None = Field(default=None, description="--files")
    verbose: bool = Field(default=False, description="--verbose")
    supervise: bool = Field(default=False, description="--supervise")
    ingestor_file: str = Field(
        alias="ingestor-file", min_length=1, description="the application (.py or .jar)"
    )
    parameters: list[str] = Field(
        default_factory=empty_list,
        description='the application\'s arguments: ["x", ...] or [{"parameter": "x"}, ...]',
    )
    confs: list[tuple[str, str]] = Field(
        default_factory=empty_list,
        description='--conf key=value: [{"key": "spark.x", "value": "v"}] or {"spark.x": "v"}',
    )

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        if not _MASTER.fullmatch(value.strip()):
            raise ValueError(
                f"{value!r} is not a Spark master: use yarn, local[N], spark://host:port, "
                "k8s://... or mesos://..."
            )
        return value.strip()

    @field_validator("deploy_mode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        if value is not None and value not in ("client", "cluster"):
            raise ValueError(f"must be client or cluster (got {value!r})")
        return value

    @field_validator("name", "class_", "queue")
    @classmethod
    def _not_an_option(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or value.startswith("-")):
            raise ValueError(f"must be a non-empty name not starting with '-' (got {value!r})")
        return value

    @field_validator("driver_memory", "executor_memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> str | None:
        return None if value is None else _memory(value)

    @field_validator(
        "driver_cores", "executor_cores", "num_executors", "total_executor_cores", mode="before"
    )
    @classmethod
    def _count(cls, value: Any) -> str | None:
        return None if value is None else _count(value)

    @field_validator("jars", "py_files", "files", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(
                f"must be a list of paths, or one comma-separated string (got {value!r:.40})"
            )
        return value

    @field_validator("parameters", mode="before")
    @classmethod
    def _parameters(cls, values: Any) -> list[str]:
        if not isinstance(values, list):
            raise ValueError(f"must be a list (got {values!r:.40})")
        found = []
        for number, value in enumerate(values, 1):
            if isinstance(value, dict):
                value = _in_any_case(value, "parameter") if len(value) == 1 else None
                if value is None:
                    raise ValueError(
                        f'parameter #{number}: write a value, or {{"parameter": value}}'
                    )
            found.append(_scalar(value, f"parameter #{number}"))
        return found

    @field_validator("confs", mode="before")
    @classmethod
    def _confs(cls, confs: Any) -> list[tuple[str, str]]:
        if isinstance(confs, dict):
            pairs = list(confs.items())
        elif isinstance(confs, list):
            pairs = []
            for number, conf in enumerate(confs, 1):
                key = _in_any_case(conf, "key") if isinstance(conf, dict) else None
                if not isinstance(conf, dict) or len(conf) != 2 or key is None:
                    raise ValueError(f'conf #{number}: write {{"key": "spark.x.y", "value": ...}}')
                pairs.append((key, _in_any_case(conf, "value")))
        else:
            raise ValueError(
                f"must be a list of key/value objects, or an object (got {confs!r:.40})"
            )
        found = []
        for key, value in pairs:
            if not isinstance(key, str) or not key.strip() or "=" in key:
                raise ValueError(f"conf {key!r}: a key is a name such as spark.driver.memory")
            found.append((key, _scalar(value, f"conf {key}")))
        return found


def _is_local(path: str) -> bool:
    return "://" not in path


class SparkType(TaskType):
    name = "spark"
    spec = SparkSpec

    def check(self, task: TaskSpec, folder: Path) -> list[tuple[str, str]]:
        assert isinstance(task, SparkSpec)
        app = task.ingestor_file
        # A relative path belongs to the project (a typo is worth catching now); an absolute
        # one may exist only on the host that runs the flow.
        if _is_local(app) and not Path(app).is_absolute() and not (folder / app).exists():
            return [("ingestor-file", f"no application at {folder / app}")]
        return []

    def submit_program(self, env: dict[str, str]) -> str:
        """config.json's spark_submit, else $SPARK_HOME/bin/spark-submit, else PATH's."""
        settings = self.setup.settings
        configured = settings.model.spark_submit if settings else None
        if configured:
            if not unset_names(configured, env):  # ${SPARK_HOME}/bin/spark-submit, say
                configured = expand(configured, env)
            path = Path(os.path.expanduser(configured))
            if "/" in configured and not path.is_absolute() and settings and settings.source:
                path = settings.source.parent / path
            return str(path)
        home = env.get("SPARK_HOME")
        if home:
            return str(Path(home) / "bin" / "spark-submit")
        return "spark-submit"

    def argv(self, task: SparkSpec, env: dict[str, str], cwd: Path) -> list[str]:
        argv = [self.submit_program(env)]
        for option, field in _VALUE_OPTIONS.items():
            value = getattr(task, field)
            if value is not None:
                argv += [f"--{option}", str(value)]
        for option, field in _LIST_OPTIONS.items():
            value = getattr(task, field)
            if value:
                argv += [f"--{option}", ",".join(value)]
        if task.verbose:
            argv.append("--verbose")
        if task.supervise:
            argv.append("--supervise")
        for key, value in task.confs:
            argv += ["--conf", f"{key}={value}"]
        app = task.ingestor_file
        if _is_local(app) and not Path(app).is_absolute():
            app = str(cwd / app)
        return [*argv, app, *task.parameters]

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        import asyncio

        from mflow.tasktypes.process import run_process

        assert isinstance(task, SparkSpec)
        argv = self.argv(task, ctx.env, ctx.cwd)
        ctx.record("argv", argv)
        found: list[str] = []

        def on_line(line: str) -> None:
            if not found:
                match = APPLICATION_ID.search(line)
                if match:
                    found.append(match.group())
                    ctx.record("application_id", match.group())

        try:
            result = await run_process(argv, ctx, on_line=on_line, header=f"$ {shlex.join(argv)}\n")
        except asyncio.CancelledError:
            if found and task.master == "yarn":
                await _kill_yarn_application(found[0], ctx)
            raise
        if result.exit_code == 127 and argv[0] == "spark-submit":
            return TaskResult(
                False,
                127,
                "spark-submit not found: set spark_submit in config.json, or SPARK_HOME, "
                "or put spark-submit on the PATH",
            )
        if found:
            return TaskResult(
                result.ok, result.exit_code, _joined(result.message, f"application {found[0]}")
            )
        return result


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


async def _kill_yarn_application(application_id: str, ctx: TaskContext) -> None:
    """`yarn application -kill`, its output appended to the task log. Best effort: the
    task is being stopped anyway, and the log says if the kill did not work."""
    import asyncio
    import subprocess

    home = ctx.env.get("HADOOP_HOME")
    yarn = str(Path(home) / "bin" / "yarn") if home else "yarn"
    argv = [yarn, "application", "-kill", application_id]
    with open(ctx.log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {shlex.join(argv)}\n")
        log.flush()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=log, stderr=subprocess.STDOUT, env=ctx.env, cwd=ctx.cwd
            )
        except OSError as exc:
            log.write(f"cannot kill application {application_id}: {exc}\n")
            return
        try:
            async with asyncio.timeout(KILL_TIMEOUT_S):
                await asyncio.shield(process.wait())
        except (TimeoutError, asyncio.CancelledError):
            process.kill()
            log.write(f"yarn did not answer within {KILL_TIMEOUT_S:g} s\n")
