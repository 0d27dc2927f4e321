"""One `mflow run`: load and check the files, open the store, run the engine, report."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow import nesting
from mflow.checked import Flow, Inputs, SettingsWatcher
from mflow.engine import Engine, RunOutcome
from mflow.envvars import RUN_ID_VARIABLE
from mflow.errors import EnvironmentFault, InternalError, UsageError
from mflow.launch import stop_if_interrupted
from mflow.listener import Listeners
from mflow.loading import flow_out_of_collection
from mflow.logs import MasterLog
from mflow.nesting import ParentLink
from mflow.progress import LiveReporter, PlainReporter, Terminal, summary
from mflow.reaper import TOKEN_VARIABLE, ReaperLink
from mflow.resume import NothingToResume, ResumePlan, plan_resume
from mflow.statedb import Backend, claim_log_directory, open_run_writer
from mflow.states import RunState
from mflow.store.recorder import Recorder
from mflow.store.rows import LOG_NAME_ROOM, PATH_CHARS, SCOPE_CHARS, TaskRow, fitted
from mflow.tasktypes.process import release_watcher
from mflow.timeslice import ask_short_slice
from mflow.warmstart import CheckedTask

if TYPE_CHECKING:
    from mflow.store.recorder import RunWriter
    from mflow.tasktypes.base import TaskSpec

# No pydantic on this module's imports (checked.py says why): the models and the loading
# of files are imported where a function needs them.


@dataclass(frozen=True)
class RunResult:
    run_id: int
    outcome: RunOutcome
    signal: int | None  # the signal that cancelled the run, if any


@dataclass(frozen=True)
class Selection:
    """The tasks of a partial run, and how it was asked for (kept on the run row)."""

    task_ids: list[str]
    scope: str
    notes: list[str]


def choose_tasks(
    flow: Flow, *, task: str | None = None, from_: str | None = None, only: str | None = None
) -> Selection | None:
    """The tasks a partial run runs (None: all). Unknown ids are a usage error."""
    given = [
        (option, value)
        for option, value in (("--task", task), ("--from", from_), ("--only", only))
        if value is not None
    ]
    if not given:
        return None
    if len(given) > 1:
        raise UsageError("use one of --task, --from and --only")
    option, value = given[0]
    # only --only takes a list; an id may itself hold a comma
    names = (
        [name.strip() for name in value.split(",") if name.strip()]
        if option == "--only"
        else [value]
    )
    if not names or (option != "--only" and len(names) > 1):
        raise UsageError(f"{option}: give {'task ids' if option == '--only' else 'one task id'}")
    for name in names:
        if name not in flow.tasks:
            from mflow.modelcheck import suggest

            raise UsageError(
                f"{option}: no task '{name}' in {flow.path}{suggest(name, flow.tasks)}"
            )
    chosen = [names[0], *flow.graph.descendants(names)] if option == "--from" else names
    chosen_set = set(chosen)
    outside = sorted({dep for t in chosen for dep in flow.tasks[t].depends} - chosen_set)
    notes = [f"{option}: not run, taken as done: {', '.join(outside)}"] if outside else []
    ordered = [t for t in flow.tasks if t in chosen_set]
    return Selection(ordered, f"{option} {value}", notes)


def prepare_resume(
    run_id: int,
    config: Path | None,
    taskfile: Path | None,
    datasources: Path | None,
    *,
    force: bool,
    backend: Backend | None = None,
) -> tuple[Inputs, ResumePlan]:
    """Load the files of the run to resume (unless others are named) and plan the resume.
    `backend`: the state database, instead of the one config.json names."""
    from mflow.inputs import NoStateDatabase, load_backend, load_inputs, open_store

    settings, named_backend = load_backend(config, datasources)
    backend = backend or named_backend
    try:
        store = open_store(settings, backend, create=False)
    except NoStateDatabase as exc:
        raise NoStateDatabase(f"no run {run_id} to resume: {exc}") from None
    store.reap_dead_runs()
    run = store.get_run(run_id)
    if run is None:
        raise UsageError(f"no run {run_id} to resume; `mflow runs` lists the runs")
    recorded = []  # the run's own files, where it found them
    if config is None and run["config_path"]:
        config = Path(run["config_path"])
        recorded.append(("config file", config, "--config"))
    if taskfile is None:
        taskfile = Path(run["flow_path"])
        recorded.append(("task file", taskfile, "--taskfile"))
    gone = [(what, path, option) for what, path, option in recorded if not path.exists()]
    if gone:
        raise UsageError(
            "; ".join(
                f"run {run_id}'s {what} {path} is not there any more" for what, path, _ in gone
            )
            + " (moved?); give "
            + " and ".join(f"{option} where it is now" for _, _, option in gone)
        )
    inputs = load_inputs(
        config or Path("config.json"),
        config is not None,
        taskfile or Path("tasks.json"),
        datasources,
        backend=backend,
    )
    digests = {task_id: task_digest(spec) for task_id, spec in inputs.flow.tasks.items()}
    tasks = store.task_rows(run_id)
    resumers = store.resumers_of(run_id)
    store.close()
    plan = plan_resume(run, run_id, tasks, inputs.flow, digests, force=force, resumers=resumers)
    return inputs, plan


def task_rows(inputs: Inputs, task_ids: list[str]) -> list[TaskRow]:
    """What the store keeps of each task, including what tells a later resume if it changed."""
    flow = inputs.flow
    defaults = inputs.settings.model
    rows = []
    for task_id in task_ids:
        spec = flow.tasks[task_id]
        retries = spec.retries if spec.retries is not None else defaults.default_retries
        rows.append(
            TaskRow(task_id, spec.type, retries + 1, json.dumps(spec.depends), task_digest(spec))
        )
    return rows


def task_digest(spec: TaskSpec | CheckedTask) -> str:
    if isinstance(spec, CheckedTask):  # a warm start's task: its model's digest, kept
        return spec.digest
    return hashlib.blake2b(spec.model_dump_json().encode(), digest_size=8).hexdigest()


def execute(
    inputs: Inputs,
    *,
    selected: Collection[str] | None = None,
    skipped: Mapping[str, str] | None = None,
    scope: str | None = None,
    resumed_from: int | None = None,
    resume_after: int = 0,
    force: bool = False,
    parent: ParentLink | None = None,
    live: bool | None = None,
) -> RunResult:
    stop_if_interrupted()
    flow = inputs.flow
    _require_text_paths(flow.path, inputs.settings.source, inputs.settings.log_directory)
    _require_recordable_paths(flow.path, inputs.settings.source, inputs.settings.log_directory)
    nesting.current_chain = (*(parent.chain if parent else ()), str(flow.path))
    task_ids = [t for t in flow.tasks if selected is None or t in selected]
    assert inputs.backend is not None
    store = open_run_writer(inputs.settings, inputs.backend)
    claim_log_directory(inputs.settings.log_directory, inputs.backend)
    master = MasterLog(inputs.settings.log_directory)  # before the run row: fail early
    run_id = master.run_id = store.create_run(
        flow.path,
        inputs.settings.source,
        task_rows(inputs, task_ids),
        resumed_from=resumed_from,
        scope=fitted(scope, SCOPE_CHARS),  # a long --only list: shown, not used
        **(parent.run_columns() if parent else {}),
    )
    if resumed_from is not None:
        _one_resume_at_a_time(store, run_id, resumed_from, resume_after)
    master.set_aside_older_logs()
    out = Terminal(sys.stdout)
    if live is None:
        live = out.isatty()
    reporter = LiveReporter(run_id, len(task_ids)) if live else PlainReporter(run_id, out)
    resuming = f", resuming run {resumed_from}" if resumed_from is not None else ""
    count = f"{len(task_ids)} task{'' if len(task_ids) == 1 else 's'}"
    master.write(f"started: task file {flow.path}, {count}{resuming}")
    recorder = Recorder(store, run_id)
    reaper = ReaperLink()
    listener = Listeners([recorder, master, reporter])
    engine = Engine(
        flow,
        inputs.types,
        SettingsWatcher(inputs.settings),
        listener,
        run_id,
        selected=selected,
        skipped=skipped,
        extra_env={RUN_ID_VARIABLE: str(run_id), TOKEN_VARIABLE: reaper.token},
        resumed_from=resumed_from,
        force=force,
        # From then on mflow's thread shares the cores with its tasks (timeslice.py).
        on_overlap=ask_short_slice,
    )
    started = time.monotonic()
    # Tasks run in the task file's folder; being there already lets them start without
    # a chdir in each child (which would rule out posix_spawn, the fastest spawn).
    os.chdir(flow.folder)
    state = "" if inputs.backend.sqlite_path else f" (state in {inputs.backend.display})"
    out.write(f"run {run_id}: {count} from {flow.path}{resuming}{state}\n")
    out.flush()
    received: list[int] = []
    bugs: list[str] = []
    try:
        with flow_out_of_collection():
            outcome = asyncio.run(_run_with_signals(engine, received, bugs))
    finally:
        reaper.close()
        inputs.types.close()
        reporter.flush()  # the run's lines before any error about it
    out.write(summary(run_id, time.monotonic() - started, outcome) + "\n")
    out.flush()
    store.close()
    if bugs:
        raise InternalError("\n".join(bugs))
    if recorder.error is not None:
        where = (
            f"they are in {master.path}"
            if master.write_error is None
            else f"{master.path} missed lines too: {master.write_error}"
            + ("" if live else "; the lines above show every change")
        )
        raise EnvironmentFault(
            f"{recorder.error}; the last state changes of run {run_id} were not recorded ({where})"
        )
    return RunResult(run_id, outcome, received[0] if received else None)


def _require_text_paths(*paths: Path | None) -> None:
    """The state database keeps these paths as text: a name that is not UTF-8 (a folder
    named in Latin-1, say) cannot be recorded. Refused before anything is."""
    for path in paths:
        if path is None:
            continue
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            raise EnvironmentFault(
                f"the path {shown} is not valid UTF-8, and mflow records paths as text in "
                "its state database; nothing was run. Rename what is not UTF-8 in it "
                "(convmv converts Latin-1 names: convmv -f latin1 -t utf8 --notest -r "
                "FOLDER), or keep the task file, config.json and the log folder under "
                "UTF-8 paths"
            ) from None


def _one_resume_at_a_time(store: RunWriter, run_id: int, resumed_from: int, after: int) -> None:
    """Two resumes of one run started at the same moment (a double click) both passed the
    check of the plan, which saw the resumes up to run `after`: the later one gives way
    before it runs anything, and leaves no run behind (a later resume would count it)."""
    earlier = store.earlier_resumer(resumed_from, after, run_id)
    if earlier is None:
        return
    store.forget_run(run_id)
    store.close()
    raise UsageError(
        f"run {resumed_from} is resumed by run {earlier}, started a moment before; "
        f"nothing was run (mflow status {earlier})"
    )


def _require_recordable_paths(flow: Path, config: Path | None, log_directory: Path) -> None:
    """The state database's path columns hold PATH_CHARS characters (databases other than
    SQLite enforce it): a longer path would stop the run's records, so it is refused first."""
    limits = [("task file", flow, PATH_CHARS), ("config file", config, PATH_CHARS)]
    # room for a task log's name in it: master_<run>_task_<id of up to 200>.attempt<n>.log
    limits.append(("log_directory", log_directory, PATH_CHARS - LOG_NAME_ROOM))
    for what, path, limit in limits:
        if path is not None and len(str(path)) > limit:
            raise UsageError(
                f"the {what} path is {len(str(path))} characters long, more than the "
                f"{limit} the state database records; nothing was run. Move it to a "
                "shorter path"
            )


