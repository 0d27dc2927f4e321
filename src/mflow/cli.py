"""The `mflow` command line. The only module that decides exit codes; it maps MflowError
subclasses to theirs, and anything else is a bug (traceback, exit 70)."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mflow import __version__
from mflow.errors import InternalError, InvalidFilesError, MflowError, UsageError

RUN_ID = click.IntRange(1, 2**62)  # what every backend's integer column holds
RUN_STATES = ("RUNNING", "SUCCESS", "FAILED", "CANCELLED", "INTERRUPTED")
COMMANDS = (
    "run",
    "resume",
    "validate",
    "graph",
    "runs",
    "status",
    "logs",
    "serve",
    "types",
    "plugin",
)
DEFAULT_TASKFILE = Path("tasks.json")
GO_STYLE_FLAGS = ("config", "taskfile", "datasources")
TASK_ID_OPTIONS = ("--task", "--from", "--only")  # their value is never a Go-style flag


def _path_option(name: str, help_text: str) -> Callable[[Any], Any]:
    return click.option(name, type=click.Path(path_type=Path), default=None, help=help_text)


def _options(*options: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """One decorator applying `options` in the order given (as --help lists them)."""

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


_DATASOURCES_OPTION = _path_option(
    "--datasources",
    "Database connections file (needed by oracle/sql tasks and a datasource backend). "
    "[default: ./oracle.json]",
)

# --config / --taskfile / --datasources: the original's flags
file_options = _options(
    _path_option("--config", "Global settings file. [default: ./config.json, optional]"),
    _path_option("--taskfile", "The flow: a JSON (or .yaml) task file. [default: ./tasks.json]"),
    _DATASOURCES_OPTION,
)
# The file options of `resume`: the resumed run's own files by default
resume_file_options = _options(
    _path_option("--config", "Global settings file. [default: the run's own]"),
    _path_option("--taskfile", "The flow's task file. [default: the run's own]"),
    _DATASOURCES_OPTION,
)
# --config and --datasources: together they say where the state database is
state_options = _options(
    _path_option("--config", "Global settings file (its backend / log_directory hold the state)."),
    _path_option(
        "--datasources",
        "Datasources file, if the backend is one of its connections. [default: ./oracle.json]",
    ),
)


def _config(config: Path | None) -> tuple[Path, bool]:
    """The config path and whether it must exist (only when named on the command line)."""
    return (config, True) if config is not None else (Path("config.json"), False)


def _count(number: int, one: str, many: str | None = None) -> str:
    return f"{number} {one if number == 1 else many or one + 's'}"


def _warn(problems: Any) -> None:
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mflow")
def cli() -> None:
    """Run a DAG of batch tasks and record every attempt.

    With no command, `mflow` is `mflow run`.
    """


@cli.command()
@file_options
@click.option(
    "--task",
    "task_id",
    metavar="ID",
    help="Run this task alone, ignoring its dependencies (the original's one-shot).",
)
@click.option(
    "--from", "from_id", metavar="ID", help="Run this task and everything downstream of it."
)
@click.option("--only", metavar="A,B", help="Run only these tasks (comma separated).")
@click.option(
    "--resume",
    "resume_id",
    type=RUN_ID,
    metavar="RUN_ID",
    help=(
        "Run again exactly the tasks of RUN_ID that did not succeed (with that run's task "
        "file and config, unless given)."
    ),
)
@click.option("--force", is_flag=True, help="With --resume: resume even if the task file changed.")
@click.option(
    "--dry-run", is_flag=True, help="Validate and show the order of execution; run nothing."
)
def run(
    config: Path | None,
    taskfile: Path | None,
    datasources: Path | None,
    task_id: str | None,
    from_id: str | None,
    only: str | None,
    resume_id: int | None,
    force: bool,
    dry_run: bool,
) -> None:
    """Run the flow in --taskfile (the default command)."""
    from mflow.nesting import ParentLink

    if force and resume_id is None:
        raise UsageError(
            "--force goes with --resume RUN_ID (it resumes a run whose task file changed); "
            "a run without --resume runs the task file as it is"
        )
    link = ParentLink.take_from_environment()
    if link is not None:  # started by a parent flow's `mflow` task
        from mflow.runner import exit_code, run_nested

        nested = run_nested(link, config, taskfile or DEFAULT_TASKFILE, datasources, _warn)
        sys.exit(0 if nested is None else exit_code(nested))
    if resume_id is not None:
        if task_id or from_id or only:
            raise UsageError(
                "--resume runs what the resumed run did not finish; "
                "it does not combine with --task, --from or --only"
            )
        _resume(resume_id, config, taskfile, datasources, force, dry_run)
        return
    from mflow import warmstart
    from mflow.inputs import load_inputs
    from mflow.runner import choose_tasks, execute, exit_code

    # A plain run of the whole flow: keep the checked files for a warm start of the same
    # command line (the files as named there) next time.
    named = {"config": config, "taskfile": taskfile, "datasources": datasources}
    paths = {name: str(path) for name, path in named.items() if path is not None}
    plain = not (task_id or from_id or only or dry_run) and warmstart.applies()
    before = warmstart.fingerprint(paths) if plain else None
    inputs = load_inputs(*_config(config), taskfile or DEFAULT_TASKFILE, datasources)
    _warn(inputs.warnings)
    selection = choose_tasks(inputs.flow, task=task_id, from_=from_id, only=only)
    if before is not None:
        warmstart.remember(paths, before, inputs)
    for note in selection.notes if selection else ():
        click.echo(f"note: {note}", err=True)
    if dry_run:
        _show_plan(inputs.flow, selection.task_ids if selection else None)
        return
    if selection is None:
        sys.exit(exit_code(execute(inputs)))
    sys.exit(exit_code(execute(inputs, selected=selection.task_ids, scope=selection.scope)))


@cli.command()
@click.argument("run_id", type=RUN_ID)
@resume_file_options
@click.option("--force", is_flag=True, help="Resume even if the task file changed.")
@click.option("--dry-run", is_flag=True, help="Show what would run; run nothing.")
def resume(
    run_id: int,
    config: Path | None,
    taskfile: Path | None,
    datasources: Path | None,
    force: bool,
    dry_run: bool,
) -> None:
    """Run again the tasks of RUN_ID that did not succeed (= run --resume RUN_ID).

    The task file and config file of that run are used unless given here.
    """
    _resume(run_id, config, taskfile, datasources, force, dry_run)


def _resume(
    run_id: int,
    config: Path | None,
    taskfile: Path | None,
    datasources: Path | None,
    force: bool,
    dry_run: bool,
) -> None:
    from mflow.resume import NothingToResume
    from mflow.runner import execute, exit_code, prepare_resume

    try:
        inputs, plan = prepare_resume(run_id, config, taskfile, datasources, force=force)
    except NothingToResume as done:
        click.echo(str(done))
        return
    _warn(inputs.warnings)
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)
    to_run = [t for t in plan.task_ids if t not in plan.skipped]
    if not to_run:
        click.echo(f"run {run_id}: every task succeeded; nothing to resume")
        return
    if dry_run:
        _show_plan(inputs.flow, to_run)
        return
    result = execute(
        inputs,
        selected=plan.task_ids,
        skipped=plan.skipped,
        resumed_from=run_id,
        resume_after=plan.resumes_seen,
        scope=plan.scope,
        force=force,
    )
    sys.exit(exit_code(result))


def _show_plan(flow: Any, selected: list[str] | None) -> None:
    from mflow.graph import Graph, render_text

    if selected is None:
        click.echo(render_text(flow.graph))
        return
    chosen = set(selected)
    click.echo(
        render_text(
            Graph(
                {
                    t: [d for d in flow.tasks[t].depends if d in chosen]
                    for t in flow.tasks
                    if t in chosen
                }
            )
        )
    )


@cli.command()
@file_options
def validate(config: Path | None, taskfile: Path | None, datasources: Path | None) -> None:
    """Check config.json and the task file; report every problem. Runs nothing."""
    from mflow.inputs import load_inputs

    taskfile = taskfile or DEFAULT_TASKFILE
    inputs = load_inputs(*_config(config), taskfile, datasources)
    _warn(inputs.warnings)
    flow = inputs.flow
    click.echo(
        f"{taskfile}: OK, {_count(len(flow.tasks), 'task')}, "
        f"{_count(flow.graph.edge_count, 'dependency', 'dependencies')}"
    )


@cli.command()
@file_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "dot", "mermaid"]),
    default="text",
    show_default=True,
)
def graph(config: Path | None, taskfile: Path | None, datasources: Path | None, fmt: str) -> None:
    """Print the dependency graph as text, Graphviz DOT or Mermaid."""
    from mflow.graph import RENDERERS
    from mflow.inputs import load_inputs

    inputs = load_inputs(*_config(config), taskfile or DEFAULT_TASKFILE, datasources)
    click.echo(RENDERERS[fmt](inputs.flow.graph))


def _store(config: Path | None, datasources: Path | None, run_id: int | None = None) -> Any:
    """The state store named by config.json, for reading: a missing SQLite file is not made."""
    from mflow.inputs import NoStateDatabase, load_backend, open_store

    try:
        settings, backend = load_backend(config, datasources)
    except InvalidFilesError as exc:
        raise exc.instead("nothing was read") from None
    try:
        store = open_store(settings, backend, create=False)
    except NoStateDatabase as exc:
        if run_id is None:
            raise
        raise NoStateDatabase(f"no run {run_id}: {exc}") from None
    store.reap_dead_runs()  # a run whose mflow died shows INTERRUPTED, not RUNNING forever
    return store


@cli.command()
@state_options
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="How many runs, newest first.",
)
@click.option(
    "--state", type=click.Choice(RUN_STATES, case_sensitive=False), help="Only runs in this state."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(
    config: Path | None, datasources: Path | None, limit: int, state: str | None, as_json: bool
) -> None:
    """List recent runs, newest first."""
    from mflow import views
    from mflow.inputs import NoStateDatabase

    try:
        found = _store(config, datasources).list_runs(limit, state and state.upper())
    except NoStateDatabase as exc:
        found = []
        if not as_json:
            click.echo(f"no runs recorded yet ({exc})", err=True)
            return
    rows = [views.run_json(run) for run in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif not rows:
        click.echo(f"no runs in state {state.upper()}" if state else "no runs recorded yet")
    else:
        click.echo(views.runs_table(rows))


@cli.command()
@click.argument("run_id", type=RUN_ID)
@state_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(run_id: int, config: Path | None, datasources: Path | None, as_json: bool) -> None:
    """Show one run: every task's state, attempts, exit code and log."""
    from mflow import views

    store = _store(config, datasources, run_id)
    run_row = store.get_run(run_id)
    if run_row is None:
        raise UsageError(f"no run {run_id} in {store.url}; `mflow runs` lists the runs")
    data = views.status_tree(store, run_row)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(views.status_text(data))


