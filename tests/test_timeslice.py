"""Once two tasks run at once, mflow asks Linux for short time slices for its own thread
(src/mflow/timeslice.py), so that a task's end is handled at once. Its tasks must not
inherit that, nor lose the nice value they would have had."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import MFLOW, Project, bash

SHORTEST_SLICE_NS = 100_000


def _kernel_version() -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(found[1]), int(found[2])) if found else (0, 0)


pytestmark = pytest.mark.skipif(
    _kernel_version() < (6, 12), reason="a thread can ask for its own time slice since Linux 6.12"
)

# Each task records, once both run: mflow's slice and flags (its parent, with bash -c),
# and its own slice, flags and nice value.
PROBE = (
    "sleep 0.3; "
    "grep se.slice /proc/$PPID/sched > mflow_slice_{id}; chrt -p $PPID > mflow_chrt_{id}; "
    "grep se.slice /proc/$$/sched > task_slice_{id}; chrt -p $$ > task_chrt_{id}; "
    "cut -d' ' -f19 /proc/$$/stat > task_nice_{id}"  # nice: field 19 (bash's name has no space)
)


def _slice(path: Path) -> int:
    return int(path.read_text().split(":")[1])


def _default_slice() -> int:
    """What a process this test starts gets when nobody asked for anything."""
    sched = subprocess.run(["cat", "/proc/self/sched"], capture_output=True, text=True).stdout
    for line in sched.splitlines():
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    pytest.skip("this kernel shows no se.slice in /proc/PID/sched")


def _run_probes(project: Project, *prefix: str) -> None:
    project.write_config(max_process_concurrency=2)
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


def test_mflow_takes_short_slices_and_its_tasks_the_defaults(project: Project) -> None:
    default = _default_slice()
    _run_probes(project)
    root = project.root
    for task_id in ("a", "b"):
        assert _slice(root / f"mflow_slice_{task_id}") == SHORTEST_SLICE_NS
        assert "SCHED_RESET_ON_FORK" in (root / f"mflow_chrt_{task_id}").read_text()
        assert _slice(root / f"task_slice_{task_id}") == default
        task_chrt = (root / f"task_chrt_{task_id}").read_text()
        assert "SCHED_OTHER" in task_chrt and "RESET_ON_FORK" not in task_chrt
        assert int((root / f"task_nice_{task_id}").read_text()) == os.getpriority(
            os.PRIO_PROCESS, 0
        )


def test_a_niced_mflow_still_gives_its_tasks_its_nice_value(project: Project) -> None:
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    _run_probes(project, "nice", "-n", "5")
    for task_id in ("a", "b"):
        assert int((project.root / f"task_nice_{task_id}").read_text()) == min(mine + 5, 19)
        assert _slice(project.root / f"mflow_slice_{task_id}") == SHORTEST_SLICE_NS


@pytest.mark.skipif(os.geteuid() != 0, reason="a negative nice value needs root")
def test_with_a_negative_nice_mflow_asks_nothing(project: Project) -> None:
    """The flag that keeps the short slice from tasks would also reset their negative nice
    value to 0: mflow then leaves everything as it is."""
    default = _default_slice()
    expected = max(os.getpriority(os.PRIO_PROCESS, 0) - 5, -20)
    if expected >= 0:
        pytest.skip("this test runs at a nice value of 5 or more")
    _run_probes(project, "nice", "-n", "-5")
    for task_id in ("a", "b"):
        assert int((project.root / f"task_nice_{task_id}").read_text()) == expected
        assert _slice(project.root / f"mflow_slice_{task_id}") == default
        assert "RESET_ON_FORK" not in (project.root / f"mflow_chrt_{task_id}").read_text()
