"""Kill the task process groups of an mflow that was killed itself (SIGKILL, OOM killer).

A SIGKILLed mflow cannot clean up, and its tasks live in their own process groups, so
nothing else would stop them. `mflow run` therefore starts this small helper process and
tells it, through a pipe, each process group it starts and ends ("+pgid" / "-pgid"). When
the pipe closes with groups still listed, mflow is gone: the helper SIGKILLs those groups
and exits. On a normal end the list is empty and the helper just exits.

What is guaranteed: every process still in a task's process group is killed, grandchildren
included. A process that left the group on purpose (setsid, a daemon) is not followed.
"""

from __future__ import annotations

import os
import signal
import sys

from mflow.listener import RunListener
from mflow.states import TaskState


class ReaperLink(RunListener):
    """mflow's side: starts the helper and keeps it told of every live task group."""

    def __init__(self) -> None:
        read_fd, self._write_fd = os.pipe()
        try:
            # Its own process group: a Ctrl-C at the terminal must not kill it before mflow.
            self.pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "mflow.reaper"],
                dict(os.environ),
                setpgroup=0,
                file_actions=[(os.POSIX_SPAWN_DUP2, read_fd, 0)],
            )
        finally:
            os.close(read_fd)
        self._groups: dict[tuple[str, int], int] = {}

    def _send(self, line: str) -> None:
        try:
            os.write(self._write_fd, line.encode())
        except OSError:
            pass  # the helper is gone; the run goes on, as it would have without it

    def attempt_process(self, task_id: str, attempt: int, pid: int) -> None:
        self._groups[(task_id, attempt)] = pid
        self._send(f"+{pid}\n")

    def attempt_ended(
        self, task_id: str, attempt: int, state: TaskState, exit_code: int | None, message: str
    ) -> None:
        pid = self._groups.pop((task_id, attempt), None)
        if pid is not None:
            self._send(f"-{pid}\n")

    def close(self) -> None:
        """The run ended normally: let the helper exit, and reap it."""
        os.close(self._write_fd)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the end of the pipe ends this process
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        sign, pgid = line[:1], int(line[1:])
        if sign == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


if __name__ == "__main__":
    main()
