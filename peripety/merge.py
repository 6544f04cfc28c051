"""Merge: one consistent event per failure, in kernel-time order.

Three small stages, each a plain object the daemon feeds and drains:

- ``Correlator`` pairs a tracepoint hit with the kernel line about the same
  I/O (same ``dev_num`` and sector, kernel times close) into one event with
  ``sources ["kmsg", "bpf"]``; hits without a line and lines without a hit
  pass through on their own. Items are held briefly (``hold`` seconds of
  wall time after arrival) so the slower source can catch up, then released
  in kernel-time order.
- ``StormAggregator`` lets the first ``burst`` identical events (same type,
  same device) of a storm through and folds the rest into one aggregate per
  second of kernel time, each with an exact ``count``, first/last time and
  every failed sector (``extension.sectors``). Memory is bounded by
  ``max_keys`` and ``MAX_SECTOR_RANGES``.
- ``RootCauseLinker`` gives collateral events (filesystem errors, buffer
  errors) the ``root_cause_event_id`` of the first device-level error seen on
  the same device, or a device below it, shortly before.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from .event import Severity, StorageEvent, evolve, new_event_id
from .tracepoints.kinds import PAIR_KEYS

# nvme_complete_rq fires on every completion, retries included, while the
# kernel prints one line for the command's final failure: that line takes
# every waiting hit of the command, not just one.
_ABSORBS_ALL_HITS = frozenset({"NVME_IO_ERROR"})

DEVICE_LEVEL_SUB_SYSTEMS = frozenset({"block", "SCSI", "ata", "NVMe", "Multipath", "md"})
FS_SUB_SYSTEMS = frozenset({"ext4", "ext3", "jbd2", "xfs", "btrfs"})
_COLLATERAL_TYPES = frozenset({"BLK_BUFFER_IO_ERROR"})
_NOT_ERRORS = frozenset({"FS_MOUNTED", "FS_UNMOUNTED", "DM_MPATH_PATH_REINSTATED", "PERIPETY_BLK_INFO"})


@dataclass(order=True)
class _Held:
    kernel_usec: int
    order: int
    release_at: float = field(compare=False)
    event: StorageEvent = field(compare=False)
    pair_key: tuple | None = field(compare=False, default=None)
    absorbed: bool = field(compare=False, default=False)


class Correlator:
    """Pair tracepoint events with kernel-line events about the same I/O."""

    def __init__(self, hold: float = 0.25, window_usec: int = 2_000_000):
        self.hold = hold
        self.window_usec = window_usec
        # (kernel_usec, order, held): tuples compare in C, _Held's generated
        # __lt__ in Python (ten comparisons an event in a storm)
        self._heap: list[tuple[int, int, _Held]] = []
        self._order = itertools.count()
        # pair_key -> held items still waiting for their other half, by source
        self._waiting: dict[tuple, list[_Held]] = {}
        # While every event added came from this one source, none can pair
        # (pairs are of two sources): their pair keys wait to be worked out
        # until an event of another source comes (``_pairing``). "": none yet;
        # None: pairing from then on.
        self._only_source: str | None = ""

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, event: StorageEvent, now: float) -> None:
        """Add an event from one source (``event.sources`` names it)."""
        kernel_usec = event.kernel_usec or 0
        only = self._only_source
        if only is not None:
            sources = event.sources
            if len(sources) == 1 and (sources[0] == only or not only):
                if not only:
                    self._only_source = sources[0]
                held = _Held(kernel_usec, next(self._order), now + self.hold, event, None)
                heapq.heappush(self._heap, (held.kernel_usec, held.order, held))
                return
            self._pairing()
        key = _pair_key(event)
        if key is not None:
            partner = self._take_partner(key, event, kernel_usec)
            if partner is not None:
                partner.event = merged(partner.event, event)
                if event.event_type in _ABSORBS_ALL_HITS and "kmsg" in event.sources:
                    while (other := self._take_partner(key, event, kernel_usec)) is not None:
                        other.absorbed = True  # left in the heap, dropped on release
                        partner.event = merged(partner.event, other.event)
                return
        held = _Held(kernel_usec, next(self._order), now + self.hold, event, key)
        heapq.heappush(self._heap, (held.kernel_usec, held.order, held))
        if key is not None:
            self._waiting.setdefault(key, []).append(held)

    def _pairing(self) -> None:
        """An event of a second source came: from now on every event waits
        for its other half, and so do those held, as if they had from the
        start (in the order they came)."""
        self._only_source = None
        for _, _, held in sorted(self._heap, key=lambda item: item[1]):
            held.pair_key = _pair_key(held.event)
            if held.pair_key is not None:
                self._waiting.setdefault(held.pair_key, []).append(held)

    def _take_partner(self, key, event, kernel_usec) -> _Held | None:
        candidates = self._waiting.get(key)
        if not candidates:
            return None
        source = event.sources[0] if event.sources else ""
        for i, held in enumerate(candidates):
            if source in held.event.sources or held.absorbed:
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
        while self._heap and (everything or self._heap[0][2].release_at <= now):
            held = heapq.heappop(self._heap)[2]
            if held.pair_key is not None:
                # unpaired: it stops waiting (a paired one already left the list)
                waiting = self._waiting.get(held.pair_key)
                if waiting and held in waiting:
                    waiting.remove(held)
                    if not waiting:
                        del self._waiting[held.pair_key]
            if not held.absorbed:
                out.append(held.event)
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0][2].release_at if self._heap else None


def _pair_key(event: StorageEvent) -> tuple | None:
    keys = PAIR_KEYS.get(event.event_type)
    # The resolved device's number: a hidden NVMe path disk (259:1, in a
    # hit) and its namespace head (nvme1c1n1 in the line) are one device.
    dev_num = event.cur_blk_info.dev_num if event.cur_blk_info is not None else event.dev_num
    if keys is None or not dev_num:
        return None
    values = [event.extension.get(k) for k in keys]
    if None in values:
        return None
    return (event.event_type, dev_num, *map(_normalise, values))


def _normalise(value: str) -> str:
    """Lines print numbers in hex ("daddr 0x80"), tracepoints decode them to
    decimal: compare numbers as numbers."""
    try:
        return str(int(value, 0))
    except ValueError:
        return value


def merged(held: StorageEvent, other: StorageEvent) -> StorageEvent:
    """One description of one failure from two: the line's identity and
    wording, the tracepoint's exact numbers (a new event; neither changes).

    The line's event_id is deterministic from its kmsg seq and its
    ``origin_seq`` is what releases that record for the saved read position.
    """
    line, hit = (held, other) if "kmsg" in held.sources or "journal" in held.sources else (other, held)
    device = hit if hit.cur_blk_info is not None else line
    extension = {**line.extension, **hit.extension}  # spelled as the line's (pipeline._line_spelling)
    if "retries" in held.extension and "retries" in other.extension:
        extension["retries"] = str(max(int(held.extension["retries"]), int(other.extension["retries"])))
    return evolve(
        line,
        extension=extension,
        dev_num=hit.dev_num or line.dev_num,
        kernel_usec=held.kernel_usec,
        cur_blk_info=device.cur_blk_info,
        hierarchy_blk_info=device.hierarchy_blk_info,
        sources=sorted(set(held.sources) | set(other.sources), key=lambda s: _SOURCE_ORDER.get(s, len(_SOURCE_ORDER))),
    )


_SOURCE_ORDER = {"kmsg": 0, "journal": 1, "bpf": 2, "file": 3}


def storm_key(event: StorageEvent) -> tuple:
    """Identical events for storm folding: same type, same device. The
    sector is not part of the key: a storm over many sectors is one storm,
    and its aggregates list every sector (``extension.sectors``)."""
    return (event.event_type, event.dev_num or event.kdev)


# One aggregate covers at most this many seconds of its members' own (kernel)
# time, and is emitted at most this long after it opened: every failure is
# queryable within about a second even in a storm that lasts hours.
STORM_SLICE_SECONDS = 1.0
# extension.sectors lists at most this many ranges; past it the aggregate
# says ``sectors_truncated = "true"`` and counts the unlisted sectors.
MAX_SECTOR_RANGES = 256


class SectorRanges:
    """Distinct failed 512-byte sectors as sorted, merged, bounded ranges."""

    def __init__(self, max_ranges: int = MAX_SECTOR_RANGES):
        self.max_ranges = max_ranges
        self._starts: list[int] = []
        self._ends: list[int] = []  # inclusive
        self.unlisted = 0

    def add(self, first: int, last: int) -> None:
        i = bisect.bisect_right(self._starts, first)
        # merge with the range before when they touch or overlap
        if i > 0 and self._ends[i - 1] >= first - 1:
            i -= 1
            first = self._starts[i]
            last = max(last, self._ends[i])
            del self._starts[i], self._ends[i]
        while i < len(self._starts) and self._starts[i] <= last + 1:
            last = max(last, self._ends[i])
            del self._starts[i], self._ends[i]
        if len(self._starts) >= self.max_ranges:
            self.unlisted += last - first + 1
            return
        self._starts.insert(i, first)
        self._ends.insert(i, last)

    def __str__(self) -> str:
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(self._starts, self._ends))

    def __len__(self) -> int:
        return len(self._starts)


def event_sectors(event: StorageEvent) -> tuple[int, int] | None:
    """The 512-byte sectors an event's failed request covered: the line
    gives the first one, a tracepoint hit also gives the length."""
    try:
        first = int(event.extension["sector"])
    except (KeyError, ValueError):
        return None
    try:
        length = max(1, int(event.extension.get("nr_sector", "1")))
    except ValueError:
        length = 1
    return first, first + length - 1


def _add_sectors(sectors: SectorRanges, event: StorageEvent) -> None:
    """Every sector an event stands for. An event counted in the kernel's
    maps (``counted_by = bpf-maps``, see mapcounts) lists them all in
    ``sectors`` (plus ``sectors_unlisted`` beyond the bound); any other
    names one request."""
    ext = event.extension
    if ext.get("counted_by") == "bpf-maps":
        for part in filter(None, ext.get("sectors", "").split(",")):
            first, _, last = part.partition("-")
            sectors.add(int(first), int(last or first))
        sectors.unlisted += int(ext.get("sectors_unlisted", "0"))
        return
    span = event_sectors(event)
    if span:
        sectors.add(*span)


@dataclass
class _Slice:
    """A storm slice being counted; its aggregate event is made when it closes."""

    first: StorageEvent  # the member that opened it (never changed)
    first_t: float
    sectors: SectorRanges
    seq_range: list  # [lowest, highest] kmsg seq folded in, or [None, None]
    printed: int = 0  # members the kernel printed a line for
    count: int = 0
    last_timestamp: object = None
    sources: list = field(default_factory=list)
    held_seq: int | None = None  # the kmsg seq this slice keeps the read position before


@dataclass
class _Window:
    last_t: float
    last_seen: float
    passed: int = 0
    slice: _Slice | None = None


class StormAggregator:
    """Fold storms of identical events (``storm_key``) into counted aggregates.

    A storm starts with the first event of a key and lasts while events of
    that key keep coming less than ``window`` seconds apart (their own kernel
    time). Its first ``burst`` events pass on their own; the rest are folded
    into *slices*: one aggregate per ``slice_seconds`` of event time, emitted
    at most ``slice_seconds`` after it opened, with its own ``count``, first
    and last time and ``extension.sectors``. Consumers sum ``count``.

    Time: membership uses each event's own kernel time (``kernel_usec``), so
    a replayed log folds as it happened, not as fast as it is read. ``now``
    (the caller's clock, the same CLOCK_MONOTONIC as kernel time in the
    daemon) drives flushing. Memory is bounded by ``max_keys``.
    """

    def __init__(self, window: float = 5.0, burst: int = 10, max_keys: int = 4096,
                 slice_seconds: float = STORM_SLICE_SECONDS, max_sector_ranges: int = MAX_SECTOR_RANGES,
                 aggregate_id=None, release_seq=None):
        self.window = window
        self.burst = burst
        self.max_keys = max_keys
        self.slice_seconds = slice_seconds
        self.max_sector_ranges = max_sector_ranges
        self.aggregate_id = aggregate_id
        """``aggregate_id(aggregate, first_seq) -> str``: the id an aggregate
        is emitted with, given the lowest kmsg seq folded into it (or None);
        default: a fresh random id. Never the id of a single event: a stored
        single must not make a store or a resume check drop an aggregate as
        its duplicate."""
        self.release_seq = release_seq
        """``release_seq(seq)``: a kmsg seq this aggregator no longer holds
        the read position for (a folded member's, when the slice already
        holds a lower one). The slice holds its lowest seq until its
        aggregate is emitted; the emitted aggregate's ``origin_seq`` is it."""
        # key -> window, least recently active first
        self._windows: OrderedDict[tuple, _Window] = OrderedDict()
        # (flush deadline, tie, key, slice) for open slices
        self._flush: list = []
        self._tie = itertools.count()

    PASSED, AGGREGATE, FOLDED = "passed", "aggregate", "folded"

    def add(self, event: StorageEvent, now: float) -> tuple[list[StorageEvent], str]:
        """Returns the events to emit now, and what became of ``event``:
        ``PASSED`` (it is among them), ``AGGREGATE`` (it now stands for a
        slice of the storm, emitted when the slice closes) or ``FOLDED``
        (counted into the open slice and gone)."""
        out = self.expire(now)
        if event.event_type.startswith("PERIPETY_"):
            return out + [event], self.PASSED
        t = event.kernel_usec / 1e6 if event.kernel_usec is not None else now
        key = storm_key(event)
        win = self._windows.get(key)
        if win is None:
            win = _Window(last_t=t, last_seen=now)
            self._windows[key] = win
            while len(self._windows) > self.max_keys:
                _, oldest = self._windows.popitem(last=False)
                out += self._close(oldest)
        else:
            if t - win.last_t > self.window:
                # quiet for a whole window: that storm is over, this starts another
                if win.slice is not None:
                    out += self._close(win)
                win.passed = 0
            self._windows.move_to_end(key)
        win.last_t = max(win.last_t, t)
        win.last_seen = now
        # A count from the kernel's maps (mapcounts) already stands for many
        # failures: it is slice material, never one of the burst's singles.
        if win.passed < self.burst and event.extension.get("counted_by") != "bpf-maps":
            win.passed += 1
            out.append(event)
            return out, self.PASSED
        if win.slice is not None and t - win.slice.first_t >= self.slice_seconds:
            out += self._close(win)
        if win.slice is None:
            win.slice = self._open_slice(event, t)
            # Due a slice after its first failure happened, but never sooner
            # than half a slice after it opened: a backlog read after a
            # restart (old kernel times) still folds instead of flushing
            # one event at a time.
            due = max(t + self.slice_seconds, now + self.slice_seconds / 2)
            heapq.heappush(self._flush, (due, next(self._tie), key, win.slice))
            return out, self.AGGREGATE
        given_back = _fold(win.slice, event)
        if given_back is not None and self.release_seq is not None:
            self.release_seq(given_back)
        return out, self.FOLDED

    def _open_slice(self, event: StorageEvent, t: float) -> _Slice:
        sl = _Slice(event, t, SectorRanges(self.max_sector_ranges), [event.origin_seq, event.origin_seq],
                    printed=int("kmsg" in event.sources), count=event.count,
                    last_timestamp=event.last_timestamp or event.timestamp, sources=list(event.sources),
                    held_seq=event.origin_seq)
        _add_sectors(sl.sectors, event)
        return sl

    def _close(self, win: _Window) -> list[StorageEvent]:
        sl, win.slice = win.slice, None
        if sl is None:
            return []
        # The aggregate gets its own id when it is complete (it may start
        # with a BPF hit that has no kmsg seq and fold kernel lines later).
        event_id = self.aggregate_id(sl.first, sl.seq_range[0]) if self.aggregate_id else new_event_id()
        return [_aggregate(sl, event_id)]

    def expire(self, now: float, everything: bool = False) -> list[StorageEvent]:
        out = []
        while self._flush and (everything or self._flush[0][0] <= now):
            _, _, key, sl = heapq.heappop(self._flush)
            win = self._windows.get(key)
            if win is not None and win.slice is sl:
                out += self._close(win)
        # Windows are kept least recently active first: stop at the first
        # still active. Their slices were flushed above (slice <= window).
        while self._windows:
            key, win = next(iter(self._windows.items()))
            if not everything and now - win.last_seen <= self.window:
                break
            del self._windows[key]
            out += self._close(win)
        return out

    def pending(self) -> int:
        return sum(1 for w in self._windows.values() if w.slice is not None)

    def next_deadline(self) -> float | None:
        deadlines = []
        if self._flush:
            deadlines.append(self._flush[0][0])
        if self._windows:
            deadlines.append(next(iter(self._windows.values())).last_seen + self.window)
        return min(deadlines) if deadlines else None


