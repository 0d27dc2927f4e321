"""The process runner's own contract (src/mflow/tasktypes/process.py), below the engine."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import pids_with_arg, unique_token
from mflow.tasktypes.context import TaskContext
from mflow.tasktypes.process import Child, release_watcher, start_process


def _context(folder: Path, name: str, cwd: Path | None = None) -> TaskContext:
    return TaskContext(
        run_id=1,
        task_id=name,
        attempt=1,
        log_path=folder / f"{name}.log",
        cwd=cwd or Path.cwd(),
        env=dict(os.environ),
    )


def _end_with_a_failing_handler(
    folder: Path, argv: list[str], names: tuple[str, ...], timeout: float
) -> tuple[list[str], list[str]]:
    """Start `argv` once per name; the end handler of the first raises. -> the names whose
    handler was called, and the errors the loop's handler heard of."""

    async def run() -> tuple[list[str], list[str]]:
        loop = asyncio.get_running_loop()
        errors: list[str] = []
        loop.set_exception_handler(lambda _, context: errors.append(str(context["exception"])))
        told: list[str] = []
        children: list[Child] = []
        for name in names:
            child = start_process(argv, _context(folder, name))
            assert isinstance(child, Child)

            def on_done(name: str = name) -> None:
                told.append(name)
                if name == names[0]:
                    raise RuntimeError(f"a bug in {name}'s handler")

            child.on_done = on_done
            children.append(child)
        await asyncio.wait_for(asyncio.gather(*(child.done for child in children)), timeout)
        return told, errors

    return asyncio.run(run())


def test_a_failing_end_handler_keeps_no_other_task_waiting(tmp_path: Path) -> None:
    """Child.on_done is called after the other events of the same turn. If one raises (a
    bug), the loop's error handler hears of it, and the owners of the other children that
    ended are still told."""
    told, errors = _end_with_a_failing_handler(tmp_path, ["true"], ("a", "b", "c"), 10)
    assert sorted(told) == ["a", "b", "c"]
    assert errors == ["a bug in a's handler"]


def test_a_failing_end_handler_does_not_stop_the_cut_off_of_daemons(tmp_path: Path) -> None:
    """Two tasks whose `setsid` daemons keep their output open: both are cut off after the
    grace, and told, even when the handler of the first raises."""
    token = unique_token()
    argv = ["bash", "-c", f"setsid sleep {token} & sleep 0.3; exit 0"]
    try:
        told, errors = _end_with_a_failing_handler(tmp_path, argv, ("a", "b"), 15)
    finally:
        for pid in pids_with_arg(token):
            os.kill(pid, signal.SIGKILL)
    assert sorted(told) == ["a", "b"]
    assert errors == ["a bug in a's handler"]


def test_a_process_started_in_another_folder_is_reaped_by_mflow_alone(tmp_path: Path) -> None:
    """A task whose folder is not mflow's current one is started through subprocess.Popen.
    subprocess reaps, at its next Popen, the processes of Popen objects dropped while they
    ran; mflow must keep its own, or its wait for the exit fails."""

    async def run() -> int:
        child = start_process(["true"], _context(tmp_path, "elsewhere", cwd=tmp_path))
        assert isinstance(child, Child)
        time.sleep(0.3)  # it has exited, and the loop has not seen it yet
        subprocess.run(["true"], check=True)  # another Popen
        return await asyncio.wait_for(child.done, 10)

    assert Path.cwd() != tmp_path  # so the task is started in another folder, through Popen
    assert asyncio.run(run()) == 0


def test_a_watcher_still_watching_a_process_is_kept_at_the_end_of_a_run(tmp_path: Path) -> None:
    """A run closes its watcher's epoll set as it ends, but not while a process is still
    watched (a run cut short by a bug stops its tasks while the loop winds down): that
    process must still be seen to end."""

    async def run() -> int:
        child = start_process(["sleep", "0.2"], _context(tmp_path, "a"))
        assert isinstance(child, Child)
        release_watcher()
        return await asyncio.wait_for(child.done, 10)

    assert asyncio.run(run()) == 0
