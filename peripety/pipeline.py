"""The daemon's processing chain, free of I/O loops so it can be tested alone:

record/hit → event → device identity at event time → correlate (kmsg + bpf)
→ root cause → storm aggregation → ``emit`` (the store, stdout).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import time
import uuid
from collections import Counter
from typing import Callable, Iterable

from .classify import event_from_match
from .event import Severity, StorageEvent, new_event_id
from .event_types import EVENT_TYPES
from .merge import FS_SUB_SYSTEMS, Correlator, RootCauseLinker, StormAggregator
from .record import LogRecord
from .tracepoints.scsi import decode_cdb

log = logging.getLogger("peripety.pipeline")

# Event ids of kmsg-derived events are derived from (boot id, kmsg seq): a
# record replayed after a crash gets the same id, so the daemon can tell
# what it already stored and never writes an event twice.
_EVENT_ID_NAMESPACE = uuid.UUID("b7f5d0a2-6f57-4c53-8a8e-53c0d6f1e8a1")

# Tracepoint hit kind -> (event_type, sub_system). Kinds not listed here are
# decoded but produce no event of their own (e.g. scsi_eh_wakeup).
HIT_EVENT_TYPES = {
    "block_rq_error": ("BLK_IO_ERROR", "block"),  # also from the block_rq_complete fallback
    "scsi_cmd_error": ("SCSI_CMD_FAILED", "SCSI"),
    "scsi_cmd_done": ("SCSI_CMD_FAILED", "SCSI"),
    "scsi_cmd_timeout": ("SCSI_CMD_TIMEOUT", "SCSI"),
    "nvme_complete_rq": ("NVME_IO_ERROR", "NVMe"),
    "ext4_error": ("FS_ERROR", "ext4"),
    "xfs_buf_ioerror": ("FS_IO_ERROR", "xfs"),
}


def kmsg_event_id(boot_id: str, seq: int, line_no: int = 0) -> str:
    """Id of the event of kmsg record ``seq``; ``line_no`` > 0 for the
    further lines of a multi-line record (each its own event)."""
    suffix = f":{line_no}" if line_no else ""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{boot_id}:{seq}{suffix}"))


def storm_event_id(boot_id: str, first_seq: int) -> str:
    """Id of a storm aggregate whose first member is kmsg record
    ``first_seq``: deterministic (a resume can prove the aggregate is of this
    boot) and never equal to a single event's id."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{boot_id}:storm:{first_seq}"))


SUPPRESSED_TYPE = "PERIPETY_KMSG_SUPPRESSED"
# Event types whose line may name a function (kdev = extension "function")
# instead of a device: the family's next line names it.
_WAITS_FOR_DEVICE = frozenset({SUPPRESSED_TYPE, "MD_SUPERBLOCK_WRITE_ERROR"})
# How long a ratelimit summary waits for the line that names its device. The
# kernel prints the summary right before that line (same call), so this only
# matters when the next line never comes.
SUPPRESSED_NAMING_WAIT = 1.0  # seconds
SUPPRESSED_NAMING_USEC = 1_000_000  # kernel time between summary and the line


class ResumeIndex:
    """What a previous run of this boot already stored, so that records read
    again after a restart are stored exactly once.

    The rule ("exactly once" across kill -9): a record is re-read when the
    saved position is before it. Its event is dropped when the store already
    holds it: as a single event (same deterministic id from boot id and kmsg
    seq) or inside a storm aggregate of the same type and device whose
    ``extension.kmsg_seq_range`` contains its seq (an aggregate is appended
    whole, in one store write, so it is either stored with all its members or
    not at all). A storm slice that was still in memory when the daemon died
    was never stored; its records are re-read and counted by the new run. A
    BPF hit that was in memory is lost (the kernel does not replay
    tracepoints); its kernel line, if one was printed, is re-read.
    """

    def __init__(self, boot_id: str = "", events: Iterable[StorageEvent] = ()):
        self.ids: set[str] = set()
        self._ranges: dict[str, list[tuple[int, int, str, str]]] = {}
        for event in events:
            self.ids.add(event.event_id)
            lo_hi = event.extension.get("kmsg_seq_range", "")
            lo, _, hi = lo_hi.partition("-")
            if not (lo.isdigit() and hi.isdigit()):
                continue
            # only aggregates of this boot: their id proves it
            if event.event_id == storm_event_id(boot_id, int(lo)):
                self._ranges.setdefault(event.event_type, []).append(
                    (int(lo), int(hi), event.dev_num or "", event.kdev or ""))

    def covers(self, event: StorageEvent) -> bool:
        seq = event.origin_seq
        if seq is None:
            return False
        if event.event_id in self.ids:
            return True
        return any(
            lo <= seq <= hi and ((dev_num and dev_num == event.dev_num) or (kdev and kdev == event.kdev))
            for lo, hi, dev_num, kdev in self._ranges.get(event.event_type, ())
        )

    def __len__(self) -> int:
        return len(self.ids)