def _fold(sl: _Slice, event: StorageEvent) -> int | None:
    """Count ``event`` into ``sl``; return the kmsg seq no longer held for
    the read position (the event's, or the slice's previous lowest)."""
    sl.count += event.count
    last = event.last_timestamp or event.timestamp
    if sl.last_timestamp is None or last > sl.last_timestamp:
        sl.last_timestamp = last
    for source in event.sources:
        if source not in sl.sources:
            sl.sources.append(source)
    _add_sectors(sl.sectors, event)
    sl.printed += "kmsg" in event.sources
    seq = event.origin_seq
    if seq is None:
        return None
    lo, hi = sl.seq_range
    sl.seq_range = [seq if lo is None else min(lo, seq), seq if hi is None else max(hi, seq)]
    if sl.held_seq is None or seq < sl.held_seq:
        # The slice holds the read position before its lowest kmsg seq
        # until its aggregate is stored.
        sl.held_seq, seq = seq, sl.held_seq
    return seq


def _aggregate(sl: _Slice, event_id: str) -> StorageEvent:
    """The event standing for a closed slice: its first member's fields,
    the slice's count, times, sources, sectors and kmsg seqs."""
    first = sl.first
    extension = {**first.extension, "storm": "true"}
    if len(sl.sectors):
        extension["sectors"] = str(sl.sectors)
        if sl.sectors.unlisted:
            extension["sectors_truncated"] = "true"
            extension["sectors_unlisted"] = str(sl.sectors.unlisted)
    if "bpf" in sl.sources:
        # With tracepoints every failure is counted; the kernel printed a
        # line for only some (printk ratelimit): count - lines_printed is
        # what the log lost.
        extension["lines_printed"] = str(sl.printed)
    lo, hi = sl.seq_range
    if lo is not None:
        # What a restart after kill -9 needs to recognise the records this
        # aggregate already counts (see Pipeline, "exactly once").
        extension["kmsg_seq_range"] = f"{lo}-{hi}"
    return evolve(
        first,
        event_id=event_id,
        msg=f"{first.msg} (storm: {sl.count} occurrences)",
        count=sl.count,
        last_timestamp=sl.last_timestamp,
        sources=list(sl.sources),
        extension=extension,
        origin_seq=sl.held_seq,
    )


