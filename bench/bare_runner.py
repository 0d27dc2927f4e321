#!/usr/bin/env python3
"""The least a Python runner can do per task, against make -j2, in the same run.

The bare runner starts N `true` processes two at a time the way mflow starts one (a pipe
for the output, posix_spawn into a process group of its own, a pidfd and the pipe in one
epoll set, the group killed and the child reaped at exit) and nothing else: no event loop,
no program lookup, no states, no database, no logs. What mflow costs above it is its own
bookkeeping. It times itself from its first spawn (its start-up, a few milliseconds, is
left out) and make as a whole process.

With --busy US it also spends US microseconds of CPU after each task's end (once the next
task is started, as mflow records an ended task), a stand-in for a runner's own
bookkeeping: how much a microsecond of it costs in wall time against make.

  python3 bench/bare_runner.py             # 10,000 tasks, 3 rounds
  python3 bench/bare_runner.py -n 1000 -r 5
  python3 bench/bare_runner.py --busy 200
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CONCURRENCY = 2


def bare_run(n: int, busy_s: float = 0.0) -> float:
    """Run n tasks, spending `busy_s` of CPU after each end; -> CPU seconds of this process
    per task (children excluded)."""
    true = shutil.which("true") or "/bin/true"
    env = dict(os.environ)
    stdin = os.open(os.devnull, os.O_RDONLY)
    epoll = select.epoll()
    owners: dict[int, tuple[int, bool]] = {}  # fd -> (pid, is the pidfd)
    started = done = 0
    cpu0 = os.times()

    def start() -> None:
        nonlocal started
        read_fd, write_fd = os.pipe()
        pid = os.posix_spawn(
            true,
            ["true"],
            env,
            setpgroup=0,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin, 0),
                (os.POSIX_SPAWN_DUP2, write_fd, 1),
                (os.POSIX_SPAWN_DUP2, write_fd, 2),
            ],
        )
        os.close(write_fd)
        pidfd = os.pidfd_open(pid)
        for fd, is_pidfd in ((pidfd, True), (read_fd, False)):
            epoll.register(fd, select.EPOLLIN)
            owners[fd] = (pid, is_pidfd)
        started += 1

    while started < min(CONCURRENCY, n):
        start()
    while done < n:
        for fd, _ in epoll.poll():
            pid, is_pidfd = owners.pop(fd)
            epoll.unregister(fd)
            if not is_pidfd:  # end of output
                os.read(fd, 1 << 16)
                os.close(fd)
                continue
            os.close(fd)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            done += 1
            if started < n:
                start()
            if busy_s:
                spin_until = time.perf_counter() + busy_s
                while time.perf_counter() < spin_until:
                    pass
    cpu1 = os.times()
    return (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / n


def make_file(n: int, folder: str) -> str:
    path = os.path.join(folder, "bare.mk")
    names = [f"t{i}" for i in range(n)]
    with open(path, "w") as f:
        f.write(f".PHONY: all {' '.join(names)}\nall: {' '.join(names)}\n")
        f.writelines(f"{name}:\n\ttrue\n" for name in names)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000, help="tasks (default 10,000)")
    ap.add_argument("-r", "--rounds", type=int, default=3, help="rounds (default 3)")
    ap.add_argument(
        "--busy",
        type=float,
        default=0.0,
        metavar="US",
        help="microseconds of CPU to spend after each task's end (default 0)",
    )
    args = ap.parse_args()
    if args.n < 1 or args.rounds < 1:
        ap.error("-n and --rounds must be at least 1")
    if not 0 <= args.busy <= 1e6:
        ap.error("--busy must be between 0 and 1,000,000 microseconds")
    walls: dict[str, list[float]] = {"bare Python runner": [], "make -j2": []}
    cpus: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        makefile = make_file(args.n, folder)
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            cpus.append(bare_run(args.n, args.busy / 1e6))
            walls["bare Python runner"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(["make", "-s", "-j2", "-f", makefile, "all"], check=True)
            walls["make -j2"].append(time.perf_counter() - t0)
    base = statistics.median(walls["make -j2"])
    busy = f", {args.busy:g} µs of busy work after each" if args.busy else ""
    print(
        f"{args.n:,} tasks of `true`, {CONCURRENCY} at a time{busy}, {args.rounds} rounds alternated:"
    )
    for name, values in walls.items():
        median = statistics.median(values)
        print(f"  {name:<20} {median:7.3f} s   {median / base:.2f}x make -j2")
    print(f"  bare runner's own CPU: {statistics.median(cpus) * 1e6:.0f} us a task")
    sys.exit(0)


if __name__ == "__main__":
    main()