class InFlight:
    """kmsg sequence numbers whose events are not stored yet.

    The daemon persists ``safe_seq()``: every record up to it is fully
    handled, so a restart resumes right after it.
    """

    def __init__(self):
        self._counts: Counter[int] = Counter()
        self.last_read = -1
        """Highest kmsg seq read (or skipped at start-up): -1 before any."""

    def hold(self, seq: int | None) -> None:
        if seq is not None:
            self._counts[seq] += 1

    def release(self, seq: int | None) -> None:
        if seq is None:
            return
        self._counts[seq] -= 1
        if self._counts[seq] <= 0:
            del self._counts[seq]

    def safe_seq(self) -> int:
        if self._counts:
            return min(self._counts) - 1
        return self.last_read


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
        self.storm = StormAggregator(window=storm_window, burst=storm_burst, aggregate_id=self._aggregate_id)
        self.in_flight = InFlight()
        self.resume = ResumeIndex()
        self._suppressed: list[tuple[float, StorageEvent]] = []
        self.stats = Counter()
        self.ledger = None
        """``mapcounts.MapLedger`` when the probes count failures in maps."""

    # -- inputs -------------------------------------------------------------
    def add_record(self, record: LogRecord) -> None:
        if record.seq is not None and record.source == "kmsg":
            self.in_flight.last_read = max(self.in_flight.last_read, record.seq)
        self.stats["records"] += 1
        if record.trusted_kernel and "\n" in record.text:
            # One printk call, several lines, one kmsg record: 6.1's raid1
            # error() prints "Disk failure on sdb, disabling device." and
            # "Operation continuing on 1 devices." in one pr_crit. Each line
            # is a fact of its own (member failed; array degraded) with its
            # own event type, so each line is matched as a record.
            for n, line in enumerate(record.text.split("\n")):
                if line.strip():
                    self._add_line(dataclasses.replace(record, text=line), n)
            return
        self._add_line(record, 0)

    def _add_line(self, record: LogRecord, line_no: int) -> None:
        match = self.rules.match_record(record)
        if match is None:
            return
        self.stats["matched"] += 1
        event = self._event_from_match(record, match, line_no)
        self.in_flight.hold(event.origin_seq)
        if event.event_type in _WAITS_FOR_DEVICE and event.kdev == event.extension.get("function"):
            # The line names a kernel function, not a device (a ratelimit
            # summary; 6.1's "md: super_written gets error=-5"): it waits
            # for that family's next line to name the device.
            event.kdev = ""
            self._suppressed.append((self.clock() + SUPPRESSED_NAMING_WAIT, event))
            return
        self._resolve(event)
        if self._suppressed and record.trusted_kernel:
            self._name_suppressed(event)
        self.correlator.add(event, self.clock())

    def add_hit(self, hit) -> None:
        mapping = HIT_EVENT_TYPES.get(hit.kind)
        self.stats["hits"] += 1
        if mapping is None:
            return
        event = hit_to_event(hit, *mapping, hostname=self.hostname, to_wallclock=self.to_wallclock)
        self._resolve(event)
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
        events = self.ledger.settle(everything)
        for event in events:
            self._resolve(event)
        self.stats["map_counted"] += sum(e.count for e in events)
        self._finish(events)

    def next_deadline(self) -> float | None:
        ledger = self.ledger.next_deadline() if self.ledger is not None else None
        deadlines = [d for d in (self.correlator.next_deadline(), self.storm.next_deadline(), ledger) if d]
        if self._suppressed:
            deadlines.append(self._suppressed[0][0])
        return min(deadlines) if deadlines else None

    # -- internals ----------------------------------------------------------
    def _event_from_match(self, record: LogRecord, match, line_no: int = 0) -> StorageEvent:
        event = event_from_match(record, match, hostname=self.hostname)
        event.kernel_usec = record.kernel_usec
        if record.source == "kmsg" and record.seq is not None:
            event.origin_seq = record.seq
            if self.boot_id:
                event.event_id = kmsg_event_id(self.boot_id, record.seq, line_no)
        _decode_cdb(event)
        return event

    def _resolve(self, event: StorageEvent) -> None:
        """Name the device as it was at the event's kernel time."""
        if self.timeline is None:
            return
        kernel_usec = event.kernel_usec
        key = event.dev_num or event.kdev
        if not key:
            return
        info = self.timeline.at(key, kernel_usec)
        if info is None and event.dev_num and event.kdev:
            info = self.timeline.at(event.kdev, kernel_usec)
        if info is None:
            return
        event.cur_blk_info = info
        event.dev_num = event.dev_num or info.dev_num
        if event.sources == ["bpf"] or not event.kdev:
            event.kdev = os.path.basename(info.blk_path) or event.kdev
        event.hierarchy_blk_info = [
            owner
            for owner in (
                self.timeline.at(os.path.basename(p), kernel_usec) for p in info.owners_paths
            )
            if owner is not None
        ]
        if info.mount_point and event.sub_system in FS_SUB_SYSTEMS:
            event.extension.setdefault("mount_point", info.mount_point)
        lv = lvm_name(info)
        if lv:
            event.extension.setdefault("lvm_lv", lv)
        self._name_related(event, kernel_usec)

    def _name_related(self, event: StorageEvent, kernel_usec) -> None:
        """Other devices a line names by number (the map of a multipath
        path, ``dm_dev``) get their name and path too, as of the same time."""
        for key, prefix in _RELATED_DEVICES.items():
            dev_num = event.extension.get(key)
            if not dev_num:
                continue
            info = self.timeline.at(dev_num, kernel_usec)
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
                summary.kdev, summary.dev_num = event.kdev, event.dev_num
                summary.cur_blk_info, summary.hierarchy_blk_info = event.cur_blk_info, event.hierarchy_blk_info
                summary.msg = f"{summary.msg}; next line on {event.kdev}"
                self._finish([summary])
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
            self.linker.link(event)
            if self.resume.covers(event):
                # Re-read after a restart and already stored (ResumeIndex):
                # it neither counts again nor fills a storm's burst.
                self.stats["skipped_duplicates"] += 1
                self.in_flight.release(event.origin_seq)
                continue
            if self.ledger is not None and event.extension.get("counted_by") != "bpf-maps":
                # Its failure is also in a map count: the ledger takes it off.
                self.ledger.note(event)
            ready, outcome = self.storm.add(event, now)
            if outcome == StormAggregator.FOLDED:
                # Counted into an aggregate, which now holds the lowest kmsg
                # seq of its members (keeping the resume position before
                # them); the folded event carries the seq to give back.
                self.in_flight.release(event.origin_seq)
            self._emit_all(ready)

    def _emit_all(self, events: Iterable[StorageEvent]) -> None:
        for event in events:
            self.emit(event)
            self.stats["emitted"] += 1
            self.in_flight.release(event.origin_seq)


