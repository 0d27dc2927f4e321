"""The `mflow` command line. The only module that decides exit codes; it maps MflowError
subclasses to theirs, and anything else is a bug (traceback, exit 70)."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mflow import __version__
from mflow.errors import MflowError, UsageError

COMMANDS = ("run", "validate", "graph", "runs", "status", "logs")
GO_STYLE_FLAGS = ("config", "taskfile", "datasources")


def file_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config / --taskfile / --datasources, shared by every command (the original's flags)."""

    @click.option("--config", "config", type=click.Path(path_type=Path), default=None,
                  help="Global settings file. [default: ./config.json, optional]")
    @click.option("--taskfile", type=click.Path(path_type=Path), default=Path("tasks.json"),
                  show_default=True, help="The flow: a JSON (or .yaml) task file.")
    @click.option("--datasources", type=click.Path(path_type=Path), default=None,
                  help="Database connections file (needed by oracle/sql tasks). "
                       "[default: ./oracle.json]")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def _config(config: Path | None) -> tuple[Path, bool]:
    """The config path and whether it must exist (only when named on the command line)."""
    return (config, True) if config is not None else (Path("config.json"), False)


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
@click.option("--task", "task_id", metavar="ID", help="Run this task alone, ignoring its dependencies.")
@click.option("--dry-run", is_flag=True, help="Validate and show the order of execution; run nothing.")
def run(config: Path | None, taskfile: Path, datasources: Path | None, task_id: str | None,
        dry_run: bool) -> None:
    """Run the flow in --taskfile (the default command)."""
    from mflow.graph import render_text
    from mflow.inputs import load_inputs
    from mflow.runner import execute, exit_code

    inputs = load_inputs(*_config(config), taskfile)
    _warn(inputs.settings.warnings + inputs.flow.warnings)
    selected = None
    if task_id is not None:
        if task_id not in inputs.flow.tasks:
            from mflow.modelcheck import suggest

            raise UsageError(f"--task: no task '{task_id}' in {taskfile}"
                             f"{suggest(task_id, inputs.flow.tasks)}")
        selected = [task_id]
    if dry_run:
        click.echo(render_text(inputs.flow.graph))
        return
    result = execute(inputs, selected=selected)
    sys.exit(exit_code(result))


@cli.command()
@file_options
def validate(config: Path | None, taskfile: Path, datasources: Path | None) -> None:
    """Check config.json and the task file; report every problem. Runs nothing."""
    from mflow.inputs import load_inputs

    inputs = load_inputs(*_config(config), taskfile)
    _warn(inputs.settings.warnings + inputs.flow.warnings)
    flow = inputs.flow
    click.echo(f"{taskfile}: OK, {len(flow.tasks)} tasks, {flow.graph.edge_count} dependencies")


@cli.command()
@file_options
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid"]), default="text",
              show_default=True)
def graph(config: Path | None, taskfile: Path, datasources: Path | None, fmt: str) -> None:
    """Print the dependency graph as text, Graphviz DOT or Mermaid."""
    from mflow.graph import RENDERERS
    from mflow.inputs import load_inputs

    inputs = load_inputs(*_config(config), taskfile)
    click.echo(RENDERERS[fmt](inputs.flow.graph))


def _store(config: Path | None) -> Any:
    from mflow.inputs import open_store
    from mflow.settings import load_settings

    path, required = _config(config)
    return open_store(load_settings(path, required=required))


@cli.command()
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Global settings file (says where the state database is).")
@click.option("--limit", default=20, show_default=True, help="How many runs, newest first.")
@click.option("--state", help="Only runs in this state (SUCCESS, FAILED, RUNNING, ...).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(config: Path | None, limit: int, state: str | None, as_json: bool) -> None:
    """List recent runs."""
    from mflow import views

    rows = [views.run_json(run) for run in _store(config).list_runs(limit, state and state.upper())]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo(views.runs_table(rows))


@cli.command()
@click.argument("run_id", type=int)
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Global settings file (says where the state database is).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(run_id: int, config: Path | None, as_json: bool) -> None:
    """Show one run: every task's state, attempts, exit code and log."""
    from mflow import views

    store = _store(config)
    run_row = store.get_run(run_id)
    if run_row is None:
        raise UsageError(f"no run {run_id} in {store.url}; `mflow runs` lists the runs")
    data = views.status_json(run_row, store.task_rows(run_id), store.attempt_rows(run_id))
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(views.status_text(data))


@cli.command()
@click.argument("run_id", type=int)
@click.argument("task_id")
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Global settings file (says where the state database is).")
@click.option("--attempt", type=int, help="Which attempt [default: the last].")
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the task writes, until it ends.")
def logs(run_id: int, task_id: str, config: Path | None, attempt: int | None, follow: bool) -> None:
    """Print the log of one task of a run."""
    from mflow import views

    out = sys.stdout.buffer
    for chunk in views.log_chunks(_store(config), run_id, task_id, attempt, follow):
        out.write(chunk)
        out.flush()


def _translate_go_flags(argv: list[str]) -> list[str]:
    """Accept the original's `-taskfile x` / `-taskfile=x` as `--taskfile`."""
    out = []
    for arg in argv:
        name = arg[1:].split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith("--") and name in GO_STYLE_FLAGS:
            arg = "-" + arg
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    args = _translate_go_flags(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    if not (set(args) & {"-h", "--help", "--version"} and first is None) and first not in COMMANDS:
        args = ["run", *args]  # `mflow` alone, or `mflow --taskfile x`, is `mflow run`
    try:
        cli.main(args, prog_name="mflow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MflowError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        click.echo("mflow hit an internal error (a bug); please report the traceback above.",
                   err=True)
        sys.exit(70)

