"""The daemon's processing chain, free of I/O loops so it can be tested alone:

record/hit → event → device identity at event time → correlate (kmsg + bpf)
→ root cause → storm aggregation → ``emit`` (the store, stdout).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable

from .classify import DeviceAtEvent, event_from_match
from .devices.sysfs import logical_block_size
from .event import Severity, StorageEvent, new_event_id, now
from .event_types import EVENT_TYPES
from .merge import FS_SUB_SYSTEMS, Correlator, RootCauseLinker, StormAggregator
from .position import InFlight, ResumeIndex, kmsg_event_id, storm_event_id
from .record import LogRecord, record_lines
from .rules.derived import sector_from_lba
from .tracepoints.kinds import KINDS

log = logging.getLogger("peripety.pipeline")

SUPPRESSED_TYPE = "PERIPETY_KMSG_SUPPRESSED"
# Event types whose line may name a function (kdev = extension "function")
# instead of a device: the family's next line names it.
_WAITS_FOR_DEVICE = frozenset({SUPPRESSED_TYPE, "MD_SUPERBLOCK_WRITE_ERROR"})
# How long a ratelimit summary waits for the line that names its device. The
# kernel prints the summary right before that line (same call), so this only
# matters when the next line never comes.
SUPPRESSED_NAMING_WAIT = 1.0  # seconds
SUPPRESSED_NAMING_USEC = 1_000_000  # kernel time between summary and the line


class Pipeline:
    def __init__(
        self,
        rules,
        timeline,
        emit: Callable[[StorageEvent], None],
        *,
        boot_id: str = "",
        hostname: str | None = None,
        storm_window: float = 5.0,
        storm_burst: int = 10,
        hold: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        to_wallclock: Callable[[int], object] | None = None,
    ):
        self.rules = rules
        self.timeline = timeline
        self.emit = emit
        self.boot_id = boot_id
        self.hostname = hostname or socket.gethostname()
        self.clock = clock
        self.to_wallclock = to_wallclock
        self.correlator = Correlator(hold=hold)
        self.linker = RootCauseLinker()
        self.in_flight = InFlight()
        self.already_stored = ResumeIndex()
        self.storm = StormAggregator(window=storm_window, burst=storm_burst, aggregate_id=self._aggregate_id,
                                     release_seq=self.in_flight.release)
        self._suppressed: list[tuple[float, StorageEvent]] = []
        self.stats = Counter()
        self.ledger = None
        """``mapcounts.MapLedger`` when the probes count failures in maps."""
        # (kdev, dev_num, from_hit, fs event) -> (timeline stamp, valid since, DeviceAtEvent)
        self._devices: dict[tuple, tuple] = {}
        self._cache_devices = hasattr(timeline, "at_since") and hasattr(timeline, "stamp")

    # -- set-up and reconfiguration ------------------------------------------
    def resume(self, after_seq: int, already_stored: ResumeIndex | None = None) -> None:
        """Start after kmsg record ``after_seq`` (-1: before any): where the
        reader was placed. ``already_stored``: what a previous run of this
        boot stored, so records read again are stored once."""
        self.in_flight.last_read = after_seq
        if already_stored is not None:
            self.already_stored = already_stored

    def read_position(self) -> int:
        """The kmsg seq to save: every record up to it is fully handled."""
        return self.in_flight.safe_seq()

    def reconfigure(self, rules=None, *, storm_window: float | None = None) -> None:
        """New rules or storm window (SIGHUP); events in flight keep theirs."""
        if rules is not None:
            self.rules = rules
        if storm_window is not None:
            self.storm.window = storm_window

    def count_in_maps(self, ledger) -> None:
        """The probes count failures in kernel maps: ``ledger``
        (``mapcounts.MapLedger``) turns their counts into events, less the
        failures already stored one by one."""
        self.ledger = ledger

    def set_merge_hold(self, seconds: float) -> None:
        """How long an event waits for its other half (kernel line <->
        tracepoint hit): 0 until probes are attached."""
        self.correlator.hold = seconds

    # -- inputs -------------------------------------------------------------
    def add_record(self, record: LogRecord) -> None:
        if record.seq is not None and record.source == "kmsg":
            self.in_flight.last_read = max(self.in_flight.last_read, record.seq)
        self.stats["records"] += 1
        for line_no, line in record_lines(record):
            self._add_line(line, line_no)

    def _add_line(self, record: LogRecord, line_no: int) -> None:
        match = self.rules.match_record(record)
        if match is None:
            return
        self.stats["matched"] += 1
        seq = record.seq if record.source == "kmsg" else None
        # The line names a kernel function, not a device (a ratelimit
        # summary; 6.1's "md: super_written gets error=-5"): it waits for
        # that family's next line to name the device.
        suppressed = match.event_type in _WAITS_FOR_DEVICE and not match.kdev
        device = DeviceAtEvent("") if suppressed else \
            self._device(match.kdev, "", record.kernel_usec, match.sub_system, from_hit=False)
        event = event_from_match(
            record, match, hostname=self.hostname, device=device, origin_seq=seq,
            event_id=kmsg_event_id(self.boot_id, seq, line_no) if self.boot_id and seq is not None else None)
        self._enrich(event)
        self.in_flight.hold(seq)
        if suppressed:
            self._suppressed.append((self.clock() + SUPPRESSED_NAMING_WAIT, event))
            return
        if self._suppressed and record.trusted_kernel:
            self._name_suppressed(event)
        self.correlator.add(event, self.clock())

    def add_hit(self, hit) -> None:
        row = KINDS.get(hit.kind)
        self.stats["hits"] += 1
        if row is None or row.event_type is None:
            return
        event_type, sub_system = row.event_type, row.sub_system
        device = self._device(hit.kdev or hit.dev_num, hit.dev_num, hit.kernel_usec, sub_system, from_hit=True)
        event = hit_to_event(hit, event_type, sub_system, hostname=self.hostname, to_wallclock=self.to_wallclock,
                             device=device)
        self._enrich(event)
        self.correlator.add(event, self.clock())

    def add_aggregates(self, found) -> None:
        """Failures the probes counted in their maps (``Aggregates``)."""
        if self.ledger is not None:
            self.ledger.add(found)

    def add_event(self, event: StorageEvent) -> None:
        """A ready-made event (daemon notices, start-up device dump)."""
        self._finish([event])

    # -- time passes --------------------------------------------------------
    def tick(self) -> None:
        now = self.clock()
        self._finish(self.correlator.release(now))
        self._settle_map_counts()
        self._emit_all(self.storm.expire(now))
        if self._suppressed and self._suppressed[0][0] <= now:
            self._release_suppressed(now)

    def drain(self) -> None:
        """Release everything held (shutdown, SIGTERM)."""
        now = self.clock()
        self._finish(self.correlator.release(now, everything=True))
        self._settle_map_counts(everything=True)
        self._emit_all(self.storm.expire(now, everything=True))
        self._release_suppressed(None)

    def _settle_map_counts(self, everything: bool = False) -> None:
        # After the correlator's release: the detail events of the same
        # failures have been noted by then (see mapcounts).
        if self.ledger is None:
            return
        events = [self._named(event) for event in self.ledger.settle(everything)]
        self.stats["map_counted"] += sum(e.count for e in events)
        self._finish(events)

    def next_deadline(self) -> float | None:
        ledger = self.ledger.next_deadline() if self.ledger is not None else None
        deadlines = [d for d in (self.correlator.next_deadline(), self.storm.next_deadline(), ledger) if d]
        if self._suppressed:
            deadlines.append(self._suppressed[0][0])
        return min(deadlines) if deadlines else None

    # -- internals ----------------------------------------------------------
    def _device(self, kdev: str, dev_num: str, kernel_usec: int | None, sub_system: str, *,
                from_hit: bool) -> DeviceAtEvent:
        """The device as it was at the event's kernel time. A hit names it
        by number: its event takes the timeline's name for it.

        Kept per device name while the timeline's ``stamp`` stays (nothing
        was added, removed or mounted): an identity still open answers for
        every time since it began, so a storm on one disk resolves it once."""
        timeline = self.timeline
        if timeline is None or not (dev_num or kdev):
            return DeviceAtEvent(kdev, dev_num)
        fs = sub_system in FS_SUB_SYSTEMS
        stamp = timeline.stamp() if self._cache_devices else None
        key = (kdev, dev_num, from_hit, fs)
        if stamp is not None:
            kept = self._devices.get(key)
            if kept is not None and kept[0] == stamp and (kernel_usec is None or kernel_usec >= kept[1]):
                return kept[2]
        at = timeline.at_since if self._cache_devices else lambda key, usec: (timeline.at(key, usec), None)
        info, since = at(dev_num or kdev, kernel_usec)
        if info is None and dev_num and kdev:
            info, by_name_since = at(kdev, kernel_usec)
            since = None if since is None or by_name_since is None else max(since, by_name_since)
        if info is None:
            device = DeviceAtEvent(kdev, dev_num)
            self._keep_device(key, stamp, since, device)
            return device
        hierarchy = []
        for path in info.owners_paths:
            owner, owner_since = at(os.path.basename(path), kernel_usec)
            if owner is not None:
                hierarchy.append(owner)
            # an owner gone (or not found) now may be found at another time: not kept
            since = None if since is None or owner_since is None else max(since, owner_since)
        device = DeviceAtEvent(
            kdev=(os.path.basename(info.blk_path) or kdev) if from_hit or not kdev else kdev,
            dev_num=dev_num or info.dev_num,
            cur_blk_info=info,
            hierarchy_blk_info=tuple(hierarchy),
            mount_point=info.mount_point if fs else None,
        )
        self._keep_device(key, stamp, since, device)
        return device

    def _keep_device(self, key: tuple, stamp, since: int | None, device: DeviceAtEvent) -> None:
        if stamp is not None and since is not None:
            if len(self._devices) > 4096:
                self._devices.clear()
            self._devices[key] = (stamp, since, device)

    def _named(self, event: StorageEvent) -> StorageEvent:
        """A map-count event (named by device number) with its device as it
        was at its first failure."""
        device = self._device(event.kdev, event.dev_num, event.kernel_usec, event.sub_system, from_hit=True)
        return replace(event, kdev=device.kdev or event.kdev, dev_num=device.dev_num or event.dev_num,
                       cur_blk_info=device.cur_blk_info, hierarchy_blk_info=list(device.hierarchy_blk_info))

    def _enrich(self, event: StorageEvent) -> None:
        """What a line or hit implies beyond its own device: the LBA of a
        printed CDB, an LVM device's VG/LV name, the map a multipath path
        line names by number (``dm_dev``), as of the same kernel time."""
        if "lba" in event.extension and event.kdev:
            # A printed CDB's LBA (rules/derived.py) in 512-byte sectors too.
            sector_from_lba(event.extension, logical_block_size(event.kdev))
        if event.cur_blk_info is not None:
            lv = lvm_name(event.cur_blk_info)
            if lv:
                event.extension.setdefault("lvm_lv", lv)
        if self.timeline is None:
            return
        for key, prefix in _RELATED_DEVICES.items():
            dev_num = event.extension.get(key)
            info = self.timeline.at(dev_num, event.kernel_usec) if dev_num else None
            if info is None:
                continue
            event.extension.setdefault(f"{prefix}_path", info.preferred_blk_path)
            if info.wwid:
                event.extension.setdefault(f"{prefix}_wwid", info.wwid)
            if info.preferred_blk_path.startswith("/dev/mapper/"):
                event.extension.setdefault(f"{prefix}_name", os.path.basename(info.preferred_blk_path))

    def _name_suppressed(self, event: StorageEvent) -> None:
        """Give a waiting ratelimit summary of ``event``'s family (a kernel
        line's) its device."""
        if not event.kdev:
            return
        usec = event.kernel_usec or 0
        for i, (_, summary) in enumerate(self._suppressed):
            if summary.sub_system == event.sub_system and \
                    0 <= usec - (summary.kernel_usec or 0) <= SUPPRESSED_NAMING_USEC:
                del self._suppressed[i]
                self._finish([replace(summary, kdev=event.kdev, dev_num=event.dev_num,
                                      cur_blk_info=event.cur_blk_info, hierarchy_blk_info=event.hierarchy_blk_info,
                                      msg=f"{summary.msg}; next line on {event.kdev}")])
                return

    def _release_suppressed(self, now: float | None) -> None:
        """Summaries whose naming line did not come in time (all if ``now`` is None)."""
        due = [e for deadline, e in self._suppressed if now is None or deadline <= now]
        self._suppressed = [(d, e) for d, e in self._suppressed if not (now is None or d <= now)]
        self._finish(due)

    def _aggregate_id(self, aggregate: StorageEvent, first_seq: int | None) -> str:
        new_id = storm_event_id(self.boot_id, first_seq) if self.boot_id and first_seq is not None \
            else new_event_id()
        # the linker may know the aggregate's first member under its own id
        self.linker.rename(aggregate.event_id, new_id)
        return new_id

    def _finish(self, events: Iterable[StorageEvent]) -> None:
        now = self.clock()
        for event in events:
            event = self.linker.link(event)
            if self.already_stored.covers(event):
                # Re-read after a restart and already stored (ResumeIndex):
                # it neither counts again nor fills a storm's burst.
                self.stats["skipped_duplicates"] += 1
                self.in_flight.release(event.origin_seq)
                continue
            if self.ledger is not None and event.extension.get("counted_by") != "bpf-maps":
                # Its failure is also in a map count: the ledger takes it off.
                self.ledger.note(event)
            # A folded event is counted into an aggregate, which holds the
            # lowest kmsg seq of its members (keeping the resume position
            # before them) and gives back the others (``release_seq``).
            ready, _ = self.storm.add(event, now)
            self._emit_all(ready)

    def _emit_all(self, events: Iterable[StorageEvent]) -> None:
        for event in events:
            self.emit(event)
            self.stats["emitted"] += 1
            self.in_flight.release(event.origin_seq)