def hit_to_event(hit, event_type: str, sub_system: str, *, hostname: str, to_wallclock=None) -> StorageEvent:
    """An event from a tracepoint hit alone (no kernel line seen for it)."""
    extension = _line_spelling(_flatten(hit.to_dict(), skip={"kind", "kernel_usec", "dev_num", "kdev"}))
    extension["tracepoint"] = hit.tracepoint
    status = hit.blk_status or hit.errno_name or extension.get("hostbyte") or extension.get("status_name")
    status = f": {status} error" if status else ""
    where = f" at sector {hit.sector}" if hit.sector is not None else ""
    op = f" ({hit.op})" if hit.op else ""
    title = EVENT_TYPES.get(event_type).title if event_type in EVENT_TYPES else event_type
    event = StorageEvent(
        event_type=event_type,
        sub_system=sub_system,
        severity=EVENT_TYPES.default_severity(event_type),
        kdev=hit.kdev or hit.dev_num,
        msg=f"{title}{status} on {hit.kdev or hit.dev_num}{where}{op}",
        raw_msg="",
        hostname=hostname,
        dev_num=hit.dev_num,
        extension=extension,
        sources=["bpf"],
    )
    if to_wallclock is not None and hit.kernel_usec:
        event.timestamp = to_wallclock(hit.kernel_usec)
    event.kernel_usec = hit.kernel_usec
    return event


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


def _decode_cdb(event: StorageEvent) -> None:
    """A line printing a command's CDB names its LBA too (the same decoding
    as a scsi tracepoint hit's ``cmnd``), so the two can be paired."""
    cdb = event.extension.get("cdb")
    if not cdb or "lba" in event.extension:
        return
    try:
        parsed = decode_cdb(bytes.fromhex(cdb))
    except ValueError:
        return
    if parsed.lba is not None:
        event.extension["lba"] = str(parsed.lba)
        event.extension["transfer_length"] = str(parsed.transfer_length)


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


def daemon_event(event_type: str, msg: str, *, hostname: str, severity: Severity | None = None, **extension) -> StorageEvent:
    """An event about peripetyd itself (overrun, lost samples, device dump)."""
    return StorageEvent(
        event_type=event_type,
        sub_system="Peripety",
        severity=severity or EVENT_TYPES.default_severity(event_type),
        msg=msg,
        hostname=hostname,
        extension={k: str(v) for k, v in extension.items()},
        sources=["peripetyd"],
    )
