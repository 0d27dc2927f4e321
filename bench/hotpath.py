#!/usr/bin/env python3
"""Where the time of one task goes: mflow's own bookkeeping against the process it starts.

Runs, in this process, a wide flow of N tasks three ways and prints microseconds per task:

  engine only    tasks of a type that starts no process (returns at once): scheduling,
                 state changes, the recorder's batched writes, the master log, the
                 terminal lines. What mflow costs beyond the process itself.
  spawn only     posix_spawn + wait of /usr/bin/true in a loop, nothing else: the floor
                 any runner pays (make pays it too).
  full run       `bash` tasks running `true`: the two together, plus the output pipe, the
                 pidfd and the process group.

  .venv/bin/python bench/hotpath.py [-n 10000] [--profile]

--profile also prints the top functions of the full run (cProfile). Run it on a quiet
machine; compare only figures of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from mflow.tasktypes.base import TaskContext, TaskResult, TaskSpec, TaskType


class NoProcessType(TaskType):
    """A task that succeeds at once, starting nothing."""

    async def run(self, task: TaskSpec, ctx: TaskContext) -> TaskResult:
        return TaskResult(True, 0)


def _run_flow(folder: Path, task_type: str, n: int) -> float:
    from mflow.inputs import load_inputs
    from mflow.runner import execute
    from mflow.tasktypes.registry import BUILTIN_TYPES

    folder.mkdir()
    tasks = [{"id": f"t{i}", "type": task_type, "command": "true"} for i in range(n)]
    if task_type == "noop":
        tasks = [{"id": f"t{i}", "type": "noop"} for i in range(n)]
    (folder / "tasks.json").write_text(json.dumps({"tasks": tasks}))
    (folder / "config.json").write_text(
        json.dumps({"max_process_concurrency": 2, "log_directory": str(folder / "logs")})
    )
    BUILTIN_TYPES["noop"] = "__main__:NoProcessType"
    inputs = load_inputs(folder / "config.json", True, folder / "tasks.json")
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = execute(inputs, live=False)
    elapsed = time.perf_counter() - started
    assert result.outcome.state == "SUCCESS", result.outcome.state
    return elapsed


def _spawn_loop(n: int) -> float:
    env = dict(os.environ)
    started = time.perf_counter()
    for _ in range(n):
        pid = os.posix_spawn("/usr/bin/true", ["true"], env, setpgroup=0)
        os.waitpid(pid, 0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="tasks per flow")
    parser.add_argument("--profile", action="store_true", help="cProfile the full run")
    args = parser.parse_args()
    n = args.n
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("engine only (no process)", _run_flow(Path(tmp) / "a", "noop", n)))
        rows.append(("spawn only (posix_spawn + wait)", _spawn_loop(n)))
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
        rows.append(("full run (bash tasks: true)", _run_flow(Path(tmp) / "c", "bash", n)))
        if args.profile:
            profiler.disable()
    for label, seconds in rows:
        print(f"{label:34} {seconds * 1e6 / n:8.1f} us/task   ({seconds:.2f} s for {n:,})")
    if args.profile:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