def hit_to_event(hit, event_type: str, sub_system: str, *, hostname: str, to_wallclock=None,
                 device: DeviceAtEvent | None = None) -> StorageEvent:
    """An event from a tracepoint hit alone (no kernel line seen for it)."""
    extension = _line_spelling(_flatten(hit.to_dict(), skip={"kind", "kernel_usec", "dev_num", "kdev"}))
    extension["tracepoint"] = hit.tracepoint
    status = hit.blk_status or hit.errno_name or extension.get("hostbyte") or extension.get("status_name")
    status = f": {status} error" if status else ""
    where = f" at sector {hit.sector}" if hit.sector is not None else ""
    op = f" ({hit.op})" if hit.op else ""
    title = EVENT_TYPES.get(event_type).title if event_type in EVENT_TYPES else event_type
    device = device or DeviceAtEvent(hit.kdev or hit.dev_num, hit.dev_num)
    if device.mount_point:
        extension.setdefault("mount_point", device.mount_point)
    return StorageEvent(
        event_type=event_type,
        sub_system=sub_system,
        severity=EVENT_TYPES.default_severity(event_type),
        kdev=device.kdev,
        msg=f"{title}{status} on {hit.kdev or hit.dev_num}{where}{op}",
        raw_msg="",
        timestamp=to_wallclock(hit.kernel_usec) if to_wallclock is not None and hit.kernel_usec else now(),
        hostname=hostname,
        dev_num=device.dev_num,
        cur_blk_info=device.cur_blk_info,
        hierarchy_blk_info=list(device.hierarchy_blk_info),
        extension=extension,
        sources=["bpf"],
        kernel_usec=hit.kernel_usec,
    )


