"""Which device a name or ``major:minor`` meant at a given kernel time.

Names and numbers are reused: ``loop3`` re-attached to another file, ``sdc``
replaced by a new disk. The timeline starts from the udev database and then
follows udev's block uevents (``sources.udev.UdevSource``, read by the
daemon's loop and given to ``apply_all``; the timeline reads nothing
itself), keeping a ``BlkInfo`` snapshot per device identity with the
interval of kernel time it was valid.

Time base: CLOCK_MONOTONIC microseconds. udev's ``USEC_INITIALIZED`` is
CLOCK_MONOTONIC; ``bpf_ktime_get_ns()`` is CLOCK_MONOTONIC; /dev/kmsg
timestamps are ``local_clock()``, which tracks CLOCK_MONOTONIC closely but
not exactly (measured on this 6.18 VM: kmsg stamps ~0.95 ms *behind*
CLOCK_MONOTONIC, stable over minutes). That is well below the time udevd
takes to handle an event, so the two are used interchangeably.

When does an identity begin and end? A uevent carries no kernel timestamp:

* ``add``: udev's ``USEC_INITIALIZED`` (set when udevd handled the add, a few
  ms after the kernel) - exact enough, and independent of when we read it.
* ``change`` (a loop device re-attached, new media) and ``remove``: the
  monotonic time at which the udev source received the event. If the daemon
  was busy that is late, which errs towards the *old* identity: an error
  logged just before a disk was replaced still names the old disk. When a
  later ``add`` for the same name/number has an earlier ``USEC_INITIALIZED``
  than that late receipt, the old entry is clamped to end there.

Known window: a kernel line about the *new* device, processed before udevd
has broadcast the change/add (udev's own latency, typically milliseconds),
resolves to the old identity.

Memory is bounded: closed entries are dropped beyond ``max_removed`` or
after ``max_age_usec``.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
from dataclasses import dataclass, replace

from ..errors import DeviceNotFound
from ..event import BlkInfo
from . import mounts as _mounts
from . import udevdb
from .resolver import Resolver

log = logging.getLogger("peripety.devices.timeline")

_DEV_NUM = re.compile(r"^\d+:\d+$")
_HANDLED_ACTIONS = {"add", "change", "move", "remove"}


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@dataclass(eq=False)  # entries are compared by identity when expiring
class TimelineEntry:
    """One identity of one device name, valid in [start_usec, end_usec)."""

    name: str
    dev_num: str
    info: BlkInfo
    start_usec: int
    end_usec: int | None = None
    seqnum: int = 0
    """udev SEQNUM of the uevent that opened it (0: initial enumeration)."""

    def covers(self, usec: int) -> bool:
        return self.start_usec <= usec and (self.end_usec is None or usec < self.end_usec)


@dataclass(frozen=True)
class Uevent:
    """The part of a udev uevent the timeline needs (pyudev-independent for tests)."""

    action: str
    name: str
    dev_num: str
    properties: dict
    seqnum: int
    received_usec: int


class DeviceTimeline:
    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        max_removed: int = 4096,
        max_age_usec: int = 24 * 3600 * 1_000_000,
    ):
        self.resolver = resolver or Resolver()
        self.max_removed = max_removed
        self.max_age_usec = max_age_usec
        self._by_name: dict[str, list[TimelineEntry]] = collections.defaultdict(list)
        self._by_dev_num: dict[str, list[TimelineEntry]] = collections.defaultdict(list)
        self._closed: collections.deque[TimelineEntry] = collections.deque()
        # Keys that named no device, remembered until the next uevent: a
        # storm of lines about an unknown name must not rescan sysfs per line.
        self._misses: set[str] = set()
        self.generation = 0
        """Counts changes to the identities (see ``stamp``)."""
        # id(entry info) -> (that info, mount table generation, it with its mount point then)
        self._live: dict[int, tuple[BlkInfo, int, BlkInfo]] = {}

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_system(cls, resolver: Resolver | None = None, **limits) -> "DeviceTimeline":
        """Every block device in the udev database now. Open the uevent
        source first (``sources.udev.UdevSource``) and feed what it read
        meanwhile to ``apply_all``: a device seen both ways is recognised
        as the same identity, and nothing falls between."""
        timeline = cls(resolver, **limits)
        timeline._enumerate()
        return timeline

    def _enumerate(self) -> None:
        for device in udevdb.context().list_devices(subsystem="block"):
            num = device.device_number
            dev_num = f"{os.major(num)}:{os.minor(num)}"
            props = udevdb.record_properties(device)
            # Present before we started: we cannot know since when, so the
            # entry covers all earlier time (start 0).
            self._open(device.sys_name, dev_num, props, start=0, seqnum=0)

    def close(self) -> None:
        """Release the resolver's mount-table handle (the daemon calls this
        on shutdown)."""
        self.resolver.close()

    # -- uevents (fed by the daemon's loop from sources.udev) -------------------
    def apply_all(self, events) -> int:
        """Apply uevents in order, then forget removed devices past the
        limits; return how many."""
        handled = 0
        for event in events:
            self.apply(event)
            handled += 1
        self._expire(monotonic_usec())
        return handled

    def apply(self, event: Uevent) -> None:
        if event.action not in _HANDLED_ACTIONS:
            return
        self._misses.clear()
        current = self._open_entry(event.name)
        if event.action == "remove":
            if current:
                self._close(current, event.received_usec)
                self._expire(event.received_usec)
            return
        start = event.received_usec
        if event.action in ("add", "move"):
            initialized = _int(event.properties.get("USEC_INITIALIZED"))
            if initialized and initialized <= event.received_usec:
                start = initialized
        self._open(event.name, event.dev_num, event.properties, start=start, seqnum=event.seqnum)

    # -- queries ---------------------------------------------------------------
    def at(self, kdev: str, kernel_usec: int | None = None) -> BlkInfo | None:
        """The device ``kdev`` (name, ``major:minor``, /dev path or any key
        ``resolve`` takes) meant at CLOCK_MONOTONIC ``kernel_usec`` (now if None),
        including devices already gone; None if it named nothing then."""
        return self.at_since(kdev, kernel_usec)[0]

    def at_since(self, kdev: str, kernel_usec: int | None = None) -> tuple[BlkInfo | None, int | None]:
        """``at``, and since when that answer holds for every later time,
        until ``stamp()`` changes: an identity still open, since it began;
        a name that never named anything, always (0). None: an identity
        that ended, or none at this time while there were some."""
        entries = self._entries_for(str(kdev))
        if not entries:
            return None, 0
        if kernel_usec is None:
            entry = entries[-1] if entries[-1].end_usec is None else None
        else:
            entry = next((e for e in reversed(entries) if e.covers(kernel_usec)), None)
        if entry is None:
            return None, None
        if entry.end_usec is None:
            return self._with_live_mount(entry.info), entry.start_usec
        return entry.info, None

    def stamp(self) -> tuple[int, int]:
        """Changes whenever an answer of ``at`` may have: an identity opened,
        closed or forgotten, or the mount table changed (one poll(2))."""
        table = self.resolver.mount_table
        table.current()
        return self.generation, table.generation

    def entries(self, kdev: str) -> list[TimelineEntry]:
        """Every identity remembered for ``kdev``, oldest first."""
        return list(self._entries_for(str(kdev)))

    # -- internals -------------------------------------------------------------
    def _entries_for(self, kdev: str) -> list[TimelineEntry]:
        if _DEV_NUM.match(kdev):
            found = self._by_dev_num.get(kdev)
            if found or kdev in self._misses:
                return found or []
            # udev never hears of a hidden NVMe path disk (259:1 of
            # nvme1c1n1): sysfs names it, and its namespace head answers
            name = self.resolver.sysfs.name_of_dev_num(kdev)
            head = nvme_path_head(name) if name else None
            found = self._by_name.get(head, []) if head else []
            if not found:
                self._misses.add(kdev)
            return found
        if kdev in self._by_name:
            return self._by_name[kdev]
        head = nvme_path_head(kdev)
        if head:
            return self._by_name.get(head, [])
        if kdev in self._misses:
            return []
        try:
            name = self.resolver.kernel_name(kdev)
        except DeviceNotFound:
            # a WWID or FS UUID of a device that is gone: search the history
            found = [e for es in self._by_name.values() for e in es if kdev in (e.info.wwid, e.info.uuid)]
            if not found:
                self._misses.add(kdev)
            return sorted(found, key=lambda e: e.start_usec)
        found = self._by_name.get(name, [])
        if not found:
            self._misses.add(kdev)
        return found

    def _open_entry(self, name: str) -> TimelineEntry | None:
        entries = self._by_name.get(name)
        return entries[-1] if entries and entries[-1].end_usec is None else None

    def _snapshot(self, name: str, dev_num: str, props: dict | None) -> BlkInfo:
        use = props if props and "USEC_INITIALIZED" in props else None
        try:
            return self.resolver.describe(name, use, use_props=True) if use else self.resolver.describe(name)
        except DeviceNotFound:
            # gone before we looked: keep what the uevent itself says
            info = BlkInfo(dev_num=dev_num, blk_path=f"/dev/{name}", preferred_blk_path=f"/dev/{name}")
            info.diskseq = _int((props or {}).get("DISKSEQ"))
            info.uuid = (props or {}).get("ID_FS_UUID") or None
            info.missing = ["wwid", "blk_type"]
            return info

    def _open(self, name: str, dev_num: str, props: dict | None, *, start: int, seqnum: int) -> None:
        self.generation += 1
        info = self._snapshot(name, dev_num, props)
        current = self._open_entry(name)
        if current and (current.info.wwid, current.info.diskseq, current.dev_num) == (
            info.wwid, info.diskseq, dev_num
        ):
            current.info = info  # same identity (new FS, enumeration overlap): refresh
            return
        for entries in (self._by_name.get(name), self._by_dev_num.get(dev_num)):
            if entries and entries[-1].end_usec is None:
                self._close(entries[-1], start)
            elif entries and entries[-1].end_usec > start:
                entries[-1].end_usec = max(entries[-1].start_usec, start)  # late remove: clamp
        entry = TimelineEntry(name, dev_num, info, start, None, seqnum)
        self._by_name[name].append(entry)
        self._by_dev_num[dev_num].append(entry)

    def _close(self, entry: TimelineEntry, end: int) -> None:
        self.generation += 1
        entry.end_usec = max(entry.start_usec, end)
        self._closed.append(entry)

    def _expire(self, now: int) -> None:
        while self._closed and (
            len(self._closed) > self.max_removed or now - self._closed[0].end_usec > self.max_age_usec
        ):
            old = self._closed.popleft()
            self.generation += 1
            for index, key in ((self._by_name, old.name), (self._by_dev_num, old.dev_num)):
                entries = index.get(key, [])
                if old in entries:
                    entries.remove(old)
                if not entries:
                    index.pop(key, None)

    def _with_live_mount(self, info: BlkInfo) -> BlkInfo:
        # Mounting sends no uevent: ask mountinfo for the device as it is now
        # (one poll(2): the table is re-read only when it changed, and the
        # answer for this identity is kept until then).
        table = self.resolver.mount_table
        mounts = table.current()
        kept = self._live.get(id(info))
        if kept is not None and kept[0] is info and kept[1] == table.generation:
            return kept[2]
        if len(self._live) > 4096:
            self._live.clear()
        live = replace(info, mount_point=_mounts.mount_point_of(info.dev_num, mounts))
        self._live[id(info)] = (info, table.generation, live)
        return live


_NVME_PATH_DISK = re.compile(r"^(nvme\d+)c\d+(n\d+)$")


def nvme_path_head(name: str) -> str | None:
    """The namespace head of a hidden native-multipath path disk:
    ``nvme1c1n1`` (subsystem 1, controller 1, namespace 1) -> ``nvme1n1``
    (drivers/nvme/host/multipath.c nvme_set_disk_name). Such a disk has no
    /dev node and no udev record; kernel lines and tracepoints name it."""
    m = _NVME_PATH_DISK.match(name)
    return m.group(1) + m.group(2) if m else None


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