@cli.command()
@click.argument("run_id", type=RUN_ID)
@click.argument("task_id")
@state_options
@click.option(
    "--attempt", type=click.IntRange(1, 100_000), help="Which attempt [default: the last]."
)
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing as the task writes, until it ends."
)
def logs(
    run_id: int,
    task_id: str,
    config: Path | None,
    datasources: Path | None,
    attempt: int | None,
    follow: bool,
) -> None:
    """Print the log of one task of a run."""
    from mflow import views

    out = sys.stdout.buffer
    printed = False
    try:
        for chunk in views.log_chunks(
            _store(config, datasources, run_id), run_id, task_id, attempt, follow
        ):
            out.write(chunk)
            out.flush()
            printed = True
    except BrokenPipeError:  # `mflow logs ... | head`: the reader has what it wanted
        sys.stdout = None  # type: ignore[assignment]
        return
    if not printed:
        click.echo(
            f"(no output: task '{task_id}' has no log file of this run: it printed "
            "nothing, or its log was removed)",
            err=True,
        )


@cli.command("types")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def types_command(as_json: bool) -> None:
    """List the task types, built-in and from plugins, with their keys."""
    from mflow import typelist

    data = typelist.types_json()
    _warn(data["ignored"])
    click.echo(json.dumps(data, indent=2) if as_json else typelist.types_text(data))


