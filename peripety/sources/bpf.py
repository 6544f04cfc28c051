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

    def collect(self, flush: bool = False):
        """Failures the probes counted in their maps since the last call
        (``flush``: everything, at shutdown)."""
        return self.tracepoints.flush() if flush else self.tracepoints.collect()

    def next_deadline(self) -> float | None:
        """When the maps are next due to be read (monotonic seconds)."""
        return self.tracepoints.maps.next_deadline()

    def close(self) -> None:
        self.tracepoints.close()
