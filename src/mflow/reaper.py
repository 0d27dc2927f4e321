"""Kill the task processes of an mflow that was killed itself (SIGKILL, the OOM killer).

A SIGKILLed mflow cannot clean up, and its tasks live in process groups of their own, so
nothing else would stop them. `mflow run` therefore starts this small helper process,
connected by a pipe that mflow never writes to until the run ends. Every task of the run
gets MFLOW_RUN_TOKEN (a random value) in its environment, and every process a task starts
inherits it. If the pipe closes without the word "done", mflow died: the helper SIGKILLs
every process that carries the token, and exits. On a normal end it just exits.

What is guaranteed when mflow is killed: every process a task started that still has the
token in its environment is killed, grandchildren and detached (setsid) ones included. A
process that scrubbed its environment, or runs as another user, is not found.
"""

from __future__ import annotations

import os
import signal
import sys

TOKEN_VARIABLE = "MFLOW_RUN_TOKEN"


class ReaperLink:
    """mflow's side: the token for the tasks' environment, and the pipe to the helper."""

    def __init__(self) -> None:
        self.token = os.urandom(16).hex()
        read_fd, self._write_fd = os.pipe()
        try:
            # Its own process group: a Ctrl-C at the terminal must not kill it before mflow.
            # Not the token of a parent flow (this mflow may be a nested flow's): when the
            # parent's helper kills this mflow, this helper must live on to kill our tasks.
            # This file run as a script, without site (-I -S): it needs the standard library
            # alone, and starts on a third of the CPU, which a short run on a busy machine
            # would otherwise wait for.
            os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", __file__, self.token],
                {key: value for key, value in os.environ.items() if key != TOKEN_VARIABLE},
                setpgroup=0,
                file_actions=[(os.POSIX_SPAWN_DUP2, read_fd, 0)],
            )
        finally:
            os.close(read_fd)

    def close(self) -> None:
        """The run ended normally: tell the helper so, and let it go (it is not waited for:
        it takes a few tens of milliseconds to start)."""
        try:
            os.write(self._write_fd, b"done")
        except OSError:
            pass
        os.close(self._write_fd)


def processes_with(token: str) -> list[int]:
    """Pids of the processes whose environment holds TOKEN_VARIABLE=token."""
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone already, or not ours to read
            continue
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return found


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the end of the pipe ends this process
    token = sys.argv[1]
    if sys.stdin.buffer.read() == b"done":
        return
    # mflow died. Kill until none is left: a process may fork while we look.
    for _ in range(10):
        pids = processes_with(token)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


if __name__ == "__main__":
    main()