class RootCauseLinker:
    """Point collateral events at the device-level error that caused them."""

    def __init__(self, window_usec: int = 60_000_000, max_devices: int = 4096):
        self.window_usec = window_usec
        self.max_devices = max_devices
        # device identity -> (kernel_usec, event_id) of the first recent device error
        self._recent: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def link(self, event: StorageEvent) -> StorageEvent:
        """``event``, or a copy pointing at the device error that caused it."""
        kernel_usec = event.kernel_usec or 0
        if event.event_type in _NOT_ERRORS or event.event_type.startswith("PERIPETY_"):
            return event
        keys = _device_keys(event)
        if event.sub_system in DEVICE_LEVEL_SUB_SYSTEMS and event.event_type not in _COLLATERAL_TYPES:
            for key in keys[:1] if _can_be_a_cause(event) else ():
                seen = self._recent.get(key)
                if seen is None or kernel_usec - seen[0] > self.window_usec:
                    self._remember(key, kernel_usec, event.event_id)
            # A device above others (md array, multipath map, LV) fails
            # because a device below it did: the member's error is the cause.
            return self._link_to(event, keys[1:], kernel_usec)
        if event.sub_system in FS_SUB_SYSTEMS or event.event_type in _COLLATERAL_TYPES:
            return self._link_to(event, keys, kernel_usec)
        return event

    def _link_to(self, event: StorageEvent, keys: list[str], kernel_usec: int) -> StorageEvent:
        for key in keys:
            seen = self._recent.get(key)
            if seen and 0 <= kernel_usec - seen[0] <= self.window_usec and seen[1] != event.event_id:
                return evolve(event, root_cause_event_id=seen[1])
        return event

    def rename(self, old_id: str, new_id: str) -> None:
        """An event remembered as a root cause is stored under another id
        (a storm aggregate's first member)."""
        for key, (kernel_usec, event_id) in self._recent.items():
            if event_id == old_id:
                self._recent[key] = (kernel_usec, new_id)

    def _remember(self, key, kernel_usec, event_id):
        self._recent[key] = (kernel_usec, event_id)
        self._recent.move_to_end(key)
        while len(self._recent) > self.max_devices:
            self._recent.popitem(last=False)


def _can_be_a_cause(event: StorageEvent) -> bool:
    """Only trouble can be a cause: a family's generic line (SCSI_MESSAGE,
    the grammars' ``*_MESSAGE`` types) counts only at warning level or worse;
    "Attached SCSI disk" a second before an array fails is no cause."""
    return not event.event_type.endswith("_MESSAGE") or event.severity <= Severity.Warning


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
