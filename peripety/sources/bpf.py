"""Tracepoint hits (the bcc probes of ``tracepoints/``) as a live source:
the ring buffer's fd to poll, decoded hits to read, lost samples as notices."""

from __future__ import annotations

from ..tracepoints import TracepointHit, TracepointSource
from .base import HITS, Notice


class BpfSource:
    name = "bpf"
    kind = HITS

    def __init__(self, tracepoints: TracepointSource):
        self.tracepoints = tracepoints
        self._lost_reported = 0

    @classmethod
    def open(cls, mode: str) -> "BpfSource | None":
        """``--bpf MODE``: None when ``auto`` finds nothing to attach (logged);
        ``on`` raises BpfUnavailable naming the fix."""
        tracepoints = TracepointSource.open(mode)
        return None if tracepoints is None else cls(tracepoints)

    @property
    def plan(self):
        return self.tracepoints.plan

    def fileno(self) -> int:
        return self.tracepoints.fileno()

    def read(self) -> list[TracepointHit]:
        return self.tracepoints.read()

    def notices(self) -> list[Notice]:
        lost = self.tracepoints.lost()
        if lost <= self._lost_reported:
            return []
        delta, self._lost_reported = lost - self._lost_reported, lost
        return [Notice("PERIPETY_BPF_LOST", f"{delta} tracepoint samples were lost (buffer full); their "
                       "failures are still counted in the kernel", {"lost": str(delta)})]

    def missed_notices(self, found) -> list[Notice]:
        """What a ``collect()`` says about failures no probe saw, as
        PERIPETY_BPF_LOST notices with ``missed`` (what metrics count):
        the probe runs the kernel skipped and counted (``recursion_misses``),
        and, per kind, the failures the kernel's own count saw beyond the
        maps' (``unprobed``: it ran no program and counted no miss). The two
        are disjoint (tracepoints/perfcount.py), so their sum counts each
        such failure once. Neither names a device: the kernel does not say."""
        out = []
        if found.missed:
            out.append(Notice(
                "PERIPETY_BPF_LOST",
                f"{found.missed} storage failures were not seen by the probes: the kernel skipped them "
                "while another BPF program ran on the same CPU",
                {"missed": str(found.missed), "cause": "recursion"}))
        for kind, n in sorted(found.unprobed.items()):
            if n > 0:
                out.append(Notice(
                    "PERIPETY_BPF_LOST",
                    f"{n} more {kind} failures happened that no probe saw (device unknown): the kernel's "
                    "own count of the tracepoint is ahead of the probes' maps",
                    {"missed": str(n), "cause": "no_probe_run", "kind": kind}))
        return out

    def unprobed_totals(self) -> dict[str, int]:
        """Failures per kind no probe saw, reported so far (status)."""
        return dict(self.tracepoints.maps.shortfall.reported)

    def kernel_counted(self) -> list[str]:
        """Kinds with the kernel's own count (the rest have none)."""
        return sorted(self.tracepoints.kernel_counts.counters)

    def collect(self, flush: bool = False):
        """Failures the probes counted in their maps since the last call
        (``flush``: everything, at shutdown)."""
        return self.tracepoints.flush() if flush else self.tracepoints.collect()

    def next_deadline(self) -> float | None:
        """When the maps are next due to be read (monotonic seconds)."""
        return self.tracepoints.maps.next_deadline()

    def close(self) -> None:
        self.tracepoints.close()
