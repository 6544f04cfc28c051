"""``TracepointSource``: the loaded probes as a pollable source of hits.

``fileno()`` is the BPF ring buffer map's own file descriptor: the kernel
reports it readable (EPOLLIN) while unconsumed samples sit in the ring, so
the daemon's one selector loop can wait on it like on /dev/kmsg, with no
thread. bcc's ``ring_buffer_consume()`` then drains it without blocking.

The kernel's own count of each failure kind (``perfcount.KernelCounts``,
counting perf events opened right after the probes are attached) goes with
the maps, so ``collect()`` also says how many failures no probe saw
(``Aggregates.unprobed``).

Counts come from the program's mmapped arrays, not from the samples:
``collect()`` (called each tick) returns the failures the program counted
(``aggregates.Aggregates``); a hit read from the ring is one of them, in
full detail. Neither reading the ring nor the counts makes a bpf() syscall.
"""

from __future__ import annotations

import ctypes as ct
import logging

from ..errors import BpfUnavailable
from . import loader
from .aggregates import Aggregates, MapReader
from .decode import SampleError, TracepointHit, decode_sample
from .perfcount import TRACEFS_EVENTS, KernelCounts
from .plan import AttachPlan, plan_attach

log = logging.getLogger("peripety.tracepoints.source")


class TracepointSource:
    """Storage error hits from the kernel's tracepoints."""

    def __init__(self, bpf, plan: AttachPlan, tuning: loader.Tuning = loader.DEFAULT_TUNING):
        self.plan = plan
        self.tuning = tuning
        self._bpf = bpf
        # After attaching (loader.load did): a failure in between is in the
        # maps only, which can make the shortfall smaller, never invent one.
        events = plan.tracefs_root / "events" if plan.tracefs_root else TRACEFS_EVENTS
        self.kernel_counts = KernelCounts.open(plan.probes, events)
        self.maps = MapReader(bpf, kernel_counts=self.kernel_counts.read if self.kernel_counts.counters else None)
        self._samples: list[bytes] = []
        self.undecodable = 0
        """Samples that did not decode (logged, never dropped silently)."""
        self._ring = bpf[b"events"]
        # Keep the callback trivial: an exception raised inside a ctypes
        # callback would be printed and lost, so decoding happens in read().
        self._ring.open_ring_buffer(self._on_sample)

    @classmethod
    def open(cls, mode: str = "auto", plan: AttachPlan | None = None,
             tuning: loader.Tuning = loader.DEFAULT_TUNING) -> "TracepointSource | None":
        """Load the probes for ``--bpf MODE``.

        ``off`` returns None. ``auto`` returns None after one warning naming
        why when the probes cannot load. ``on`` raises BpfUnavailable then.
        """
        plan = plan or plan_attach(mode)
        if mode == "off":
            return None
        try:
            return cls(loader.load(plan, tuning), plan, tuning)
        except BpfUnavailable as exc:
            if mode == "on":
                raise
            log.warning("--bpf auto: continuing without tracepoint probes: %s", "; ".join(exc.reasons))
            return None

    def _on_sample(self, ctx, data, size) -> int:
        self._samples.append(ct.string_at(data, size))
        return 0

    def fileno(self) -> int:
        return self._ring.map_fd

    def read(self) -> list[TracepointHit]:
        """Every hit waiting in the ring buffer (possibly none); never blocks."""
        self._bpf.ring_buffer_consume()
        samples, self._samples = self._samples, []
        hits = []
        for raw in samples:
            try:
                hits.append(decode_sample(raw))
            except SampleError as exc:
                self.undecodable += 1
                log.warning("bpf sample dropped: %s (%d so far)", exc, self.undecodable)
        return hits

    def collect(self) -> Aggregates | None:
        """Failures counted in the kernel since the last collect (None when
        the grace period of the map generations has not passed yet)."""
        return self.maps.collect()

    def flush(self) -> Aggregates:
        """Every failure counted so far (at shutdown; waits < 0.5 s)."""
        return self.maps.flush()

    def lost_by_kind(self) -> dict[str, int]:
        """Samples the kernel could not queue (ring buffer full), per kind
        (read from mapped memory: no syscall)."""
        return self.maps.totals("lost")

    def lost(self) -> int:
        return sum(self.lost_by_kind().values())

    def close(self) -> None:
        if self._bpf is not None:
            self.kernel_counts.close()
            self.maps.close()
            self._bpf.cleanup()
            self._bpf = None

    def __enter__(self) -> "TracepointSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
