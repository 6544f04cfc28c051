"""The kernel's own count of a tracepoint's hits: a counting perf event.

``TracepointCounter`` opens one perf event per online CPU on a tracepoint
(PERF_TYPE_TRACEPOINT, counting: no sampling, no ring buffer, no BPF) with a
tracefs-style filter such as ``dev == 7340032``, and sums the counts. It is
what ``perf stat -a -e block:block_rq_error --filter ...`` reads, so it also
shows what a perf user sees while BPF programs sit on the same tracepoint (a
TRACEPOINT program returning 0 drops the hit for perf:
perf_trace_run_bpf_submit in kernel/events/core.c).
"""

from __future__ import annotations

import ctypes as ct
import os
import struct
from pathlib import Path


class TracepointCounter:
    """A counting perf event on one tracepoint, on every online CPU, with a filter."""

    def __init__(self, event_dir: Path, filter_: str) -> None:
        from bcc.perf import Perf
        from bcc.utils import get_online_cpus

        attr = Perf.perf_event_attr()
        attr.type = Perf.PERF_TYPE_TRACEPOINT
        attr.config = int((event_dir / "id").read_text())
        attr.sample_period = 0  # counting only
        self.fds: list[int] = []
        try:
            for cpu in get_online_cpus():
                fd = Perf.syscall(Perf.NR_PERF_EVENT_OPEN, ct.byref(attr), -1, cpu, -1, Perf.PERF_FLAG_FD_CLOEXEC)
                if fd < 0:
                    err = ct.get_errno()
                    raise OSError(err, f"perf_event_open({event_dir.name}, cpu {cpu}): {os.strerror(err)}")
                self.fds.append(fd)
                for request, arg in ((Perf.PERF_EVENT_IOC_SET_FILTER, ct.c_char_p(filter_.encode())),
                                     (Perf.PERF_EVENT_IOC_ENABLE, 0)):
                    if Perf.ioctl(fd, request, arg) < 0:
                        err = ct.get_errno()
                        raise OSError(err, f"perf ioctl on {event_dir.name}: {os.strerror(err)}")
        except BaseException:
            self.close()
            raise

    def read(self) -> int:
        return sum(struct.unpack("<Q", os.read(fd, 8))[0] for fd in self.fds)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self) -> "TracepointCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
