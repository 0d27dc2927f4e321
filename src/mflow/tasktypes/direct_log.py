"""A task log the task writes itself: its stdout and stderr are a file, as with a shell's
`> log 2>&1`, not a pipe that mflow copies from.

Output then reaches the disk in one copy and wakes mflow for nothing: 200 MB of output
cost a third less time than through a pipe. The file is opened without a name in the log
folder (O_TMPFILE) and named only once it holds something, so a task that prints nothing
still costs no file. While the task runs, the name is given within a tick (LinkTicker,
a quarter of a second) of its first byte; at its end, before its state is recorded.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PUBLISH_TICK_S = 0.25  # how soon a running task's first output gets its log file name
_PROC_FD = "/proc/self/fd"  # naming an unnamed file goes through its /proc link
_usable: bool | None = None


class DirectLog:
    def __init__(self, fd: int, path: Path):
        self.fd = fd  # the task's stdout and stderr
        self.path = path
        self.named = False
        self.error: str | None = None  # the log could not be named: its output is lost

    @classmethod
    def open(cls, path: Path) -> DirectLog | None:
        """An unnamed log in `path`'s folder, or None where the system cannot make one
        (a file system without O_TMPFILE, no /proc): the task's output then takes a pipe."""
        global _usable
        if _usable is None:
            _usable = hasattr(os, "O_TMPFILE") and os.path.isdir(_PROC_FD)
        if not _usable:
            return None
        try:
            fd = os.open(path.parent, os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC, 0o644)
        except OSError:
            return None
        return cls(fd, path)

    def name_if_written(self) -> bool:
        """Give the file its name if the task wrote to it. True once named (or failed)."""
        if self.named or self.error is not None:
            return True
        try:
            if os.fstat(self.fd).st_size == 0:
                return False
            self._link()
        except OSError as exc:
            self.error = f"cannot write its log {self.path}: {exc.strerror or exc}"
        return True

    def _link(self) -> None:
        try:
            self._link_once()
        except FileExistsError:
            # A file of a run this database does not know (see create_log): kept aside.
            aside = self.path.with_name(f"{self.path.name}.replaced-{time.time_ns()}")
            os.replace(self.path, aside)
            self._link_once()
        self.named = True

    def _link_once(self) -> None:
        # linkat(AT_SYMLINK_FOLLOW) on the /proc link. Python calls linkat only when given a
        # directory fd; the source path is absolute, so the kernel ignores the one given.
        source = f"{_PROC_FD}/{self.fd}"
        os.link(source, self.path, src_dir_fd=self.fd, follow_symlinks=True)

    def close(self) -> None:
        """At the task's end: named if it wrote anything, then closed."""
        self.name_if_written()
        os.close(self.fd)
