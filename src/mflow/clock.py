"""Timestamps for log lines, cheap enough to print one per task state change."""

from __future__ import annotations

import time


class LineClock:
    """Formats the wall-clock time; the part up to the second is formatted once per second."""

    def __init__(self, fmt: str, utc: bool, suffix: str = ""):
        self._fmt = fmt
        self._convert = time.gmtime if utc else time.localtime
        self._suffix = suffix
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        stamp = time.time()
        second = int(stamp)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime(self._fmt, self._convert(second))
        return f"{self._prefix}.{int((stamp - second) * 1000):03d}{self._suffix}"


def local_clock() -> LineClock:
    """YYYY-MM-DD HH:MM:SS.mmm in local time, for the terminal and cron mail."""
    return LineClock("%Y-%m-%d %H:%M:%S", utc=False)


def utc_clock() -> LineClock:
    """ISO 8601 in UTC with milliseconds, for mflow.log."""
    return LineClock("%Y-%m-%dT%H:%M:%S", utc=True, suffix="Z")
