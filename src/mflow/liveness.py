"""Processes by pid: is a recorded one still the one we recorded (Linux /proc; pids get
reused), and signalling a process group."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime

_SLACK_S = 5.0  # a process starts a moment before its row is written


def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_started_at(pid: int) -> float | None:
    """Epoch seconds at which `pid` started, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):  # dead, not yet reaped (its parent died too, say)
            return None
        ticks = int(fields[19])  # field 22 of proc(5); two fields precede the ')' split
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def same_process(pid: int | None, recorded_at: datetime | None) -> bool:
    """True if `pid` is alive and started no later than the row recorded at `recorded_at`
    (a naive UTC datetime): a reused pid belongs to a process that started afterwards."""
    if pid is None or recorded_at is None:
        return False
    started = process_started_at(pid)
    if started is None:
        return False
    return started <= recorded_at.replace(tzinfo=UTC).timestamp() + _SLACK_S


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Signal a process group; one that is already gone is fine."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