@cli.group()
def plugin() -> None:
    """Task-type plugins: see `mflow plugin new --help`."""


@plugin.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the folder mflow-NAME.",
)
def plugin_new(name: str, parent: Path) -> None:
    """Write mflow-NAME/: a plugin package for task type NAME, with tests."""
    from mflow import scaffold

    folder, files, notes = scaffold.new_plugin(name, parent)
    _warn(notes)
    click.echo(f"wrote {folder}/ with task type '{name}':")
    for path in files:
        click.echo(f"  {path}")
    click.echo(
        f"next, where mflow is installed:\n"
        f"  pip install -e '{folder}[test]'\n"
        f"  mflow types\n"
        f"  cd {folder} && python -m pytest"
    )


@cli.command()
@state_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="TCP port."
)
def serve(config: Path | None, datasources: Path | None, host: str, port: int) -> None:
    """Serve the REST API (/api, OpenAPI at /docs) and the web page over the runs' state.

    Read-only unless config.json's api_token (or MFLOW_API_TOKEN) is set: then cancel,
    retry and resume are allowed to requests that carry it.
    """
    if not host.strip():  # an unset "$HOST" would otherwise mean every interface
        raise UsageError(
            "--host is empty; give the address to listen on (127.0.0.1, the default, or "
            "0.0.0.0 for every interface)"
        )
    from mflow.server.serve import serve as start

    start(config, datasources, host, port)


