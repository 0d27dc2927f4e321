"""Run one external program as a task.

- The program gets its own process group, so a timeout or a cancel stops the whole tree,
  and when the program exits, anything it left running in its group is killed too.
- Output (stdout and stderr together) comes through a pipe and is spliced into the task
  log by the kernel: mflow's memory does not grow with it. The log file is created at the
  first byte, so a task that prints nothing costs no file (file creation is slow on some
  file systems, often slower than the spawn itself).
- The exit is awaited through a pidfd on the event loop: no polling, no thread per task.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import resource
import select
import shutil
import signal
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.liveness import signal_group
from mflow.tasktypes.context import OutOfResources, TaskContext, TaskResult, create_log

if TYPE_CHECKING:
    import subprocess

_CHUNK = 1 << 20
# After a task's process exited and its group was killed, how long its output pipe may
# stay open: only a process that left the group (`setsid`, a daemon) can hold it longer,
# and the task does not wait for it (as Go's exec.Cmd.WaitDelay).
OUTPUT_GRACE_S = 2.0
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
_DEVNULL: int | None = None
_WHICH: dict[tuple[str, str], str] = {}
_POPENS: dict[int, subprocess.Popen[bytes]] = {}  # see _spawn


# What a task that ends gives back: open files (its pipe, pidfd and log), a process
_SHORTAGES = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN})
# Open files kept free for mflow itself (re-reading config.json, a late import, the
# connections of SQL and HTTP tasks): a process task does not start into them.
FILES_KEPT_FREE = 16


@functools.cache  # read once: not a system call per task
def _open_file_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 62  # (Linux refuses infinity)


def _out_of_resources(exc: OSError) -> OutOfResources:
    if exc.errno == errno.EMFILE:
        what = f"too many open files (mflow may have {_open_file_limit()}: ulimit -n)"
    elif exc.errno == errno.ENFILE:
        what = "the system's table of open files is full (fs.file-max)"
    else:
        what = "no more processes allowed (ulimit -u, or the cgroup's pids.max)"
    return OutOfResources(
        False,
        None,
        f"not started: {what}; raise the limit or lower max_process_concurrency",
        reason=what,
    )


def _devnull() -> int:
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _DEVNULL


def resolve_program(name: str, env: dict[str, str]) -> str | None:
    """The file to exec for `name`, searched in the task's own PATH (as bash would)."""
    if "/" in name:
        return name
    key = (name, env.get("PATH", os.defpath))
    found = _WHICH.get(key)
    if found is None:
        found = shutil.which(name, path=key[1])
        if found is not None:
            _WHICH[key] = found
    return found


async def run_process(
    argv: Sequence[str],
    ctx: TaskContext,
    *,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    grace_s: float | None = None,
    header: str | None = None,
    as_bash: bool = False,
) -> TaskResult:
    """Run `argv` as the attempt's process; its output goes to the attempt's log.
    `env`: instead of ctx.env. `on_line`: also see each line of output (it then passes
    through mflow rather than being spliced by the kernel). `grace_s`: instead of the
    configured kill_grace, between SIGTERM and SIGKILL when the task is stopped.
    `header`: text to start the log with (the command line, say).
    `as_bash`: say a missing program as bash would ("bash: line 1: x: command not found")."""
    started = start_process(argv, ctx, env=env, as_bash=as_bash)
    if isinstance(started, TaskResult):
        return started
    child = started
    ctx.on_process(child.pid)
    if on_line is not None:
        child.observe_lines(on_line)
    if header is not None:
        child.start_log(header.encode())
    try:
        await child.done
    except asyncio.CancelledError:
        await child.stop(ctx.kill_grace_s if grace_s is None else grace_s)
        raise
    return child.result()


