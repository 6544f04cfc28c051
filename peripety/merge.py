"""Merge: one consistent event per failure, in kernel-time order.

Three small stages, each a plain object the daemon feeds and drains:

- ``Correlator`` pairs a tracepoint hit with the kernel line about the same
  I/O (same ``dev_num`` and sector, kernel times close) into one event with
  ``sources ["kmsg", "bpf"]``; hits without a line and lines without a hit
  pass through on their own. Items are held briefly (``hold`` seconds of
  wall time after arrival) so the slower source can catch up, then released
  in kernel-time order.
- ``StormAggregator`` lets the first ``burst`` identical events (same type,
  same device) of a window through and folds the rest into one event with an
  exact ``count`` and first/last time. Memory is bounded by ``max_keys``.
- ``RootCauseLinker`` gives collateral events (filesystem errors, buffer
  errors) the ``root_cause_event_id`` of the first device-level error seen on
  the same device, or a device below it, shortly before.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from .event import StorageEvent

# Event types that a tracepoint hit and a kernel line can both describe, and
# the extension keys that identify the failure in both: the sector of a
# failed request, ext4's reporting function and line, xfs's disk address.
_PAIRABLE = {
    "BLK_IO_ERROR": ("sector",),
    "FS_ERROR": ("function", "line"),
    "FS_IO_ERROR": ("daddr",),
}

DEVICE_LEVEL_SUB_SYSTEMS = frozenset({"block", "SCSI", "ata", "NVMe", "Multipath", "md"})
FS_SUB_SYSTEMS = frozenset({"ext4", "jbd2", "xfs", "btrfs"})
_COLLATERAL_TYPES = frozenset({"BLK_BUFFER_IO_ERROR"})
_NOT_ERRORS = frozenset({"FS_MOUNTED", "FS_UNMOUNTED", "DM_MPATH_PATH_REINSTATED", "PERIPETY_BLK_INFO"})


@dataclass(order=True)
class _Held:
    kernel_usec: int
    order: int
    release_at: float = field(compare=False)
    event: StorageEvent = field(compare=False)
    pair_key: tuple | None = field(compare=False, default=None)


class Correlator:
    """Pair tracepoint events with kernel-line events about the same I/O."""

    def __init__(self, hold: float = 0.25, window_usec: int = 2_000_000):
        self.hold = hold
        self.window_usec = window_usec
        self._heap: list[_Held] = []
        self._order = itertools.count()
        # pair_key -> held items still waiting for their other half, by source
        self._waiting: dict[tuple, list[_Held]] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, event: StorageEvent, now: float) -> None:
        """Add an event from one source (``event.sources`` names it)."""
        kernel_usec = event.kernel_usec or 0
        key = _pair_key(event)
        if key is not None:
            partner = self._take_partner(key, event, kernel_usec)
            if partner is not None:
                _merge_into(partner.event, event)
                return
        held = _Held(kernel_usec, next(self._order), now + self.hold, event, key)
        heapq.heappush(self._heap, held)
        if key is not None:
            self._waiting.setdefault(key, []).append(held)

    def _take_partner(self, key, event, kernel_usec) -> _Held | None:
        candidates = self._waiting.get(key)
        if not candidates:
            return None
        source = event.sources[0] if event.sources else ""
        for i, held in enumerate(candidates):
            if source in held.event.sources:
                continue
            if abs(held.kernel_usec - kernel_usec) <= self.window_usec:
                del candidates[i]
                if not candidates:
                    del self._waiting[key]
                return held
        return None

    def release(self, now: float, everything: bool = False) -> list[StorageEvent]:
        """Events whose hold has expired, oldest kernel time first."""
        out = []
        while self._heap and (everything or self._heap[0].release_at <= now):
            held = heapq.heappop(self._heap)
            if held.pair_key is not None:
                # unpaired: it stops waiting (a paired one already left the list)
                waiting = self._waiting.get(held.pair_key)
                if waiting and held in waiting:
                    waiting.remove(held)
                    if not waiting:
                        del self._waiting[held.pair_key]
            out.append(held.event)
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0].release_at if self._heap else None


def _pair_key(event: StorageEvent) -> tuple | None:
    keys = _PAIRABLE.get(event.event_type)
    if keys is None or not event.dev_num:
        return None
    values = [event.extension.get(k) for k in keys]
    if None in values:
        return None
    return (event.event_type, event.dev_num, *map(_normalise, values))


def _normalise(value: str) -> str:
    """Lines print numbers in hex ("daddr 0x80"), tracepoints decode them to
    decimal: compare numbers as numbers."""
    try:
        return str(int(value, 0))
    except ValueError:
        return value


def _merge_into(kept: StorageEvent, other: StorageEvent) -> None:
    """Combine two descriptions of one failure: the line's wording, the
    tracepoint's exact numbers."""
    line, hit = (kept, other) if "kmsg" in kept.sources or "journal" in kept.sources else (other, kept)
    if line is not kept:
        # keep the line's identity (its event_id is deterministic from kmsg seq)
        for f in ("event_id", "msg", "raw_msg", "kdev", "severity", "sub_system", "timestamp"):
            setattr(kept, f, getattr(line, f))
    merged_ext = dict(line.extension)
    merged_ext.update({k: v for k, v in hit.extension.items()})
    kept.extension = merged_ext
    kept.dev_num = hit.dev_num or line.dev_num
    if hit.cur_blk_info is not None:
        kept.cur_blk_info = hit.cur_blk_info
        kept.hierarchy_blk_info = hit.hierarchy_blk_info
    kept.sources = sorted(set(kept.sources) | set(other.sources), key=lambda s: _SOURCE_ORDER.get(s, len(_SOURCE_ORDER)))