async def _run_with_signals(engine: Engine, received: list[int], bugs: list[str]) -> RunOutcome:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            engine.cancel()  # SIGTERM to every running group, SIGKILL after the grace
        else:
            engine.kill_now()  # a second Ctrl-C: no more waiting

    def on_bug(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # An exception nothing awaited: a bug. Stop the run rather than let it end "SUCCESS".
        error = context.get("exception")
        trace = "".join(traceback.format_exception(error)) if error else ""
        bugs.append(f"{context.get('message', 'unexpected error')}\n{trace}".strip())
        engine.cancel()

    loop.set_exception_handler(on_bug)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, engine.reload_settings)
    try:
        return await engine.run()
    finally:
        release_watcher()  # for a program that runs flows in turn (see its docstring)


def run_nested(
    link: ParentLink,
    config: Path | None,
    taskfile: Path,
    datasources: Path | None,
    warn: Callable[[Iterable[object]], None],
) -> RunResult | None:
    """`mflow run` started by a parent's `mflow` task: recorded in the parent's database,
    and continuing the same task's last nested run if it did not succeed. None: nothing
    was left to run."""
    from mflow.inputs import load_inputs, open_store
    from mflow.settings import load_settings

    link.check_taskfile(taskfile)
    settings = load_settings(config or Path("config.json"), required=config is not None)
    store = open_store(settings, link.backend)
    try:
        store.reap_dead_runs()
        previous = store.latest_child_run(link.run_id, link.task_id)
    finally:
        store.close()
    config_required = config is not None
    if previous is None:
        inputs = load_inputs(
            config or Path("config.json"),
            config_required,
            taskfile,
            datasources,
            backend=link.backend,
        )
        warn(inputs.warnings)
        return execute(inputs, parent=link)
    run_id = previous["run_id"]
    if previous["state"] == RunState.SUCCESS:
        print(f"run {run_id}: the nested flow succeeded in run {run_id}; nothing left to run")
        return None
    if previous["state"] == RunState.RUNNING:
        raise EnvironmentFault(
            f"run {run_id} of this nested flow is still running "
            f"(pid {previous['pid']} on {previous['host']}); stop it first"
        )
    try:
        inputs, plan = prepare_resume(
            run_id, config, taskfile, datasources, force=link.force, backend=link.backend
        )
    except NothingToResume as done:
        print(done)
        return None
    warn(inputs.warnings)
    if all(task_id in plan.skipped for task_id in plan.task_ids):
        print(f"run {run_id}: every task of the nested flow succeeded; nothing left to run")
        return None
    return execute(
        inputs,
        selected=plan.task_ids,
        skipped=plan.skipped,
        resumed_from=run_id,
        resume_after=plan.resumes_seen,
        scope=plan.scope,
        force=link.force,
        parent=link,
    )


def exit_code(result: RunResult) -> int:
    if result.outcome.state is RunState.SUCCESS:
        return 0
    if result.signal is not None:
        return 128 + result.signal
    return 1
