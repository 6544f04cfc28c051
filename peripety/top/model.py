"""What ``prpt top`` shows, kept as plain state: per-device statistics, the
recent events, totals, and the view settings the keys change.

Nothing here draws or reads the terminal; panels render a ``TopModel`` and
the key handler mutates its ``ViewState``. Time is always passed in, so
tests render with a frozen clock.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import logging
import os
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Iterable

from ..event import Severity, StorageEvent
from .state import DeviceState

log = logging.getLogger("peripety.top.model")

DEFAULT_STATUS_PATH = "/run/peripety/status.json"

# Severities are shown in four columns: the worst three RFC 5424 levels are
# all "act now" and would waste width if shown apart.
SEVERITY_BUCKETS: tuple[tuple[str, Severity], ...] = (
    ("crit", Severity.Critical),
    ("err", Severity.Error),
    ("warn", Severity.Warning),
    ("info", Severity.Debug),
)

# Error-rate history per device: slots of SLOT_SECONDS, kept for TREND_SLOTS.
SLOT_SECONDS = 30
TREND_SLOTS = 20
RATE_WINDOW_SECONDS = 10
RECENT_LIMIT = 500
DEVICE_RECENT_LIMIT = 200
# Event ids remembered to recognise a storm event delivered again with a
# larger count (and the overlap between the seeding query and the follower).
SEEN_LIMIT = 100_000
# Events held while paused; beyond this they are folded into the statistics
# anyway so a long pause cannot exhaust memory.
PENDING_LIMIT = 20_000
# Events kept by id for the detail view's root-cause chain.
BY_ID_LIMIT = 20_000
# Shown in the device list (they refresh a device's identity) but never in
# the event pane: the daemon dumps one per device at start.
BLK_INFO_TYPE = "PERIPETY_BLK_INFO"


def bucket_index(severity: Severity) -> int:
    for index, (_, worst_allowed) in enumerate(SEVERITY_BUCKETS):
        if severity <= worst_allowed:
            return index
    return len(SEVERITY_BUCKETS) - 1


def event_time(event: StorageEvent) -> _dt.datetime:
    """When the event last happened (a storm's last occurrence)."""
    return event.last_timestamp or event.timestamp


def spread(event: StorageEvent, added: int, unit: int, keep: int) -> dict[int, float]:
    """Share ``added`` occurrences out over the time units (epoch // unit)
    the event covers: a storm aggregated over minutes is a steady rate, not
    one spike at its last occurrence. Only the newest ``keep`` units are
    returned; older ones could never be shown."""
    last = event_time(event).timestamp()
    first = min(event.timestamp.timestamp(), last)
    first_unit, last_unit = int(first) // unit, int(last) // unit
    span = max(last - first, 1e-9)
    shares: dict[int, float] = {}
    for index in range(max(first_unit, last_unit - keep + 1), last_unit + 1):
        if first_unit == last_unit:
            shares[index] = float(added)
            break
        overlap = min(last, (index + 1) * unit) - max(first, index * unit)
        shares[index] = added * max(overlap, 0.0) / span
    return shares


# -- daemon status --------------------------------------------------------------


@dataclass(frozen=True)
class DaemonStatus:
    running: bool
    reason: str = ""
    """Why the daemon is considered not running (empty when running)."""
    pid: int | None = None
    started: str | None = None
    store: str | None = None
    sources: tuple[str, ...] = ()
    bpf_attached: tuple[str, ...] = ()
    bpf_skipped: dict[str, str] = field(default_factory=dict)
    store_ok: bool | None = None
    """Whether the daemon's last write to its store worked; None: not reported."""
    store_error: str | None = None
    spool_depth: int | None = None
    """Events waiting in the on-disk spool for the store to come back."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def read_daemon_status(path: str | os.PathLike = DEFAULT_STATUS_PATH) -> DaemonStatus:
    """Read peripetyd's status file, tolerating a missing, partial or stale one.

    A file left behind by a daemon that died (its pid is gone) means "not
    running": top must never claim sources are active when nothing reads them.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return DaemonStatus(False, "daemon not running")
    except (OSError, ValueError) as exc:
        log.info("cannot read daemon status %s: %s", path, exc)
        return DaemonStatus(False, f"daemon status unreadable: {exc}")
    if not isinstance(data, dict):
        return DaemonStatus(False, "daemon status unreadable: not a JSON object")
    pid = data.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not _pid_alive(pid):
        return DaemonStatus(False, "daemon not running", pid=pid if isinstance(pid, int) else None)
    bpf = data.get("bpf") if isinstance(data.get("bpf"), dict) else {}
    skipped = bpf.get("skipped") if isinstance(bpf.get("skipped"), dict) else {}
    return DaemonStatus(
        True,
        pid=pid,
        started=str(data["started"]) if data.get("started") else None,
        store=str(data["store"]) if data.get("store") else None,
        sources=tuple(str(s) for s in data.get("sources") or ()),
        bpf_attached=tuple(str(s) for s in bpf.get("attached") or ()),
        bpf_skipped={str(k): str(v) for k, v in skipped.items()},
        store_ok=data["store_ok"] if isinstance(data.get("store_ok"), bool) else None,
        store_error=str(data["store_error"]) if data.get("store_error") else None,
        spool_depth=data["spool_depth"] if isinstance(data.get("spool_depth"), int) else None,
    )


# -- per-device statistics ------------------------------------------------------


@dataclass
class DeviceStats:
    """Everything top shows about one device, updated event by event."""

    key: str
    """wwid when known (one disk, whichever hosts see it: a shared LUN is one
    row), else the kernel name, prefixed ``HOST:`` for another host's
    device (sdb there is not sdb here)."""
    kdev: str = ""
    path: str = ""
    wwid: str = ""
    blk_type: str = ""
    mount_point: str = ""
    owners_wwids: tuple[str, ...] = ()
    counts: list[int] = field(default_factory=lambda: [0] * len(SEVERITY_BUCKETS))
    worst: Severity = Severity.Debug
    last_event_type: str = ""
    last_seen: _dt.datetime | None = None
    error_slots: Counter = field(default_factory=Counter)
    """Error (and worse) occurrences per SLOT_SECONDS slot (epoch // SLOT)."""
    event_types: set[str] = field(default_factory=set)
    recent: deque = field(default_factory=lambda: deque(maxlen=DEVICE_RECENT_LIMIT))
    names: list[str] = field(default_factory=list)
    """Every path this identity was seen under, oldest first (the last is current)."""
    kernel_name: str = ""
    """Current kernel name (sdb, dm-0): where its live state is read."""
    mounted_at: _dt.datetime | None = None
    shutdown_at: _dt.datetime | None = None
    remounted_ro_at: _dt.datetime | None = None
    state: DeviceState | None = None
    hosts: set[str] = field(default_factory=set)
    """Hosts whose events are about this device (two or more: a shared LUN)."""

    @property
    def earlier_names(self) -> list[str]:
        current = self.path or self.kdev
        return [n for n in self.names if n != current]

    @property
    def fs_shutdown(self) -> bool:
        """An FS_SHUTDOWN newer than the last mount (XFS has no sysfs flag for it)."""
        return self.shutdown_at is not None and (self.mounted_at is None or self.shutdown_at > self.mounted_at)

    @property
    def fs_read_only_by_event(self) -> bool:
        """An FS_REMOUNT_READ_ONLY newer than the last mount. On Linux
        6.6-6.14 ext4's errors=remount-ro sets only its own flag: neither
        ``ro`` nor ``emergency_ro`` shows in /proc/self/mountinfo."""
        return self.remounted_ro_at is not None and (self.mounted_at is None or self.remounted_ro_at > self.mounted_at)

    @property
    def state_summary(self) -> str:
        parts = [self.state.summary()] if self.state is not None else []
        mount_ro = self.state is not None and self.state.mount is not None and self.state.mount.read_only
        if self.fs_read_only_by_event and not mount_ro:
            parts.insert(0, "ro")
        mount_down = self.state is not None and self.state.mount is not None and self.state.mount.shut_down
        if self.fs_shutdown and not mount_down:
            parts.append("shutdown")
        return " ".join(p for p in parts if p)

    @property
    def alarming(self) -> bool:
        return (self.fs_shutdown or self.fs_read_only_by_event
                or (self.state is not None and self.state.alarming))

    @property
    def rank(self) -> Severity:
        """Worst severity, with an alarming live state counted as an Error."""
        return min(self.worst, Severity.Error) if self.alarming else self.worst

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def errors(self) -> int:
        """Occurrences at Error or worse."""
        return self.counts[0] + self.counts[1]

    def trend(self, now: _dt.datetime, slots: int = TREND_SLOTS, per_cell: int = 1) -> list[int]:
        """Error counts for the last ``slots`` slots, oldest first, summed
        ``per_cell`` slots at a time (2 gives one cell per minute)."""
        newest = int(now.timestamp()) // SLOT_SECONDS
        raw = [self.error_slots.get(newest - i, 0) for i in range(slots - 1, -1, -1)]
        return [sum(raw[i : i + per_cell]) for i in range(0, len(raw), per_cell)]

    def matches(self, text: str) -> bool:
        hay = (self.path, self.kdev, self.wwid, self.blk_type, self.mount_point, *self.names, *self.event_types,
               *self.hosts)
        return any(text in value.lower() for value in hay if value)


def device_identity(event: StorageEvent) -> tuple[str, str, str]:
    """(key, kdev, path) of the device an event is about; key "" = none."""
    info = event.cur_blk_info
    kdev = event.kdev or ""
    path = ""
    if info is not None:
        path = info.preferred_blk_path or info.blk_path
    if not path and kdev and "/" not in kdev and ":" not in kdev:
        path = "/dev/" + kdev
    key = (info.wwid if info is not None and info.wwid else "") or kdev or path
    return key, kdev, path or kdev


def kernel_name_of(event: StorageEvent) -> str:
    """sdb, dm-0, loop3: the name under /sys/block and /proc/diskstats."""
    info = event.cur_blk_info
    if info is not None and info.blk_path.startswith("/dev/") and info.blk_path.count("/") == 2:
        return info.blk_path[5:]
    kdev = event.kdev or ""
    return kdev if kdev and "/" not in kdev and ":" not in kdev else ""


def event_matches(event: StorageEvent, text: str) -> bool:
    info = event.cur_blk_info
    hay = [event.event_type, event.kdev, event.sub_system, event.hostname]
    if info is not None:
        hay += [info.wwid, info.preferred_blk_path, info.blk_path, info.mount_point or ""]
    return any(text in value.lower() for value in hay if value)


# -- view state -----------------------------------------------------------------


class SortMode(enum.Enum):
    WORST = "worst"
    RECENT = "recent"
    COUNT = "count"
    NAME = "name"

    def next(self) -> "SortMode":
        modes = list(SortMode)
        return modes[(modes.index(self) + 1) % len(modes)]


@dataclass
class ViewState:
    sort: SortMode = SortMode.WORST
    paused_at: _dt.datetime | None = None
    """Clock time the view was frozen at; None when live."""
    selected_key: str | None = None
    """Device whose events alone are listed; None lists all."""
    filter_text: str = ""
    prompt: str | None = None
    """Text typed so far at the filter prompt; None when no prompt is open."""
    quit: bool = False
    focus: str = "devices"
    """Pane the arrow keys move in: "devices" or "events"."""
    event_cursor: int = 0
    """Highlighted event in the event pane, 0 = newest."""
    help: bool = False
    detail_event_id: str | None = None
    """Event shown full-screen (Enter in the event pane); None: no detail view."""
    detail_offset: int = 0
    show_names: bool = False
    """Show the earlier names of each device identity."""
    requery: bool = False
    """The filter changed: the app reloads the model from the store."""

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


@dataclass(frozen=True)
class DeviceRow:
    stats: DeviceStats
    depth: int
    """0 for a device at the bottom of its stack as shown; 1+ stacked on the row above."""


# -- the model ------------------------------------------------------------------


class TopModel:
    def __init__(self, hostname: str, store_name: str, daemon: DaemonStatus | None = None):
        self.hostname = hostname
        """The header's host (the hosts read, for journal files)."""
        self.local_host = hostname
        """This machine: only its devices get live state, and their kernel
        names need no host prefix."""
        self.show_hosts = False
        """Always show the host columns (journal files: the events may be
        another host's); else only while the events span hosts."""
        self.store_name = store_name
        self.daemon = daemon or DaemonStatus(False, "daemon not running")
        self.view = ViewState()
        self.devices: dict[str, DeviceStats] = {}
        self.recent: deque[StorageEvent] = deque(maxlen=RECENT_LIMIT)
        self.totals = [0] * len(SEVERITY_BUCKETS)
        self.pending: list[StorageEvent] = []
        self._per_second: Counter = Counter()
        self._seen: OrderedDict[str, int] = OrderedDict()
        self.by_id: OrderedDict[str, StorageEvent] = OrderedDict()
        self.states: dict[str, DeviceState] = {}
        self.state_rows: dict[str, DeviceStats] = {}
        self.state_only_rows = True
        """List devices that have no events but a notable state (off when the view is filtered)."""
        self.untrusted_skipped: int | None = None
        """Store entries skipped as not written by peripetyd (when the reader counts them)."""
        self.lookup = None
        """Optional callable(event_id) -> StorageEvent | None for events not held here."""

    def reset(self) -> None:
        """Forget every event (a new filter reloads them from the store); keep the view and state."""
        self.devices.clear()
        self.recent.clear()
        self.totals = [0] * len(SEVERITY_BUCKETS)
        self.pending = []
        self._per_second.clear()
        self._seen.clear()
        self.by_id.clear()
        self.update_state(self.states)

    def accepts(self, event: StorageEvent) -> bool:
        text = self.view.filter_text.lower()
        return not text or event_matches(event, text)

    # -- feeding -------------------------------------------------------------
    def offer(self, events: Iterable[StorageEvent]) -> int:
        """New events from the store: shown now, or held while paused."""
        if not self.view.paused:
            return self.ingest(events)
        self.pending.extend(events)
        if len(self.pending) > PENDING_LIMIT:
            overflow, self.pending = self.pending[:-PENDING_LIMIT], self.pending[-PENDING_LIMIT:]
            self.ingest(overflow)
        return 0

    def ingest(self, events: Iterable[StorageEvent]) -> int:
        """Fold events into the statistics; returns how many changed anything."""
        changed = 0
        for event in events:
            if not self.accepts(event):
                continue
            if event.event_type == BLK_INFO_TYPE:
                self._note_identity(event)
                continue
            added = self._new_occurrences(event)
            if added > 0:
                self._count(event, added)
                changed += 1
        return changed

    def _new_occurrences(self, event: StorageEvent) -> int:
        count = max(event.count, 1)
        before = self._seen.get(event.event_id)
        if before is not None:
            if count <= before:
                return 0
            self._replace_recent(event)
        self._seen[event.event_id] = count
        self._seen.move_to_end(event.event_id)
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)
        return count - (before or 0)

    def device_key(self, event: StorageEvent) -> tuple[str, str, str]:
        """``device_identity`` with the host: a WWID names one disk
        whichever host saw it; a kernel name only on its host."""
        key, kdev, path = device_identity(event)
        info = event.cur_blk_info
        if key and not (info is not None and info.wwid) and self._foreign(event):
            key = f"{event.hostname}:{key}"
        return key, kdev, path

    def _foreign(self, event: StorageEvent) -> bool:
        return bool(event.hostname) and event.hostname != self.local_host

    def hosts(self) -> list[str]:
        """The hosts of the events held."""
        return sorted({e.hostname for e in self.recent if e.hostname}
                      | {h for d in self.devices.values() for h in d.hosts})

    def multi_host(self, events: Iterable[StorageEvent] | None = None) -> bool:
        """Whether to show hosts: journal files, or ``events`` (default: all
        held) from more than one host."""
        if self.show_hosts:
            return True
        if events is None:
            return len(self.hosts()) > 1
        return len({e.hostname for e in events}) > 1

    def _note_identity(self, event: StorageEvent) -> None:
        key, kdev, path = self.device_key(event)
        stats = self.devices.get(key)
        if stats is not None and path and path not in stats.names:
            stats.names.append(path)

    def _replace_recent(self, event: StorageEvent) -> None:
        for queue in (self.recent, *(d.recent for d in self.devices.values())):
            for index, old in enumerate(queue):
                if old.event_id == event.event_id:
                    del queue[index]
                    break

    def _count(self, event: StorageEvent, added: int) -> None:
        when = event_time(event)
        bucket = bucket_index(event.severity)
        self.totals[bucket] += added
        self.recent.append(event)
        self.by_id[event.event_id] = event
        self.by_id.move_to_end(event.event_id)
        if len(self.by_id) > BY_ID_LIMIT:
            self.by_id.popitem(last=False)
        for second, amount in spread(event, added, 1, 2 * RATE_WINDOW_SECONDS).items():
            self._per_second[second] += amount
        if len(self._per_second) > 4 * RATE_WINDOW_SECONDS:
            newest = max(self._per_second)
            for old in [s for s in self._per_second if s <= newest - 2 * RATE_WINDOW_SECONDS]:
                del self._per_second[old]
        key, kdev, path = self.device_key(event)
        if key:
            self._count_device(key, kdev, path, event, added, bucket, when)

    def _count_device(self, key, kdev, path, event, added, bucket, when) -> None:
        stats = self.devices.get(key)
        # Live state is this machine's: another host's sdb is not ours.
        kernel_name = "" if self._foreign(event) else kernel_name_of(event)
        if stats is None:
            stats = self.devices[key] = DeviceStats(key=key)
            stats.state = self.states.get(kernel_name) if kernel_name else None
        if event.hostname:
            stats.hosts.add(event.hostname)
        info = event.cur_blk_info
        if path and path not in stats.names:
            stats.names.append(path)
        newest = stats.last_seen is None or when >= stats.last_seen
        # Identity fields follow the newest event: a device gets mounted,
        # renamed or gains a holder over time.
        if newest:
            stats.kdev = kdev or stats.kdev
            stats.path = path or stats.path
            if info is not None:
                stats.wwid = info.wwid or stats.wwid
                stats.blk_type = info.blk_type or stats.blk_type
                stats.owners_wwids = tuple(info.owners_wwids) or stats.owners_wwids
            mount = (info.mount_point if info else None) or event.extension.get("mount_point")
            stats.mount_point = mount or stats.mount_point
            stats.last_event_type = event.event_type
            stats.last_seen = when
            stats.kernel_name = kernel_name or stats.kernel_name
            if path in stats.names:  # the current name goes last
                stats.names.remove(path)
                stats.names.append(path)
        if event.event_type == "FS_MOUNTED":
            stats.mounted_at = max(stats.mounted_at or when, when)
        elif event.event_type == "FS_SHUTDOWN":
            stats.shutdown_at = max(stats.shutdown_at or when, when)
        elif event.event_type == "FS_REMOUNT_READ_ONLY":
            stats.remounted_ro_at = max(stats.remounted_ro_at or when, when)
        stats.counts[bucket] += added
        stats.worst = min(stats.worst, event.severity)
        stats.event_types.add(event.event_type)
        stats.recent.append(event)
        if event.severity <= Severity.Error:
            for slot, amount in spread(event, added, SLOT_SECONDS, TREND_SLOTS).items():
                stats.error_slots[slot] += amount
            if len(stats.error_slots) > 2 * TREND_SLOTS:
                newest = max(stats.error_slots)
                for old in [s for s in stats.error_slots if s <= newest - TREND_SLOTS]:
                    del stats.error_slots[old]

    # -- derived figures ---------------------------------------------------
    def rate(self, now: _dt.datetime) -> float:
        """Event occurrences per second over the last RATE_WINDOW_SECONDS."""
        end = int(now.timestamp())
        total = sum(n for s, n in self._per_second.items() if end - RATE_WINDOW_SECONDS < s <= end)
        return total / RATE_WINDOW_SECONDS

    def update_state(self, states: dict[str, DeviceState]) -> None:
        """Attach live state to the devices by current kernel name; devices
        with no events but a notable state (I/O, an md array, a multipath
        map, a problem) get a row of their own."""
        self.states = states
        claimed = set()
        for stats in self.devices.values():
            stats.state = states.get(stats.kernel_name) if stats.kernel_name else None
            if stats.kernel_name:
                claimed.add(stats.kernel_name)
        rows: dict[str, DeviceStats] = {}
        for name, state in states.items():
            if name in claimed or not state.notable or not self.state_only_rows:
                continue
            path = "/dev/" + name
            if state.multipath is not None:
                path = "/dev/mapper/" + state.multipath.map_name
            mount = state.mount.mount_point if state.mount is not None else ""
            rows["kdev:" + name] = DeviceStats(key="kdev:" + name, kdev=name, path=path, kernel_name=name,
                                               mount_point=mount, names=[path], state=state,
                                               hosts={self.local_host})
        self.state_rows = rows

    def all_devices(self) -> dict[str, DeviceStats]:
        return {**self.state_rows, **self.devices}

    def device_rows(self) -> list[DeviceRow]:
        """Devices to list, in order: sorted roots, each followed by the
        devices stacked on it (a filesystem's LV under its failing disk)."""
        text = self.view.filter_text.lower()
        shown = {k: d for k, d in self.all_devices().items() if not text or d.matches(text)}
        children = _stack_children(shown)
        parented = {c for kids in children.values() for c in kids}
        roots = [k for k in shown if k not in parented]
        sort_key = _sort_key(self.view.sort, shown, children)
        rows: list[DeviceRow] = []
        placed: set[str] = set()

        def place(key: str, depth: int) -> None:
            if key in placed:  # owner lists that contradict each other
                return
            placed.add(key)
            rows.append(DeviceRow(shown[key], depth))
            for child in sorted(children.get(key, ()), key=sort_key):
                place(child, depth + 1)

        for key in sorted(roots, key=sort_key):
            place(key, 0)
        for key in sorted(set(shown) - placed, key=sort_key):  # cycles
            place(key, 0)
        return rows

    def visible_events(self, limit: int | None = None) -> list[StorageEvent]:
        """Newest first: the selected device's events, else all, filtered."""
        stats = self.devices.get(self.view.selected_key or "")
        source = stats.recent if stats is not None else self.recent
        text = self.view.filter_text.lower()
        events = [e for e in source if not text or event_matches(e, text)]
        events.sort(key=event_time, reverse=True)
        return events if limit is None else events[:limit]

    def cursor_event(self) -> StorageEvent | None:
        events = self.visible_events()
        if not events:
            return None
        return events[min(self.view.event_cursor, len(events) - 1)]

    def find_event(self, event_id: str) -> StorageEvent | None:
        event = self.by_id.get(event_id)
        if event is None and self.lookup is not None:
            event = self.lookup(event_id)
        return event

    def root_cause_chain(self, event: StorageEvent, limit: int = 10) -> list[StorageEvent | str]:
        """The events ``event`` was caused by, nearest first; an id that is
        not found is given as a string (the chain stops there)."""
        chain: list[StorageEvent | str] = []
        seen = {event.event_id}
        cause = event.root_cause_event_id
        while cause and cause not in seen and len(chain) < limit:
            seen.add(cause)
            found = self.find_event(cause)
            if found is None:
                chain.append(cause)
                break
            chain.append(found)
            cause = found.root_cause_event_id
        return chain

    def to_dict(self, now: _dt.datetime, event_limit: int = 50) -> dict:
        """The whole model for ``prpt top --once -J``."""
        daemon = self.daemon
        return {
            "time": now.isoformat(),
            "hostname": self.hostname,
            "hosts": self.hosts(),
            "store": self.store_name,
            "filter": self.view.filter_text or None,
            "daemon": {
                "running": daemon.running,
                "reason": daemon.reason or None,
                "pid": daemon.pid,
                "started": daemon.started,
                "sources": list(daemon.sources),
                "bpf_attached": list(daemon.bpf_attached),
                "bpf_skipped": dict(daemon.bpf_skipped),
                "store_ok": daemon.store_ok,
                "store_error": daemon.store_error,
                "spool_depth": daemon.spool_depth,
            },
            "untrusted_skipped": self.untrusted_skipped,
            "rate_per_second": round(self.rate(now), 3),
            "totals": {name: total for (name, _), total in zip(SEVERITY_BUCKETS, self.totals)},
            "devices": [_row_dict(row) for row in self.device_rows()],
            "events": [e.to_dict() for e in self.visible_events(event_limit)],
        }


