"""Ask Linux for short time slices for mflow's own thread, so a task's end is handled at once.

With more than one task at a time, mflow's thread shares the cores with its tasks'
processes. When a task ends, the kernel wakes mflow; but under Linux's EEVDF scheduler
(6.6 and later) the process running on mflow's core often keeps it until its slice
(1.4 ms on this 2-core machine) is used up, while the next task waits for mflow, and a
core may sit idle. Since Linux 6.12 a thread may ask for a shorter slice (`sched_setattr`,
`sched_runtime` under the normal policy), and a woken thread with a shorter slice than
the running one, and owed CPU time, takes the core at once. mflow asks for the shortest,
0.1 ms, once two tasks run at once, and keeps it until it exits. It gets no more CPU
than before: its priority is unchanged (raising it would need privileges).

Its tasks must not inherit the short slice: with SCHED_FLAG_RESET_ON_FORK, every process
mflow starts gets the kernel's defaults. That flag resets more than the slice: a
negative nice value to 0, a real-time policy to the normal one, and utilization clamps
(`uclampset`). So mflow asks nothing when any of those is set on it (`nice -n -5`,
`chrt`, `uclampset`); its tasks then inherit them, as they always did. Nor on a kernel
that does not take a slice (before 6.12, where the flag alone would apply), in a 32-bit
Python, or where the call is refused: nothing changes then.
"""

from __future__ import annotations

import os
import struct

SHORTEST_SLICE_NS = 100_000  # the kernel's lower bound
_SCHED_FLAG_RESET_ON_FORK = 0x01
# struct sched_attr up to the utilization clamps (SCHED_ATTR_SIZE_VER1)
_SCHED_ATTR = struct.Struct("=IIQiIQQQII")
_NO_CLAMPS = ((0, 0), (0, 1024))  # clamps not built into the kernel / not set

# (sched_setattr, sched_getattr) on each 64-bit machine
_SYSCALLS = {
    "x86_64": (314, 315),
    "aarch64": (274, 275),
    "riscv64": (274, 275),
    "loongarch64": (274, 275),
    "ppc64": (355, 356),
    "ppc64le": (355, 356),
    "s390x": (345, 346),
}


def ask_short_slice() -> None:
    """For the calling thread (the one that starts the tasks)."""
    try:
        _ask()
    except Exception:  # a bonus: whatever goes wrong, the run goes on as before
        pass


def _ask() -> None:
    numbers = _SYSCALLS.get(os.uname().machine)
    if numbers is None or struct.calcsize("P") != 8:  # uname names the kernel's machine;
        return  # a 32-bit Python on it would need the numbers of its own
    import ctypes  # 1-2 ms, paid only by runs that start two tasks at once

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    set_attr, get_attr = (ctypes.c_long(number) for number in numbers)
    this_thread, no_flags = ctypes.c_long(0), ctypes.c_uint(0)
    buffer = ctypes.create_string_buffer(_SCHED_ATTR.size)
    size = ctypes.c_uint(_SCHED_ATTR.size)
    if libc.syscall(get_attr, this_thread, buffer, size, no_flags) != 0:
        return
    (_, policy, flags, nice, _, runtime, _, _, util_min, util_max) = _SCHED_ATTR.unpack(buffer.raw)
    if (
        policy != os.SCHED_OTHER
        or nice < 0
        or flags & _SCHED_FLAG_RESET_ON_FORK  # set by someone else: leave it to them
        or runtime == 0  # a kernel that reports no slice takes none (before 6.12)
        or (util_min, util_max) not in _NO_CLAMPS
    ):
        return
    request = _SCHED_ATTR.pack(
        _SCHED_ATTR.size,
        os.SCHED_OTHER,
        _SCHED_FLAG_RESET_ON_FORK,
        nice,  # unchanged: only the slice is asked for
        0,
        SHORTEST_SLICE_NS,
        0,
        0,
        util_min,
        util_max,
    )
    libc.syscall(
        set_attr, this_thread, ctypes.create_string_buffer(request, len(request)), no_flags
    )
