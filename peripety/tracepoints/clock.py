"""How far /dev/kmsg timestamps sit from the probes' CLOCK_MONOTONIC.

kmsg stamps records with local_clock() (sched_clock); bpf_ktime_get_ns() is
CLOCK_MONOTONIC. They start near each other at boot but are different
clocks, so a hit and the kernel line about the same request are matched
after correcting by this offset.
"""

from __future__ import annotations

import os
import select
import time
import uuid
from dataclasses import dataclass

KMSG = "/dev/kmsg"


@dataclass(frozen=True)
class ClockOffset:
    offset_usec: int
    """kmsg usec minus CLOCK_MONOTONIC usec at the same instant."""
    uncertainty_usec: int
    """Half the time the probe write took: the offset is good to +/- this."""


def kmsg_offset_usec(timeout: float = 2.0) -> ClockOffset:
    """Write one marker record to /dev/kmsg (user facility, so no rule ever
    treats it as a kernel event) and compare its stamp with CLOCK_MONOTONIC
    read just before and after the write."""
    marker = f"peripety: clock probe {uuid.uuid4().hex}"
    fd = os.open(KMSG, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.lseek(fd, 0, os.SEEK_END)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        os.write(fd, f"<14>{marker}\n".encode())
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        stamp = _wait_for_marker(fd, marker, timeout)
    finally:
        os.close(fd)
    middle_usec = (before + after) // 2000
    return ClockOffset(offset_usec=stamp - middle_usec, uncertainty_usec=(after - before + 1999) // 2000)


def _wait_for_marker(fd: int, marker: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            record = os.read(fd, 8192).decode("utf-8", "replace")
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{KMSG}: marker record did not come back") from None
            select.select([fd], [], [], left)
            continue
        except BrokenPipeError:  # records overwritten under us: keep reading
            continue
        head, _, text = record.partition(";")
        if text.split("\n", 1)[0] == marker:
            return int(head.split(",")[2])
