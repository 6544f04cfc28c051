"""With ``--bpf``, failure counts come from the kernel's maps, not from events.

The probes count every failure in BPF maps and send only the first few as
samples; the kernel's own lines are rate limited. So a failure may reach the
pipeline as a detail event (a sample, a kernel line, or both merged) *and*
is always in a map count. ``MapLedger`` keeps the stored total equal to the
map count, per (event type, device):

- every detail event whose failure the maps count is ``note``d as it enters
  the storm stage, where it counts 1 as before;
- each drained map ``Aggregate`` adds to the key's ``mapped`` total, and
  ``settle()`` turns ``mapped - noted - already emitted`` (when positive)
  into one event carrying that count, the failed sectors
  (``extension.sectors``) and the first/last time (``counted_by =
  bpf-maps``), which the storm stage folds into its per-second slices, never
  passing it as one of a storm's first single events.

Stored total = noted + emitted = mapped, once the maps have caught up with
the detail events: a drained count waits ``hold`` seconds before it is
settled, as long as the merge stage holds a detail event, so the details of
the same failures are noted first. A detail event that arrives later than
that (the daemon fell behind by more than ``hold``) makes the key's total
run ahead by one until the key's next drained count absorbs it.

Covered detail events: those with a sample (``bpf`` in ``sources``), and
kernel lines of the types a probe counts one for one, dated after the probes
were attached: a kind's ``line_unit`` in kinds.toml (``BLK_IO_ERROR`` from
the block layer: the line and ``block_rq_error`` sit under the same
condition; ext4's ``FS_ERROR`` and xfs's ``FS_IO_ERROR`` are paired with
their tracepoints the same way).
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from .event import StorageEvent
from .event_types import EVENT_TYPES
from .merge import MAX_SECTOR_RANGES, SectorRanges
from .tracepoints.aggregates import Aggregate, Aggregates
from .tracepoints.kinds import KINDS, LINE_UNITS


def _event_type(kind: str) -> str | None:
    """The event type a kind's counts become (kinds.toml); None: none."""
    row = KINDS.get(kind)
    return row.event_type if row is not None else None


def ledger_key(event_type: str, device: str) -> tuple[str, str]:
    return (event_type, device)


def _unit_of(event: StorageEvent, line_units: dict[tuple[str, str], str] = LINE_UNITS) -> str:
    """The unit the probe counted a detail event's failure under, whatever
    device resolution made of it: the SCSI target (``hctl``) or NVMe disk
    of its sample, else the dev_t; for a kernel line alone, the field its
    kind's ``line_unit`` names (kinds.toml)."""
    ext = event.extension
    if "bpf" in event.sources:
        return ext.get("hctl") or ext.get("disk") or event.dev_num
    return _line_unit(event, line_units)


def _line_unit(event: StorageEvent, line_units: dict[tuple[str, str], str] = LINE_UNITS) -> str:
    """A kernel line's unit as the maps key it ("" when the probes do not
    count its lines one for one)."""
    name = line_units.get((event.event_type, event.sub_system))
    if name is None:
        return ""
    if name in ("dev_num", "kdev"):
        return getattr(event, name) or ""
    return event.extension.get(name, "")


@dataclass
class _Drained:
    ready_at: float
    aggregates: Aggregates