_SOURCE_ORDER = {"kmsg": 0, "journal": 1, "bpf": 2, "file": 3}


def storm_key(event: StorageEvent) -> tuple:
    return (event.event_type, event.dev_num or event.kdev)


@dataclass
class _Window:
    started: float
    passed: int = 0
    aggregate: StorageEvent | None = None


class StormAggregator:
    """Let ``burst`` identical events per ``window`` seconds through; fold the
    rest into one aggregate event released when the window closes."""

    def __init__(self, window: float = 5.0, burst: int = 10, max_keys: int = 4096):
        self.window = window
        self.burst = burst
        self.max_keys = max_keys
        self._windows: OrderedDict[tuple, _Window] = OrderedDict()

    PASSED, AGGREGATE, FOLDED = "passed", "aggregate", "folded"

    def add(self, event: StorageEvent, now: float) -> tuple[list[StorageEvent], str]:
        """Returns the events to emit now, and what became of ``event``:
        ``PASSED`` (it is among them), ``AGGREGATE`` (it now stands for the
        storm and is emitted when the window closes) or ``FOLDED`` (counted
        into the aggregate and gone)."""
        out = self.expire(now)
        if event.event_type.startswith("PERIPETY_"):
            return out + [event], self.PASSED
        key = storm_key(event)
        win = self._windows.get(key)
        if win is None:
            win = _Window(started=now)
            self._windows[key] = win
            while len(self._windows) > self.max_keys:
                _, oldest = self._windows.popitem(last=False)
                if oldest.aggregate is not None:
                    out.append(oldest.aggregate)
        if win.passed < self.burst:
            win.passed += 1
            out.append(event)
            return out, self.PASSED
        if win.aggregate is None:
            event.last_timestamp = event.last_timestamp or event.timestamp
            event.msg = f"{event.msg} (storm: more of the same follow)"
            event.extension["storm"] = "true"
            win.aggregate = event
            return out, self.AGGREGATE
        _fold(win.aggregate, event)
        return out, self.FOLDED

    def expire(self, now: float, everything: bool = False) -> list[StorageEvent]:
        # Windows are kept in the order they started (never moved), so the
        # expired ones are at the front: stop at the first still open.
        out = []
        while self._windows:
            key, win = next(iter(self._windows.items()))
            if not everything and now - win.started < self.window:
                break
            del self._windows[key]
            if win.aggregate is not None:
                out.append(_finish_aggregate(win.aggregate))
        return out

    def pending(self) -> int:
        return sum(1 for w in self._windows.values() if w.aggregate is not None)

    def next_deadline(self) -> float | None:
        if not self._windows:
            return None
        return next(iter(self._windows.values())).started + self.window


def _fold(agg: StorageEvent, event: StorageEvent) -> None:
    agg.count += event.count
    agg.last_timestamp = event.last_timestamp or event.timestamp
    for source in event.sources:
        if source not in agg.sources:
            agg.sources.append(source)
    sector = event.extension.get("sector")
    if sector is not None:
        agg.extension["last_sector"] = sector


def _finish_aggregate(agg: StorageEvent) -> StorageEvent:
    agg.msg = agg.msg.replace("(storm: more of the same follow)", f"(storm: {agg.count} occurrences)")
    if "sector" in agg.extension:
        agg.extension["first_sector"] = agg.extension["sector"]
    return agg


class RootCauseLinker:
    """Point collateral events at the device-level error that caused them."""

    def __init__(self, window_usec: int = 60_000_000, max_devices: int = 4096):
        self.window_usec = window_usec
        self.max_devices = max_devices
        # device identity -> (kernel_usec, event_id) of the first recent device error
        self._recent: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def link(self, event: StorageEvent) -> None:
        kernel_usec = event.kernel_usec or 0
        if event.event_type in _NOT_ERRORS or event.event_type.startswith("PERIPETY_"):
            return
        keys = _device_keys(event)
        if event.sub_system in DEVICE_LEVEL_SUB_SYSTEMS and event.event_type not in _COLLATERAL_TYPES:
            for key in keys[:1]:
                seen = self._recent.get(key)
                if seen is None or kernel_usec - seen[0] > self.window_usec:
                    self._remember(key, kernel_usec, event.event_id)
            return
        if event.sub_system in FS_SUB_SYSTEMS or event.event_type in _COLLATERAL_TYPES:
            for key in keys:
                seen = self._recent.get(key)
                if seen and 0 <= kernel_usec - seen[0] <= self.window_usec and seen[1] != event.event_id:
                    event.root_cause_event_id = seen[1]
                    return

    def _remember(self, key, kernel_usec, event_id):
        self._recent[key] = (kernel_usec, event_id)
        self._recent.move_to_end(key)
        while len(self._recent) > self.max_devices:
            self._recent.popitem(last=False)


def _device_keys(event: StorageEvent) -> list[str]:
    """The event's own device first, then every device below it."""
    info = event.cur_blk_info
    keys = []
    if info is not None and info.wwid:
        keys.append("wwid:" + info.wwid)
    elif event.dev_num:
        keys.append("dev:" + event.dev_num)
    elif event.kdev:
        keys.append("kdev:" + event.kdev)
    if info is not None:
        keys.extend("wwid:" + w for w in info.owners_wwids if w)
    return keys