# Tracepoint detail named and spelled as the kernel lines' rules name it, so
# an event says the same whether a line, a hit or both described it.
_HIT_KEYS = {"host_byte": "hostbyte", "driver_byte": "driverbyte"}


def _line_spelling(extension: dict[str, str]) -> dict[str, str]:
    out = {_HIT_KEYS.get(k, k): v for k, v in extension.items()}
    status = out.get("blk_status")
    if status and not status.endswith(" error"):
        out["blk_status"] = f"{status} error"  # "I/O" -> "I/O error", as printed
    if "status_code_type" in out and "status_code" in out:
        # nvme_log_error prints "(sct 0x%x / sc 0x%x)"
        out.setdefault("sct", f"0x{int(out['status_code_type']):x}")
        out.setdefault("sc", f"0x{int(out['status_code']):x}")
    return out


# extension key naming another device by major:minor -> prefix of the keys
# that name it (dm_path, dm_name, dm_wwid)
_RELATED_DEVICES = {"dm_dev": "dm"}

_LVM_LAYERS = ("-tpool", "-tdata", "-tmeta", "-real", "-cow", "-vpool", "-cdata", "-cmeta")


def lvm_name(info) -> str:
    """``VG/LV`` of an LVM device, from its dm name (``vgthin-pool-tpool``
    -> ``vgthin/pool``): LVM joins VG and LV with ``-``, doubles the ``-``
    inside names and appends the layer of hidden devices (lib/misc/lvm-string.c
    build_dm_name; dm-name split as ``dmsetup splitname`` does)."""
    if info.blk_type != "Device Mapper LVM" or not info.preferred_blk_path.startswith("/dev/mapper/"):
        return ""
    name = os.path.basename(info.preferred_blk_path)
    parts = re.split(r"(?<!-)-(?!-)", name)
    if len(parts) < 2:
        return ""
    vg, lv = parts[0], parts[1]
    return f"{vg.replace('--', '-')}/{lv.replace('--', '-')}"