class MapLedger:
    """Per (event type, device): map counts minus what detail events stored."""

    def __init__(self, *, hostname: str, hold: float = 0.25, attached_usec: int = 0,
                 kinds: Iterable[str] | None = None,
                 to_wallclock: Callable[[int], _dt.datetime] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.hostname = hostname
        attached = set(KINDS) if kinds is None else set(kinds)
        self.line_units = {(k.event_type, k.sub_system): k.line_unit for k in KINDS.values()
                           if k.name in attached and k.line_unit}
        """Kernel lines the attached probes count one for one -> their unit
        field (kinds.toml ``line_unit``; ``kinds``: the attached kinds)."""
        self.hold = hold
        self.attached_usec = attached_usec
        """CLOCK_MONOTONIC usec when the probes were attached: kernel lines
        older than that are about failures no map counted."""
        self.to_wallclock = to_wallclock
        self.clock = clock
        # key -> failures the maps counted that no stored event stands for
        # yet: + map counts, - detail events noted, - counts emitted. Only
        # the balance matters, so a key at 0 is dropped (memory follows the
        # devices failing right now); below 0 it waits for its map counts.
        self._owed: dict[tuple[str, str], int] = {}
        self._waiting: list[_Drained] = []
        self.untracked: dict[str, int] = {}

    # -- inputs -----------------------------------------------------------
    def covers(self, event: StorageEvent) -> bool:
        if "bpf" in event.sources:
            return True
        return bool(_line_unit(event, self.line_units)) and (event.kernel_usec or 0) >= self.attached_usec

    def note(self, event: StorageEvent) -> bool:
        """Count a detail event that enters the storm stage; True when the
        maps count its failure (it must then not be counted again)."""
        if not self.covers(event):
            return False
        self._change(ledger_key(event.event_type, _unit_of(event, self.line_units)), -event.count)
        return True

    def add(self, found: Aggregates) -> None:
        """A drained map generation; settled after ``hold`` seconds."""
        if found.items or found.untracked:
            self._waiting.append(_Drained(self.clock() + self.hold, found))

    # -- outputs ----------------------------------------------------------
    def settle(self, everything: bool = False) -> list[StorageEvent]:
        """Events for the counts the detail events did not store."""
        now = self.clock()
        described: dict[tuple[str, str], list[Aggregate]] = {}
        while self._waiting and (everything or self._waiting[0].ready_at <= now):
            drained = self._waiting.pop(0)
            for agg in drained.aggregates.items:
                event_type = _event_type(agg.kind)
                if event_type is None:
                    continue  # counted, but no event type of its own (scsi_eh_wakeup)
                key = ledger_key(event_type, agg.dev_num or agg.kdev)
                self._change(key, agg.count)
                described.setdefault(key, []).append(agg)
            for kind, n in drained.aggregates.untracked.items():
                if _event_type(kind) is not None:
                    self.untracked[kind] = self.untracked.get(kind, 0) + n
        out = []
        for key, aggs in described.items():
            owed = self._owed.get(key, 0)
            if owed > 0:
                self._change(key, -owed)
                out.append(aggregate_event(aggs, owed, hostname=self.hostname, to_wallclock=self.to_wallclock))
        out += self._untracked_events()
        return out

    def next_deadline(self) -> float | None:
        return self._waiting[0].ready_at if self._waiting else None

    # -- internals --------------------------------------------------------
    def _change(self, key: tuple[str, str], delta: int) -> None:
        owed = self._owed.get(key, 0) + delta
        if owed:
            self._owed[key] = owed
        else:
            self._owed.pop(key, None)

    def tracked(self) -> int:
        """Keys with a balance (memory held), for tests and status."""
        return len(self._owed)

    def _untracked_events(self) -> list[StorageEvent]:
        out = []
        for kind, n in self.untracked.items():
            event_type, sub_system = KINDS[kind].event_type, KINDS[kind].sub_system
            event = StorageEvent(
                event_type=event_type, sub_system=sub_system, severity=EVENT_TYPES.default_severity(event_type),
                msg=f"{n} failures ({kind}) counted in the kernel on devices beyond its key map's bound",
                hostname=self.hostname, count=n, sources=["bpf"],
                extension={"tracepoint_kind": kind, "counted_by": "bpf-maps", "device": "untracked"},
            )
            out.append(event)
        self.untracked = {}
        return out


def aggregate_event(aggs: list[Aggregate], count: int, *, hostname: str,
                    to_wallclock: Callable[[int], _dt.datetime] | None = None) -> StorageEvent:
    """One event for ``count`` failures of one (type, device), described by
    the map aggregates they were counted in (op, error, sectors, times)."""
    first = min(aggs, key=lambda a: a.first_usec)
    last = max(aggs, key=lambda a: a.last_usec)
    event_type, sub_system = KINDS[first.kind].event_type, KINDS[first.kind].sub_system
    ranges = SectorRanges(MAX_SECTOR_RANGES)
    for agg in aggs:
        for lo, hi in agg.sectors:
            ranges.add(lo, hi)
    extension = {"counted_by": "bpf-maps", "tracepoint_kind": first.kind}
    for name in ("op", "error", "blk_status"):
        values = sorted({getattr(a, name) for a in aggs if getattr(a, name)})
        if name == "blk_status":
            # as the kernel line and a single hit's event say it: "I/O error"
            values = [v if v.endswith(" error") else f"{v} error" for v in values]
        if values:
            extension[name if name != "error" else "errno_name"] = ",".join(values)
    if len(ranges):
        # the storm stage's own form and bound (merge.SectorRanges)
        extension["sectors"] = str(ranges)
        if ranges.unlisted:
            extension["sectors_truncated"] = "true"
            extension["sectors_unlisted"] = str(ranges.unlisted)
    lows = [a.sector_min for a in aggs if a.sector_min is not None]
    highs = [a.sector_max for a in aggs if a.sector_max is not None]
    if lows:
        extension["first_sector"], extension["last_sector"] = str(min(lows)), str(max(highs))
        extension["sector"] = str(min(lows))
    unmapped = sum(a.unmapped for a in aggs)
    if unmapped:
        extension["sectors_unmapped"] = str(unmapped)
    device = first.kdev or first.dev_num
    title = EVENT_TYPES.get(event_type).title if event_type in EVENT_TYPES else event_type
    what = extension.get("blk_status") or f"{extension.get('errno_name') or 'I/O'} error"
    op = f" ({extension['op']})" if "op" in extension else ""
    event = StorageEvent(
        event_type=event_type,
        sub_system=sub_system,
        severity=EVENT_TYPES.default_severity(event_type),
        kdev=device,
        dev_num=first.dev_num,
        msg=f"{title}: {what} on {device}{op}, {count} failures counted in the kernel",
        raw_msg="",
        hostname=hostname,
        extension=extension,
        sources=["bpf"],
        count=count,
    )
    event.kernel_usec = first.first_usec
    if to_wallclock is not None:
        event.timestamp = to_wallclock(first.first_usec)
        if count > 1:
            event.last_timestamp = to_wallclock(last.last_usec)
    return event