def start_process(
    argv: Sequence[str],
    ctx: TaskContext,
    *,
    env: dict[str, str] | None = None,
    as_bash: bool = False,
) -> Child | TaskResult:
    """Start `argv` as the attempt's process, now: its running Child, or the result of a
    start that failed (program not found, not runnable; OutOfResources when the system's
    limits refused it, before anything ran). Does not call ctx.on_process."""
    env = ctx.env if env is None else env
    program = resolve_program(argv[0], env)
    if program is None:
        return _spawn_failure(ctx.log_path, argv[0], FileNotFoundError(), as_bash)
    held: list[int] = []  # descriptors to close if the start goes no further
    try:
        read_fd, write_fd = os.pipe()
        held += (read_fd, write_fd)
        # The log is created at the task's first byte: hold a descriptor for it from now
        # on, so that a task that could start can always write its log.
        log_slot = os.dup(_devnull())
        held.append(log_slot)
        if log_slot >= _open_file_limit() - FILES_KEPT_FREE:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        pid = _spawn(program, argv, ctx.cwd, env, write_fd)
    except BaseException as exc:  # also ValueError (a NUL byte in an argument, say)
        for fd in held:
            os.close(fd)
        if not isinstance(exc, OSError):
            raise
        if exc.errno in _SHORTAGES:
            return _out_of_resources(exc)
        if len(held) < 3:  # the pipe or the slot, not the program
            raise
        return _spawn_failure(ctx.log_path, argv[0], exc, as_bash)
    os.close(write_fd)
    try:
        return Child(pid, read_fd, ctx.log_path, log_slot)
    except OSError as exc:  # started, but it cannot be watched: it must not run unwatched
        try:
            signal_group(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            _POPENS.pop(pid, None)
        finally:
            os.close(read_fd)
            os.close(log_slot)
        # Not OutOfResources: it may have done part of its work, and must not run again
        # unasked (its retries apply).
        return TaskResult(False, None, f"cannot watch its process: {exc.strerror or exc}")


def _spawn(program: str, argv: Sequence[str], cwd: Path, env: dict[str, str], out_fd: int) -> int:
    if str(cwd) == os.getcwd():
        # posix_spawn: the cheapest way to start a process from Python (vfork + exec).
        return os.posix_spawn(
            program,
            list(argv),
            env,
            setpgroup=0,
            # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: give the
            # task the defaults (as subprocess does), or `yes | head -1` ends in "Broken pipe".
            setsigdef=_DEFAULT_SIGNALS,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, _devnull(), 0),
                (os.POSIX_SPAWN_DUP2, out_fd, 1),
                (os.POSIX_SPAWN_DUP2, out_fd, 2),
            ],
        )
    import subprocess  # posix_spawn cannot change directory

    popen = subprocess.Popen(
        list(argv),
        executable=program,
        stdin=_devnull(),
        stdout=out_fd,
        stderr=out_fd,
        cwd=cwd,
        env=env,
        process_group=0,
    )
    # Kept until the Child reaps it: a Popen dropped while its process runs is reaped by
    # the subprocess module's own clean-up at the next Popen, and the Child's waitpid fails.
    _POPENS[popen.pid] = popen
    return popen.pid


class _Watcher:
    """One epoll set holding every child's pidfd and output pipe, itself a single reader on
    the event loop: registering a descriptor here costs a system call, while each
    loop.add_reader builds several objects (it showed in profiles of 10,000-task runs)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._epoll = select.epoll()
        self._handlers: dict[int, Callable[[], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._dispatch)
        self._lingering: dict[Child, float] = {}  # exited, output still open: since when
        self._sweep: asyncio.TimerHandle | None = None
        self._ended: list[Child] = []  # done in this dispatch or sweep, on_done still due

    def lingering(self, child: Child) -> None:
        """`child` exited with its output still open; it is cut off after OUTPUT_GRACE_S.
        (One timer for all such children: most close their output a moment later.)"""
        self._lingering[child] = self._loop.time()
        if self._sweep is None:
            self._sweep = self._loop.call_later(OUTPUT_GRACE_S, self._cut_off_late)

    def drained(self, child: Child) -> None:
        self._lingering.pop(child, None)

    def _cut_off_late(self) -> None:
        self._sweep = None
        try:
            now = self._loop.time()
            for child, since in list(self._lingering.items()):
                if now - since >= OUTPUT_GRACE_S:
                    child.stop_reading()
        finally:  # whatever happened, keep watching the others
            if self._lingering and self._sweep is None:
                self._sweep = self._loop.call_later(OUTPUT_GRACE_S, self._cut_off_late)
            self._tell_ended()

    def watching(self) -> bool:
        return bool(self._handlers or self._lingering)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()

    def add(self, fd: int, handler: Callable[[], None]) -> None:
        self._handlers[fd] = handler
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        del self._handlers[fd]
        self._epoll.unregister(fd)

    def discard(self, fd: int) -> None:
        """Remove `fd` if it was added (after a failed add)."""
        if self._handlers.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass  # the handler was kept but the registration itself failed

    def ended(self, child: Child) -> None:
        """`child` is done: its on_done is called once this dispatch or sweep is over."""
        self._ended.append(child)

    def _dispatch(self) -> None:
        try:
            for fd, _ in self._epoll.poll(0):
                handler = self._handlers.get(fd)
                if handler is not None:
                    handler()  # an exception here is a bug: the loop's handler stops the run
        finally:
            self._tell_ended()

    def _tell_ended(self) -> None:
        """Only now, with every event of the poll handled: on_done may start processes,
        whose descriptors can take the numbers of ones just closed."""
        while self._ended:
            child = self._ended.pop(0)
            # Told once, and let go: the handler usually refers back to the child, and the
            # cycle would leave both to the cycle collector (a collection every ~100 tasks).
            on_done, child.on_done = child.on_done, None
            try:
                assert on_done is not None
                on_done()
            except Exception as exc:  # a bug: reported, and the next owners still told
                self._loop.call_exception_handler(
                    {"message": "error handling the end of a task", "exception": exc}
                )


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = (
    weakref.WeakKeyDictionary()
)


def release_watcher() -> None:
    """At the end of a run: close the running loop's epoll set, if it watches nothing more.
    The watcher and its loop refer to each other, and the loop's timers to both, so in a
    process that runs flows in turn (a program embedding mflow, the tests) each finished
    run would otherwise keep its loop and an open epoll set."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    # Only an idle one: after a bug, children may still be stopped while the loop winds
    # down (asyncio.run cancels what is left), and they need its events to end.
    if watcher is not None and not watcher.watching():
        del _watchers[loop]
        watcher.close()


