"""The kernel's own count of the failure tracepoints: counting perf events.

Why
---
A tracepoint hit for which the kernel runs no BPF program reaches no probe
and so no map count. Some such skips the kernel counts (``recursion_misses``
of a program: another BPF program was running on that CPU), some it does
not (on the project VM's sandbox kernel no BPF program runs while a thread of
PID 1 is current: doc/design.md, "Known limits"). A counting perf event on
the same tracepoint (``PERF_TYPE_TRACEPOINT``, no sampling, no ring buffer,
no BPF: what ``perf stat -a -e block:block_rq_error`` reads) counts every
hit its tracefs filter accepts, so the difference between its count and the
maps' count is the failures no probe saw. ``Shortfall`` computes it.

What perf sees of a hit with our probes attached (perf_trace_run_bpf_submit,
kernel/events/core.c, and trace_call_bpf, kernel/trace/bpf_trace.c):

- the probe ran: perf gets the hit only if the program returned non-zero;
  every probe of bpf/scsi_trace.c returns ``PRPT_PERF_KEEP`` (1);
- the probe was skipped for recursion: trace_call_bpf returns 0 and the hit
  is dropped for perf too. Such a failure is in ``recursion_misses`` only,
  so the shortfall and ``Aggregates.missed`` never count one failure twice;
- no program ran at all (the sandbox's PID 1 case): perf counts it; the
  maps do not. That is the shortfall.

Each kind's filter (kinds.toml ``perf_filter``) is the probe's own
condition of a failure written as a tracefs filter (``error != 0``), so the
two count the same hits. A kind without one has no kernel count.

Reading a perf event is read(2), not bpf(): it does not raise
``bpf_prog_active`` and so cannot make the probes skip a hit
(tests/test_daemon_bpf_syscalls.py).
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

log = logging.getLogger("peripety.tracepoints.perfcount")

TRACEFS_EVENTS = Path("/sys/kernel/tracing/events")


class TracepointCounter:
    """A counting perf event on one tracepoint, on every online CPU, with a
    tracefs filter (``""``: every hit). Opening needs CAP_PERFMON (root)."""

    def __init__(self, event_dir: Path, filter_: str = "") -> None:
        from bcc.perf import Perf
        from bcc.utils import get_online_cpus

        self.name = f"{event_dir.parent.name}:{event_dir.name}"
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
                    raise OSError(err, f"perf_event_open({self.name}, cpu {cpu}): {os.strerror(err)}")
                self.fds.append(fd)
                requests = [(Perf.PERF_EVENT_IOC_ENABLE, 0)]
                if filter_:
                    requests.insert(0, (Perf.PERF_EVENT_IOC_SET_FILTER, ct.c_char_p(filter_.encode())))
                for request, arg in requests:
                    if Perf.ioctl(fd, request, arg) < 0:
                        err = ct.get_errno()
                        raise OSError(err, f"perf ioctl on {self.name} (filter {filter_!r}): {os.strerror(err)}")
        except BaseException:
            self.close()
            raise

    def read(self) -> int:
        """Hits so far, summed over the CPUs (one read(2) per CPU)."""
        return sum(struct.unpack("<Q", os.read(fd, 8))[0] for fd in self.fds)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __enter__(self) -> "TracepointCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class KernelCounts:
    """One ``TracepointCounter`` per attached failure kind: ``read()`` ->
    {kind: hits since opening}. Open it after the probes are attached (see
    ``Shortfall``: a failure between attaching and opening is then in the
    maps only, which can only make the shortfall smaller, never invent one)."""

    def __init__(self, counters: Mapping[str, TracepointCounter], without: Mapping[str, str] | None = None):
        self.counters = dict(counters)
        self.without = dict(without or {})
        """Attached kinds with no kernel count -> why."""

    @classmethod
    def open(cls, probes: Iterable, events: Path = TRACEFS_EVENTS) -> "KernelCounts":
        """Counters for the attached ``probes`` (plan.py's, with ``.spec``):
        one per kind whose probe has a ``perf_filter``. A counter that
        cannot be opened is logged and left out (the maps still count)."""
        counters, without = {}, {}
        try:
            for probe in probes:
                spec = probe.spec
                if spec.perf_filter is None:
                    without[spec.kind] = spec.no_perf_count or "no perf_filter in kinds.toml"
                    continue
                category, event = spec.tracepoint.split(":")
                try:
                    counters[spec.kind] = TracepointCounter(events / category / event, spec.perf_filter)
                except (OSError, ValueError) as exc:
                    log.warning("no kernel count of %s failures (failures no probe saw go unreported): %s",
                                spec.kind, exc)
                    without[spec.kind] = str(exc)
        except BaseException:
            for counter in counters.values():
                counter.close()
            raise
        return cls(counters, without)

    def read(self) -> dict[str, int]:
        return {kind: counter.read() for kind, counter in self.counters.items()}

    def close(self) -> None:
        for counter in self.counters.values():
            counter.close()
        self.counters = {}


@dataclass
class Shortfall:
    """Per kind, the failures the kernel's count saw and the maps did not.

    The maps deliver epoch by epoch, a tick late: ``MapReader.collect()``
    drains the epoch retired by the previous collect, then retires the live
    one. ``update()`` is called once per collect with what that collect
    drained and a kernel reading taken *after* draining and *before*
    retiring the live epoch. Every hit in that reading whose probe ran was
    counted in the live epoch or an earlier one (the probe reads the epoch,
    counts, returns; perf counts the hit after that, and the reading is
    taken before the flip), so the reading is compared with the maps' total
    at the *next* collect, once the live epoch has been drained too. At
    that point both totals are complete, except for a probe that counted in
    the live epoch but whose perf increment had not happened yet when the
    reading was taken (microseconds at the flip): that makes the difference
    smaller, never larger. So a reported shortfall is always a failure that
    happened and that no probe saw; the figure reported is the largest
    difference seen so far, and each ``update()`` returns its increase.
    """

    maps: dict[str, int] = field(default_factory=dict)
    """Failures the maps delivered per kind, since the counters opened."""
    reported: dict[str, int] = field(default_factory=dict)
    """Shortfall reported so far per kind (what ``update()`` returned, summed)."""
    pending: dict[str, int] | None = None
    """The reading waiting for the maps to catch up with it."""

    def update(self, delivered: Mapping[str, int], reading: Mapping[str, int] | None) -> dict[str, int]:
        """Add one collect's map counts; compare the previous collect's
        reading with the maps' total; keep ``reading`` for the next call.
        Returns the new shortfall per kind (only kinds that grew)."""
        for kind, n in delivered.items():
            self.maps[kind] = self.maps.get(kind, 0) + n
        out: dict[str, int] = {}
        if self.pending is not None:
            for kind, kernel in self.pending.items():
                behind = kernel - self.maps.get(kind, 0) - self.reported.get(kind, 0)
                if behind > 0:
                    out[kind] = behind
                    self.reported[kind] = self.reported.get(kind, 0) + behind
        self.pending = dict(reading) if reading is not None else None
        return out

    def total(self) -> int:
        return sum(self.reported.values())