def _row_dict(row: DeviceRow) -> dict:
    stats = row.stats
    return {
        "key": stats.key,
        "name": stats.path or stats.kdev,
        "hosts": sorted(stats.hosts),
        "earlier_names": stats.earlier_names,
        "kernel_name": stats.kernel_name or None,
        "wwid": stats.wwid or None,
        "type": stats.blk_type or None,
        "mount_point": stats.mount_point or None,
        "depth": row.depth,
        "counts": {name: count for (name, _), count in zip(SEVERITY_BUCKETS, stats.counts)},
        "worst": stats.worst.name if stats.total else None,
        "last_event_type": stats.last_event_type or None,
        "last_seen": stats.last_seen.isoformat() if stats.last_seen else None,
        "fs_shutdown": stats.fs_shutdown,
        "fs_read_only_by_event": stats.fs_read_only_by_event,
        "state": stats.state.to_dict() if stats.state is not None else None,
        "state_summary": stats.state_summary,
    }


def _stack_children(shown: dict[str, DeviceStats]) -> dict[str, list[str]]:
    """parent key -> keys of devices stacked directly on it.

    owners lists are flattened (every device below), so the direct parent is
    the shown owner that itself has the most owners: the one nearest up.
    Among equals (the paths of a multipath map) the worse one wins.
    """
    by_wwid = {d.wwid: k for k, d in shown.items() if d.wwid}
    children: dict[str, list[str]] = {}
    for key, stats in shown.items():
        owners = [by_wwid[w] for w in stats.owners_wwids if w in by_wwid and by_wwid[w] != key]
        if owners:
            parent = max(owners, key=lambda k: (len(shown[k].owners_wwids), -shown[k].rank, shown[k].errors, k))
            children.setdefault(parent, []).append(key)
    return children


def _sort_key(mode: SortMode, shown: dict[str, DeviceStats], children: dict[str, list[str]]):
    def subtree(key: str, seen: frozenset = frozenset()) -> list[DeviceStats]:
        out = [shown[key]]
        for child in children.get(key, ()):
            if child not in seen:
                out += subtree(child, seen | {key})
        return out

    def key_of(key: str):
        stats = shown[key]
        last = stats.last_seen.timestamp() if stats.last_seen else 0.0
        if mode is SortMode.WORST:
            # A disk whose stacked filesystem is worse still sorts by that.
            tree = subtree(key)
            worst = min(d.rank for d in tree)
            errors = sum(d.errors for d in tree)
            return (int(worst), -errors, -last, stats.path)
        if mode is SortMode.RECENT:
            return (-last, stats.path)
        if mode is SortMode.COUNT:
            return (-stats.total, stats.path)
        return (stats.path, stats.key)

    return key_of
