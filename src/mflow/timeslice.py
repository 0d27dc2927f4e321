"""Ask Linux for short time slices for mflow's own thread, so a task's end is handled at once.

With more than one task at a time, mflow's thread shares a core with its tasks'
processes. When a task ends, the kernel wakes mflow, but on Linux's EEVDF scheduler
(6.6 and later) a process already running on that core keeps it until its slice (about
1.4 ms on 2 cores) is used up, and the next task waits for it: on 10,000 short tasks, a
fifth more time. Since Linux 6.12 a thread may ask for a shorter slice
(`sched_setattr`'s `sched_runtime` under the normal policy); a waking thread with a
shorter slice than the running one's takes the core at once. mflow asks for the
shortest, 0.1 ms, and no more CPU than before (its priority is unchanged; that would
need privileges).

Its tasks must not inherit the short slice: SCHED_FLAG_RESET_ON_FORK gives every process
mflow starts the kernel's defaults. That flag also resets a negative nice value to 0,
so mflow asks nothing when it runs with one (`nice -n -5 mflow run`, as root), nor under
another policy (`chrt`); its tasks then inherit both, as they always did. On an older
kernel, or where the call is refused, nothing changes.
"""

from __future__ import annotations

import os
import struct

SHORTEST_SLICE_NS = 100_000  # the kernel's lower bound
_SCHED_FLAG_RESET_ON_FORK = 0x01
_SCHED_ATTR_SIZE_VER0 = 48

# sched_setattr's number on each machine
_SYSCALL_NUMBERS = {"x86_64": 314, "aarch64": 274, "ppc64le": 355, "s390x": 345}


def ask_short_slice() -> bool:
    """For the calling thread; True if the kernel took the request (whether it honours
    a slice depends on its version: 6.12 and later do)."""
    number = _SYSCALL_NUMBERS.get(os.uname().machine)
    if number is None:
        return False
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            return False
        nice = os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:
        return False
    if nice < 0:
        return False
    try:
        import ctypes  # 1-2 ms, paid only by runs that start two tasks at once

        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):  # a Python built without ctypes
        return False
    attr = struct.pack(
        "IIQiIQQQ",
        _SCHED_ATTR_SIZE_VER0,
        os.SCHED_OTHER,
        _SCHED_FLAG_RESET_ON_FORK,
        nice,  # unchanged: only the slice is asked for
        0,
        SHORTEST_SLICE_NS,
        0,
        0,
    )
    return libc.syscall(number, 0, ctypes.create_string_buffer(attr, len(attr)), 0) == 0