def _flatten(data: dict, skip=(), prefix="") -> dict[str, str]:
    """Tracepoint detail as flat ``extension`` strings (``scsi`` detail's
    ``host_byte`` becomes ``host_byte``; lists are joined)."""
    out: dict[str, str] = {}
    for key, value in data.items():
        if key in skip or value in (None, "", [], {}):
            continue
        if isinstance(value, dict):
            out.update(_flatten(value, skip=("fs",) if key == "fs" else (), prefix=""))
        elif isinstance(value, (list, tuple)):
            out[prefix + key] = ",".join(map(str, value))
        else:
            out[prefix + key] = str(value)
    return out


def daemon_event(event_type: str, msg: str, *, hostname: str, severity: Severity | None = None,
                 device: DeviceAtEvent | None = None, **extension) -> StorageEvent:
    """An event about peripetyd itself (overrun, lost samples, device dump)."""
    device = device or DeviceAtEvent("")
    return StorageEvent(
        event_type=event_type,
        sub_system="Peripety",
        severity=severity or EVENT_TYPES.default_severity(event_type),
        msg=msg,
        hostname=hostname,
        kdev=device.kdev,
        dev_num=device.dev_num,
        cur_blk_info=device.cur_blk_info,
        extension={k: str(v) for k, v in extension.items()},
        sources=["peripetyd"],
    )
