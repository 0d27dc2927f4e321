"""Once two tasks run at once, mflow asks Linux for short time slices for its own thread
(src/mflow/timeslice.py), so that a task's end is handled at once. Its tasks must not
inherit that, nor lose the nice value or policy they would have had."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import MFLOW, Project, bash

SHORTEST_SLICE_NS = 100_000
RESET_ON_FORK = 0x40000000  # SCHED_RESET_ON_FORK, as sched_getscheduler() reports it

# Each task records, while both run: mflow's slice and policy (mflow is its parent, through
# bash -c), and its own slice, policy and nice value (field 19 of /proc/PID/stat).
PROBE = (
    "set -e; sleep 0.3; "
    "grep se.slice /proc/$PPID/sched > mflow_slice_{id}; chrt -p $PPID > mflow_chrt_{id}; "
    "grep se.slice /proc/$$/sched > task_slice_{id}; chrt -p $$ > task_chrt_{id}; "
    "cut -d' ' -f19 /proc/$$/stat > task_nice_{id}"
)


def _kernel_takes_slices() -> bool:
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    version = (int(found[1]), int(found[2])) if found else (0, 0)
    return version >= (6, 12) and "se.slice" in Path("/proc/self/sched").read_text()


needs_slices = pytest.mark.skipif(
    not _kernel_takes_slices(), reason="a thread can ask for its own time slice since Linux 6.12"
)
pytestmark = pytest.mark.skipif(
    shutil.which("chrt") is None or not Path("/proc/self/sched").exists(),
    reason="needs chrt (util-linux) and /proc/PID/sched",
)


def _slice(path: Path) -> int:
    return int(path.read_text().split(":")[1])


def _default_slice() -> int:
    """The slice of a process this test starts, as tasks should get it."""
    sched = subprocess.run(["cat", "/proc/self/sched"], capture_output=True, text=True).stdout
    return int(
        next(line for line in sched.splitlines() if line.startswith("se.slice")).split(":")[1]
    )


def _asks_freely() -> None:
    """mflow asks for a slice only from the normal policy with a nice value of 0 or more."""
    policy = os.sched_getscheduler(0) & ~RESET_ON_FORK  # set here if a test ran mflow in-process
    if policy != os.SCHED_OTHER or os.getpriority(os.PRIO_PROCESS, 0) < 0:
        pytest.skip("this test runs under another policy or a negative nice value")


def _run_probes(project: Project, *prefix: str, concurrency: int = 2) -> Path:
    project.write_config(max_process_concurrency=concurrency)
    project.write_tasks([bash(task_id, PROBE.format(id=task_id)) for task_id in ("a", "b")])
    result = subprocess.run(
        [*prefix, *MFLOW, "run"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return project.root


@needs_slices
def test_mflow_takes_short_slices_and_its_tasks_the_defaults(project: Project) -> None:
    _asks_freely()
    default = _default_slice()
    root = _run_probes(project)
    for task_id in ("a", "b"):
        assert _slice(root / f"mflow_slice_{task_id}") == SHORTEST_SLICE_NS
        assert "SCHED_RESET_ON_FORK" in (root / f"mflow_chrt_{task_id}").read_text()
        assert _slice(root / f"task_slice_{task_id}") == default
        task_chrt = (root / f"task_chrt_{task_id}").read_text()
        assert "SCHED_OTHER" in task_chrt and "RESET_ON_FORK" not in task_chrt
        assert int((root / f"task_nice_{task_id}").read_text()) == os.getpriority(
            os.PRIO_PROCESS, 0
        )


@needs_slices
def test_one_task_at_a_time_asks_nothing(project: Project) -> None:
    _asks_freely()
    default = _default_slice()
    root = _run_probes(project, concurrency=1)
    for task_id in ("a", "b"):
        assert _slice(root / f"mflow_slice_{task_id}") == default
        assert "RESET_ON_FORK" not in (root / f"mflow_chrt_{task_id}").read_text()


def test_a_niced_mflow_still_gives_its_tasks_its_nice_value(project: Project) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    root = _run_probes(project, "nice", "-n", "5")
    for task_id in ("a", "b"):
        assert int((root / f"task_nice_{task_id}").read_text()) == min(mine + 5, 19)
        if _kernel_takes_slices() and mine >= 0:
            assert _slice(root / f"mflow_slice_{task_id}") == SHORTEST_SLICE_NS


def test_tasks_keep_the_policy_mflow_was_started_with(project: Project) -> None:
    """`chrt -b 0 mflow run`: the tasks run as SCHED_BATCH, and mflow asks for nothing."""
    root = _run_probes(project, "chrt", "-b", "0")
    for task_id in ("a", "b"):
        assert "SCHED_BATCH" in (root / f"task_chrt_{task_id}").read_text()
        assert "RESET_ON_FORK" not in (root / f"mflow_chrt_{task_id}").read_text()


def test_with_a_negative_nice_mflow_asks_nothing(project: Project) -> None:
    """The flag that keeps the short slice from tasks would also reset their negative nice
    value to 0: mflow then leaves everything as it is."""
    expected = os.getpriority(os.PRIO_PROCESS, 0) - 5
    check = subprocess.run(
        ["nice", "-n", "-5", "cut", "-d", " ", "-f19", "/proc/self/stat"],
        capture_output=True,
        text=True,
    )
    if check.stdout.strip() != str(expected) or expected >= 0:
        pytest.skip("lowering the nice value needs root with CAP_SYS_NICE, from a nice of 0-4")
    root = _run_probes(project, "nice", "-n", "-5")
    for task_id in ("a", "b"):
        assert int((root / f"task_nice_{task_id}").read_text()) == expected
        assert "RESET_ON_FORK" not in (root / f"mflow_chrt_{task_id}").read_text()
