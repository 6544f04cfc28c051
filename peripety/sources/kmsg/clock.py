"""Kernel time and boot identity.

kmsg's ``usec`` comes from ``local_clock()`` (sched_clock): it stops during
suspend like CLOCK_MONOTONIC and unlike CLOCK_BOOTTIME. Measured on Linux
6.18 in a KVM guest: a record written right after reading CLOCK_MONOTONIC
carries a usec about 1 ms *below* it (the two clocks start at slightly
different moments), while CLOCK_BOOTTIME equals CLOCK_MONOTONIC without a
suspend. So wall-clock time is ``usec + (CLOCK_REALTIME - CLOCK_MONOTONIC)``,
exact to about a millisecond (``dmesg -T`` uses BOOTTIME and drifts after
every suspend).
"""

from __future__ import annotations

import datetime as _dt
import time

from ...event import local_time

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boot_id(path: str = BOOT_ID_PATH) -> str:
    """This boot's id: kmsg sequence numbers are only comparable within one boot."""
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def realtime_offset() -> float:
    """Seconds to add to a monotonic time to get Unix time, now."""
    return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)


def kernel_usec_to_wallclock(usec: int) -> _dt.datetime:
    """Wall-clock time (local zone) of a kmsg timestamp from this boot."""
    return local_time(realtime_offset() + usec / 1_000_000)