def _translate_go_flags(argv: list[str]) -> list[str]:
    """Accept the original's `-taskfile x` / `-taskfile=x` as `--taskfile`, and `-help`
    (which Go's flag package answers) as `--help`."""
    out: list[str] = []
    for position, arg in enumerate(argv):
        if arg == "--":  # what follows is arguments, a task id "-config" say
            return out + argv[position:]
        if out and out[-1] in TASK_ID_OPTIONS:  # the value of --task and the like
            out.append(arg)
            continue
        name = arg[1:].split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith("--") and name in GO_STYLE_FLAGS:
            arg = "-" + arg
        elif arg == "-help":
            arg = "--help"
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    from mflow.launch import exit_now

    exit_now(run_cli(_translate_go_flags(sys.argv[1:] if argv is None else argv)))


def run_cli(args: list[str]) -> int:
    """Run one command; return its exit code. Expected errors print `Error: ...`."""
    if args and not args[0].startswith("-") and args[0] not in COMMANDS:
        from mflow.modelcheck import suggest

        click.echo(
            f"Error: unknown command '{args[0]}'{suggest(args[0], COMMANDS)}; "
            f"commands: {', '.join(COMMANDS)} (see mflow --help)",
            err=True,
        )
        return 2
    if not args or args[0] not in (*COMMANDS, "-h", "--help", "--version"):
        args = ["run", *args]  # `mflow` alone, or `mflow --taskfile x`, is `mflow run`
    try:
        cli.main(args, prog_name="mflow", standalone_mode=False)
    except BaseException as exc:
        return report_failure(exc)
    return 0


def report_failure(exc: BaseException) -> int:
    """Say what stopped a command, the same way for every command -> the exit code."""
    if isinstance(exc, click.exceptions.Abort):
        click.echo("Aborted.", err=True)
        return 130
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    if isinstance(exc, InvalidFilesError):
        for problem in exc.problems:  # compiler style: one located problem per line
            click.echo(str(problem), err=True)
        _warn(exc.warnings)
        click.echo(f"Error: {exc.summary}", err=True)
        return exc.exit_code
    if isinstance(exc, InternalError):
        click.echo(
            f"{exc}\nmflow hit an internal error (a bug); please report the above.", err=True
        )
        return exc.exit_code
    if isinstance(exc, MflowError):
        click.echo(f"Error: {exc}", err=True)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if isinstance(exc, BrokenPipeError):
        return 0
    traceback.print_exception(exc)
    click.echo("mflow hit an internal error (a bug); please report the traceback above.", err=True)
    return 70
