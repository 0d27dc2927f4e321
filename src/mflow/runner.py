"""One `mflow run`: load and check the files, open the store, run the engine, report."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass

from mflow.engine import Engine, RunOutcome
from mflow.errors import EnvironmentFault
from mflow.listener import Listeners, RunListener
from mflow.logs import MasterLog
from mflow.progress import LiveReporter, PlainReporter, summary
from mflow.inputs import Inputs, open_run_writer
from mflow.settings import SettingsWatcher
from mflow.states import RunState
from mflow.store.recorder import Recorder
from mflow.store.rows import TaskRow


@dataclass(frozen=True)
class RunResult:
    run_id: int
    outcome: RunOutcome
    signal: int | None  # the signal that cancelled the run, if any


def execute(inputs: Inputs, *, selected: Collection[str] | None = None,
            live: bool | None = None) -> RunResult:
    store = open_run_writer(inputs.settings)
    flow = inputs.flow
    task_ids = [t for t in flow.tasks if selected is None or t in selected]
    run_id = store.create_run(flow.path, inputs.settings.source,
                              [TaskRow(t, flow.tasks[t].type) for t in task_ids])
    if live is None:
        live = sys.stdout.isatty()
    reporter: RunListener = LiveReporter(run_id, len(task_ids)) if live else PlainReporter(run_id)
    master = MasterLog(inputs.settings.log_directory, run_id)
    master.write(f"started: task file {flow.path}, {len(task_ids)} tasks")
    recorder = Recorder(store, run_id)
    listener = Listeners([recorder, master, reporter])
    engine = Engine(flow, inputs.types, SettingsWatcher(inputs.settings), listener, run_id,
                    selected=selected)
    started = time.monotonic()
    # Tasks run in the task file's folder; being there already lets them start without
    # a chdir in each child (which would rule out posix_spawn, the fastest spawn).
    os.chdir(flow.folder)
    print(f"run {run_id}: {len(task_ids)} tasks from {flow.path}", flush=True)
    received: list[int] = []
    outcome = asyncio.run(_run_with_signals(engine, received))
    reporter.flush()
    print(summary(run_id, time.monotonic() - started, outcome), flush=True)
    store.close()
    if recorder.error is not None:
        raise EnvironmentFault(f"{recorder.error}; the last state changes of run {run_id} were "
                               f"not recorded (they are in {master.path})")
    return RunResult(run_id, outcome, received[0] if received else None)


async def _run_with_signals(engine: Engine, received: list[int]) -> RunOutcome:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        received.append(signum)
        engine.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, engine.reload_settings)
    return await engine.run()


def exit_code(result: RunResult) -> int:
    if result.outcome.state is RunState.SUCCESS:
        return 0
    if result.signal is not None:
        return 128 + result.signal
    return 1