def _watcher(loop: asyncio.AbstractEventLoop) -> _Watcher:
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = _Watcher(loop)
    return watcher


class Child:
    """One spawned process: its output pipe, its exit, and the means to stop its group.
    `done` is set to the exit code once the process exited and its output is in the log."""

    def __init__(self, pid: int, read_fd: int, log_path: Path, log_slot: int | None = None):
        self.loop = asyncio.get_running_loop()
        self.pid = pid
        self.returncode: int | None = None
        self.done: asyncio.Future[int] = self.loop.create_future()
        # Called in the same turn of the loop as `done` is set (a done callback would wait
        # for the next), after the other events of that turn: the engine starts the next
        # task from here.
        self.on_done: Callable[[], None] | None = None
        self._waiters: list[asyncio.Future[None]] = []  # stop() waits here for exit / drain
        self._read_fd: int | None = read_fd
        self._log_path = log_path
        self._log_fd: int | None = None
        self._log_slot = log_slot  # a descriptor held for the log until it is created
        self._lines: _Lines | None = None
        self.log_error: str | None = None  # output was lost: the attempt must not pass for OK
        self._watcher = _watcher(self.loop)
        self._pidfd = os.pidfd_open(pid)
        try:
            self._watcher.add(self._pidfd, self._on_exit)
            self._watcher.add(read_fd, self._on_output)
        except OSError:  # the epoll set is full (ENOSPC, ENOMEM): leave nothing behind
            self._watcher.discard(self._pidfd)
            self._watcher.discard(read_fd)
            os.close(self._pidfd)
            raise

    def _on_exit(self) -> None:
        self._watcher.remove(self._pidfd)
        os.close(self._pidfd)
        # The leader is a zombie, so its group id cannot be reused yet: kill what it left
        # behind (`cmd &`), which would otherwise outlive the task and hold the pipe open.
        signal_group(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        popen = _POPENS.pop(self.pid, None)
        if popen is not None:
            popen.returncode = self.returncode  # reaped: nothing left for subprocess to do
        if self._read_fd is not None:
            self._watcher.lingering(self)
        self._maybe_done()

    def _on_output(self) -> None:
        assert self._read_fd is not None
        if self._log_fd is None:
            # Readable also means end-of-file: only the first real byte creates the log.
            data = os.read(self._read_fd, _CHUNK)
            if data:
                if self.log_error is None:
                    self._open_log(data)
                return  # without a log (it could not be opened) output is drained, unkept
        else:
            try:
                if self._lines is None and os.splice(self._read_fd, self._log_fd, _CHUNK):
                    return
            except OSError:  # a file system that refuses splice: copy through user space
                pass
            data = os.read(self._read_fd, _CHUNK)
            if data:
                self._write(data)
                return
        self.stop_reading()  # every writer closed its end of the pipe

    def stop_reading(self) -> None:
        """Close the output pipe: at its end, or when only processes that left the task's
        group still hold it (they get SIGPIPE if they write again)."""
        assert self._read_fd is not None
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
        try:
            if self._lines is not None:
                self._lines.close()  # the observer's last line
        finally:  # whatever the observer did, the pipe is closed and the task can end
            self._release_log_slot()
            self._watcher.drained(self)
            self._watcher.remove(self._read_fd)
            os.close(self._read_fd)
            self._read_fd = None
            self._maybe_done()

    def _release_log_slot(self) -> None:
        if self._log_slot is not None:
            os.close(self._log_slot)
            self._log_slot = None

    def observe_lines(self, on_line: Callable[[str], None]) -> None:
        """Also pass every line of output to `on_line` (before any output was read)."""
        self._lines = _Lines(on_line)

    def result(self) -> TaskResult:
        """The attempt's result, once `done`."""
        if self.log_error is not None:
            return TaskResult(False, self.returncode, self.log_error)
        return result_of(self.done.result())

    def start_log(self, text: bytes) -> None:
        """Create the log now, beginning with `text` (not seen by the line observer)."""
        lines, self._lines = self._lines, None
        self._open_log(text)
        self._lines = lines

    def _open_log(self, first: bytes) -> None:
        self._release_log_slot()
        try:
            self._log_fd = create_log(self._log_path)
        except OSError as exc:
            self.log_error = f"cannot write its log {self._log_path}: {exc.strerror or exc}"
            return
        self._write(first)

    def _write(self, data: bytes) -> None:
        assert self._log_fd is not None
        if self._lines is not None:
            self._lines.feed(data)
        try:
            os.write(self._log_fd, data)
        except OSError as exc:  # disk full, say: the task is told so at its end
            self.log_error = f"cannot write its log {self._log_path}: {exc.strerror or exc}"

    def _maybe_done(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self.returncode is not None and self._read_fd is None and not self.done.done():
            self.done.set_result(self.returncode)
            if self.on_done is not None:
                self._watcher.ended(self)

    async def _changed(self) -> None:
        waiter = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            self._waiters.remove(waiter)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM the group; SIGKILL it if the leader outlives the grace. Returns once the
        leader is reaped and the output pipe is drained."""
        if self.returncode is None:
            signal_group(self.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    while self.returncode is None:
                        await self._changed()
            except TimeoutError:
                signal_group(self.pid, signal.SIGKILL)
        while self.returncode is None or self._read_fd is not None:
            await self._changed()


class _Lines:
    """Cuts output into lines for an observer; a line longer than 64 KiB is cut there."""

    _LIMIT = 1 << 16

    def __init__(self, on_line: Callable[[str], None]):
        self._on_line = on_line
        self._partial = b""

    def feed(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        if len(self._partial) > self._LIMIT:
            lines.append(self._partial)
            self._partial = b""
        for line in lines:
            self._on_line(line.decode("utf-8", "replace").rstrip("\r"))

    def close(self) -> None:
        if self._partial:
            self._on_line(self._partial.decode("utf-8", "replace"))
            self._partial = b""


_SUCCEEDED = TaskResult(True, 0)  # frozen: one for every success (a new one costs ~2 us)


def result_of(returncode: int) -> TaskResult:
    if returncode == 0:
        return _SUCCEEDED
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:  # a real-time signal (SIGRTMIN+n) has no name in Python
            name = str(-returncode)
        return TaskResult(False, 128 - returncode, f"killed by signal {name}")
    return TaskResult(False, returncode, f"exit code {returncode}")


def _spawn_failure(log_path: Path, program: str, exc: OSError, as_bash: bool) -> TaskResult:
    """Say what bash would have said, with bash's exit codes (127 not found, 126 not runnable)."""
    if isinstance(exc, FileNotFoundError):
        code, reason = 127, ("No such file or directory" if "/" in program else "command not found")
    elif isinstance(exc, PermissionError) and os.path.isdir(program):
        code, reason = 126, "Is a directory"  # what bash says of it
    else:
        code, reason = 126, exc.strerror or str(exc)
    try:
        fd = create_log(log_path)
        with open(fd, "w", encoding="utf-8") as log:
            log.write(
                f"bash: line 1: {program}: {reason}\n"
                if as_bash
                else f"cannot run {program}: {reason}\n"
            )
    except OSError:
        pass  # the message below says it all
    return TaskResult(False, code, f"{program}: {reason}")
