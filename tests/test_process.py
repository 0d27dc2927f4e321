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
from mflow.tasktypes.process import Child, start_process


def test_a_failing_end_handler_keeps_no_other_task_waiting(tmp_path: Path) -> None:
    """Child.on_done is called after the other events of the same turn. If one raises (a
    bug), the loop's error handler hears of it, and the owners of the other children that
    ended are still told."""

    async def run() -> tuple[list[str], list[BaseException]]:
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
        told: list[str] = []
        children: list[Child] = []
        for name in ("a", "b", "c"):
            ctx = TaskContext(
                run_id=1,
                task_id=name,
                attempt=1,
                log_path=tmp_path / f"{name}.log",
                cwd=Path.cwd(),
                env=dict(os.environ),
            )
            child = start_process(["true"], ctx)
            assert isinstance(child, Child)

            def on_done(name: str = name) -> None:
                told.append(name)
                if name == "a":
                    raise RuntimeError("a bug in a's handler")

            child.on_done = on_done
            children.append(child)
        await asyncio.wait_for(asyncio.gather(*(child.done for child in children)), 10)
        return told, errors

    told, errors = asyncio.run(run())
    assert sorted(told) == ["a", "b", "c"]
    assert [str(error) for error in errors] == ["a bug in a's handler"]


def test_a_failing_end_handler_does_not_stop_the_cut_off_of_daemons(tmp_path: Path) -> None:
    """Two tasks whose `setsid` daemons keep their output open: both are cut off after the
    grace, and told, even when the handler of the first raises."""
    token = unique_token()

    async def run() -> tuple[list[str], list[BaseException]]:
        loop = asyncio.get_running_loop()
        errors: list[BaseException] = []
        loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
        told: list[str] = []
        children: list[Child] = []
        for name in ("a", "b"):
            ctx = TaskContext(
                run_id=1,
                task_id=name,
                attempt=1,
                log_path=tmp_path / f"{name}.log",
                cwd=Path.cwd(),
                env=dict(os.environ),
            )
            child = start_process(["bash", "-c", f"setsid sleep {token} & sleep 0.3; exit 0"], ctx)
            assert isinstance(child, Child)

            def on_done(name: str = name) -> None:
                told.append(name)
                if name == "a":
                    raise RuntimeError("a bug in a's handler")

            child.on_done = on_done
            children.append(child)
        await asyncio.wait_for(asyncio.gather(*(child.done for child in children)), 15)
        return told, errors

    try:
        told, errors = asyncio.run(run())
    finally:
        for pid in pids_with_arg(token):
            os.kill(pid, signal.SIGKILL)
    assert sorted(told) == ["a", "b"]
    assert [str(error) for error in errors] == ["a bug in a's handler"]


def test_a_process_started_in_another_folder_is_reaped_by_mflow_alone(tmp_path: Path) -> None:
    """A task whose folder is not mflow's current one is started through subprocess.Popen.
    subprocess reaps, at its next Popen, the processes of Popen objects dropped while they
    ran; mflow must keep its own, or its wait for the exit fails."""

    async def run() -> int:
        ctx = TaskContext(
            run_id=1,
            task_id="elsewhere",
            attempt=1,
            log_path=tmp_path / "elsewhere.log",
            cwd=tmp_path,  # not the current folder
            env=dict(os.environ),
        )
        child = start_process(["true"], ctx)
        assert isinstance(child, Child)
        time.sleep(0.3)  # it has exited, and the loop has not seen it yet
        subprocess.run(["true"], check=True)  # another Popen
        return await asyncio.wait_for(child.done, 10)

    assert Path.cwd() != tmp_path
    assert asyncio.run(run()) == 0
