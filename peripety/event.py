"""The storage event and the block-device description it carries.

Field names are a public contract (doc/design.md, "The event"): they appear in
JSON output, in the journal's ``JSON=`` field and in users' scripts.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import os
import socket
import time
from dataclasses import dataclass, field

from .errors import EventFormatError


class Severity(enum.IntEnum):
    """RFC 5424 severities; the value is the syslog/journald PRIORITY."""

    Emergency = 0
    Alert = 1
    Critical = 2
    Error = 3
    Warning = 4
    Notice = 5
    Info = 6
    Debug = 7

    @classmethod
    def parse(cls, text: str | int) -> "Severity":
        """Accept a name (any case, the original's ``Ctritical`` too), a
        common abbreviation (``err``, ``crit``, ``warn``) or a number 0-7."""
        if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
            value = int(text)
            if 0 <= value <= 7:
                return cls(value)
            raise ValueError(f"severity {text!r} is out of range 0-7")
        key = str(text).strip().lower()
        try:
            return _SEVERITY_ALIASES[key]
        except KeyError:
            names = ", ".join(s.name for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {names})") from None

    def __str__(self) -> str:
        return self.name


_SEVERITY_BY_NAME = {s.name: s for s in Severity}
_SEVERITY_ALIASES = {s.name.lower(): s for s in Severity}
_SEVERITY_ALIASES.update(
    {
        "ctritical": Severity.Critical,  # the original peripety's spelling
        "emerg": Severity.Emergency,
        "crit": Severity.Critical,
        "err": Severity.Error,
        "warn": Severity.Warning,
        "information": Severity.Info,
        "informational": Severity.Info,
    }
)

# Canonical sub-system names (doc/design.md, "The event"). Lookup is case-insensitive so user
# rules may write "EXT4" or "multipath" as the original config did.
SUB_SYSTEMS = (
    "SCSI",
    "block",
    "ata",
    "NVMe",
    "Multipath",
    "DM-DirtyLog",
    "LVM-ThinProvisioning",
    "DM",
    "md",
    "ext4",
    "ext3",
    "jbd2",
    "xfs",
    "btrfs",
    "Peripety",
)
_SUB_SYSTEM_BY_KEY = {s.lower(): s for s in SUB_SYSTEMS}
_SUB_SYSTEM_BY_KEY.update({"fsext4": "ext4", "fsext3": "ext3", "fsxfs": "xfs", "fsjbd2": "jbd2", "dm-thin": "LVM-ThinProvisioning",
                          "device-mapper": "DM"})


_CANONICAL_SUB_SYSTEMS = frozenset(SUB_SYSTEMS)


def canonical_sub_system(name: str) -> str:
    """Return the canonical spelling of a sub-system, or raise ValueError."""
    try:
        return _SUB_SYSTEM_BY_KEY[name.strip().lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown sub_system {name!r} (expected one of {', '.join(SUB_SYSTEMS)})"
        ) from None


_OUTPUT_ZONE: _dt.tzinfo | None = None
"""The zone every written time is shown in: None is local time (as
journalctl), UTC after ``set_output_utc(True)`` (``--utc``)."""


def set_output_utc(utc: bool) -> None:
    """Write times in UTC (True) or local time (False), everywhere."""
    global _OUTPUT_ZONE
    _OUTPUT_ZONE = _dt.timezone.utc if utc else None


def output_zone() -> _dt.tzinfo | None:
    """The zone times are written in: None for local time."""
    return _OUTPUT_ZONE


def output_time(ts: _dt.datetime) -> _dt.datetime:
    """``ts`` in the zone times are written in (local, or UTC with --utc)."""
    return ts.astimezone(_OUTPUT_ZONE)


def format_timestamp(ts: _dt.datetime) -> str:
    """RFC 3339 with microseconds and an explicit offset, in the output zone
    (local time unless ``--utc``): one rule for every command's JSON, the
    journal's JSON field included. A naive time is taken as local time.

    ``ts.astimezone(zone).isoformat(timespec="microseconds")``, with the
    text up to the second and the offset kept per second (``_SECONDS``) for
    the times every event has (aware, a fixed offset): the local zone is
    looked up once a second, not once an event. A zone's offset changes
    only on a whole second (tz transitions are whole seconds), so one
    second's instants share their date, time to the second and offset."""
    zone = _OUTPUT_ZONE
    tz = ts.tzinfo
    if type(tz) is _dt.timezone:
        # the second, as its fields and offset (timezones compare by offset)
        key = (ts.second, ts.minute, ts.hour, ts.day, ts.month, ts.year, tz, zone, time.tzname)
        kept = _SECONDS.get(key)
        if kept is None:
            text = ts.astimezone(zone).isoformat(timespec="microseconds")
            if len(_SECONDS) > 4096:
                _SECONDS.clear()
            # "YYYY-MM-DDTHH:MM:SS." and the offset, around the microseconds
            kept = _SECONDS[key] = (text[:20], text[26:])
        return "%s%06d%s" % (kept[0], ts.microsecond, kept[1])
    return ts.astimezone(zone).isoformat(timespec="microseconds")


_SECONDS: dict[tuple, tuple[str, str]] = {}
"""(a whole second's fields and offset, output zone, the local zone's
names) -> its text to the second, its offset. ``time.tzset()`` (a new
TZ) makes new ``time.tzname``: nothing kept before is used after."""


def parse_timestamp(value) -> _dt.datetime:
    """Read an RFC 3339 string, or the original's integer microseconds."""
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value / 1_000_000, _dt.timezone.utc)
    text = str(value).strip()
    if text.isdigit():
        return _dt.datetime.fromtimestamp(int(text) / 1_000_000, _dt.timezone.utc)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        ts = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise EventFormatError(f"timestamp {value!r} is not RFC 3339") from None
    return ts if ts.tzinfo else ts.astimezone()


def now() -> _dt.datetime:
    """The time now, in the local zone (``datetime.now().astimezone()``)."""
    return local_time(time.time())


_LOCAL_SECOND: tuple = (1.0, 0.0, None, None)
"""[from, to) POSIX seconds of one whole second, the local zone's offset
then (as ``astimezone()`` gives it), and ``time.tzname`` when it was
looked up (``time.tzset()`` makes a new one)."""


def local_time(timestamp: float) -> _dt.datetime:
    """``datetime.fromtimestamp(timestamp).astimezone()``, the same value
    and zone, for a quarter of its cost: the local zone's offset (a
    localtime(3) call, twice there) is looked up once per second, and
    within that second the time is made with it. Offsets change only on a
    whole second; the second's last microsecond is left to the general path,
    where ``fromtimestamp``'s rounding may carry into the next one."""
    global _LOCAL_SECOND
    start, end, zone, names = _LOCAL_SECOND
    if start <= timestamp < end and names is time.tzname:
        return _dt.datetime.fromtimestamp(timestamp, zone)
    names = time.tzname
    ts = _dt.datetime.fromtimestamp(timestamp).astimezone()
    start = ts.replace(microsecond=0).timestamp()  # a whole number: exact
    _LOCAL_SECOND = (start, start + 0.999999, ts.tzinfo, names)
    return ts


_HOSTNAME: str | None = None


def local_hostname() -> str:
    """The host name, read once: events are built by the hundred thousand
    when a saved log is parsed and the name does not change under us."""
    global _HOSTNAME
    if _HOSTNAME is None:
        _HOSTNAME = socket.gethostname()
    return _HOSTNAME


_ID_BATCH = 256
_IDS: list[str] = []
# str(uuid.uuid4()): each of its 36 characters is a hex digit of the 16
# random bytes (index), "-", "4" (the version, replacing digit 12) or the
# variant digit (10xx in binary, from digit 16).
_ID_SHAPE = (*range(8), "-", *range(8, 12), "-", "4", *range(13, 16), "-", "variant", *range(17, 20), "-",
             *range(20, 32))
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")


def new_event_id() -> str:
    """A random (version 4) UUID string.

    Same format and entropy source as ``str(uuid.uuid4())``, but os.urandom
    is read and formatted for 256 ids at a time instead of once per id
    (``prpt parse`` makes ids by the hundred thousand): each character
    place of all of them is filled at once by a slice assignment."""
    if not _IDS:
        n = _ID_BATCH
        hexes = os.urandom(16 * n).hex().encode("ascii")
        out = bytearray(b"\n" * (37 * n))  # 36 characters and a newline each
        for place, what in enumerate(_ID_SHAPE):
            if type(what) is int:
                out[place::37] = hexes[what::32]
            elif what == "variant":
                out[place::37] = hexes[16::32].translate(_VARIANT)
            else:
                out[place::37] = what.encode("ascii") * n
        _IDS.extend(out.decode("ascii").split("\n")[:n])
    return _IDS.pop()


# The child may fork (daemon workers); never share the random pool with it.
os.register_at_fork(after_in_child=_IDS.clear)


@dataclass
class BlkInfo:
    """What peripety knows about one block device at one moment.

    ``owners_*`` are parallel lists describing every device *below* this one,
    flattened (an LV on a multipath map on four SCSI paths lists the map and
    the four paths), as the original peripety did.
    """

    wwid: str = ""
    blk_type: str = ""
    blk_path: str = ""
    preferred_blk_path: str = ""
    dev_num: str = ""
    diskseq: int | None = None
    uuid: str | None = None
    mount_point: str | None = None
    transport_id: str = ""
    transport: dict[str, str] = field(default_factory=dict)
    owners_wwids: list[str] = field(default_factory=list)
    owners_types: list[str] = field(default_factory=list)
    owners_paths: list[str] = field(default_factory=list)
    owners_transport_ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Fields that could not be determined (e.g. no udev database)."""

    def to_dict(self, copy: bool = True) -> dict:
        """The fields as a dict. ``copy=False`` hands out the object's own
        lists and dicts, for a caller that only encodes them."""
        # Not dataclasses.asdict: its recursive deepcopy was 60 % of `prpt query` time.
        # Fields are scalars, lists of str and a dict of str: a shallow copy of each is a deep one.
        if not copy:
            return vars(self)
        return {k: (v.copy() if isinstance(v, (list, dict)) else v) for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, data: dict | None) -> "BlkInfo | None":
        if not data:
            return None
        known = _FIELD_NAMES.get(cls)
        if known is None:
            known = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
        kwargs = {k: v for k, v in data.items() if k in known}
        # The original serialised blk_type as an enum name ("DmMultipath").
        if "blk_type" in kwargs:
            kwargs["blk_type"] = _ORIGINAL_BLK_TYPES.get(kwargs["blk_type"], kwargs["blk_type"])
        kwargs["owners_types"] = [
            _ORIGINAL_BLK_TYPES.get(t, t) for t in kwargs.get("owners_types", [])
        ]
        return cls(**kwargs)


_FIELD_NAMES: dict[type, frozenset[str]] = {}
"""A dataclass's field names (``from_dict`` reads thousands of events)."""


def evolve(event: "StorageEvent", **changes) -> "StorageEvent":
    """``dataclasses.replace(event, **changes)``, 5x faster: a new event
    with the same field values (lists and dicts shared, as ``replace``
    shares them) but ``changes``. Every field of ``StorageEvent`` is an
    ``__init__`` field with no ``__post_init__``, so copying the fields is
    what ``replace`` does. Later stages make new events with it
    (doc/design.md, "Made once")."""
    unknown = changes.keys() - _EVENT_FIELDS
    if unknown:
        raise TypeError(f"StorageEvent has no field {sorted(unknown)[0]!r}")
    new = object.__new__(StorageEvent)
    fields = new.__dict__
    fields.update(event.__dict__)
    fields.update(changes)
    return new


_ORIGINAL_BLK_TYPES = {
    "Scsi": "SCSI",
    "Dm": "Device Mapper",
    "DmMultipath": "Device Mapper Multipath",
    "DmLvm": "Device Mapper LVM",
    "Partition": "Partition",
}


@dataclass
class StorageEvent:
    """One storage event. See doc/design.md, "The event", for each field."""

    event_type: str
    sub_system: str
    severity: Severity = Severity.Info
    kdev: str = ""
    msg: str = ""
    raw_msg: str = ""
    timestamp: _dt.datetime = field(default_factory=now)
    hostname: str = field(default_factory=local_hostname)
    event_id: str = field(default_factory=new_event_id)
    dev_num: str = ""
    cur_blk_info: BlkInfo | None = None
    hierarchy_blk_info: list[BlkInfo] = field(default_factory=list)
    extension: dict[str, str] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    root_cause_event_id: str | None = None
    count: int = 1
    last_timestamp: _dt.datetime | None = None
    """Time of the last occurrence when ``count`` > 1 (storm aggregation)."""
    kernel_usec: int | None = field(default=None, compare=False)
    """The kernel's clock (microseconds since boot) when the line was
    logged: dmesg's ``[  123.456789]``, kmsg's usec, journald's monotonic
    stamps. Only comparable within one boot. None where the source had none."""
    # Transient, never serialised: the kmsg sequence number of its record;
    # True when the line gave no wall-clock time (``timestamp`` is then the
    # time it was parsed: text output shows the kernel stamp alone).
    origin_seq: int | None = field(default=None, repr=False, compare=False)
    untrusted_writer: dict[str, str] | None = field(default=None, repr=False, compare=False)
    """Set by a reader asked to show entries not written by peripetyd: who
    journald says sent it (pid, uid, comm, exe, unit). Serialised only when set."""
    clockless: bool = field(default=False, repr=False, compare=False)

    # -- JSON ---------------------------------------------------------------
    def to_dict(self, copy: bool = True) -> dict:
        """The event as JSON-ready values. ``copy=False`` shares the event's
        own lists and dicts, for a caller that only encodes them."""
        cur = self.cur_blk_info
        return {
            "hostname": self.hostname,
            "severity": self.severity.name,
            "sub_system": self.sub_system,
            "timestamp": format_timestamp(self.timestamp),
            "kernel_usec": self.kernel_usec,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "kdev": self.kdev,
            "dev_num": self.dev_num,
            "cur_blk_info": cur.to_dict(copy) if cur else None,
            "hierarchy_blk_info": [b.to_dict(copy) for b in self.hierarchy_blk_info],
            "msg": self.msg,
            "raw_msg": self.raw_msg,
            "extension": dict(self.extension) if copy else self.extension,
            "sources": list(self.sources) if copy else self.sources,
            "root_cause_event_id": self.root_cause_event_id,
            "count": self.count,
            "last_timestamp": format_timestamp(self.last_timestamp) if self.last_timestamp else None,
            **({"untrusted_writer": dict(self.untrusted_writer)} if self.untrusted_writer is not None else {}),
        }

    def to_json(self, pretty: bool = False) -> str:
        """The event as JSON (compact, or indented with ``pretty``). Writers
        of many events use ``event_json.compact_json``: the same bytes,
        faster."""
        if pretty:
            return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> "StorageEvent":
        """Read peripety's JSON, and the original project's (``Ctritical``,
        ``extention``, integer microsecond timestamps, ``dev_wwid``/
        ``dev_path``/``owners_*`` at top level, ``FsExt4`` sub-systems)."""
        if not isinstance(data, dict):
            raise EventFormatError("an event must be a JSON object")
        try:
            event_type = data["event_type"]
            sub_system = data["sub_system"]
        except KeyError as exc:
            raise EventFormatError(f"event has no {exc.args[0]!r} field") from None
        severity = data.get("severity", "Info")
        try:
            # Exact canonical spellings first: what every stored event has.
            if type(sub_system) is not str or sub_system not in _CANONICAL_SUB_SYSTEMS:
                sub_system = canonical_sub_system(sub_system)
            severity = _SEVERITY_BY_NAME.get(severity) if type(severity) is str else None
            if severity is None:
                severity = Severity.parse(data.get("severity", "Info"))
        except ValueError as exc:
            raise EventFormatError(str(exc)) from None
        try:
            extension = data.get("extension")
            if extension is None:
                extension = data.get("extention") or {}
            cur = BlkInfo.from_dict(data.get("cur_blk_info"))
            if cur is None and ("dev_wwid" in data or "dev_path" in data):
                cur = BlkInfo(
                    wwid=data.get("dev_wwid", ""),
                    blk_path=data.get("dev_path", ""),
                    preferred_blk_path=data.get("dev_path", ""),
                    owners_wwids=list(data.get("owners_wwids", [])),
                    owners_paths=list(data.get("owners_paths", [])),
                    mount_point=(extension or {}).get("mount_point"),
                )
            kwargs = dict(
                event_type=event_type,
                sub_system=sub_system,
                severity=severity,
                kdev=data.get("kdev", "") or "",
                msg=data.get("msg", "") or "",
                raw_msg=data.get("raw_msg", "") or data.get("msg", "") or "",
                hostname=data.get("hostname", "") or "",
                dev_num=data.get("dev_num", "") or "",
                cur_blk_info=cur,
                hierarchy_blk_info=[
                    b for b in (BlkInfo.from_dict(x) for x in data.get("hierarchy_blk_info") or []) if b
                ],
                extension={str(k): str(v) for k, v in extension.items()},
                sources=list(data.get("sources") or []),
                root_cause_event_id=data.get("root_cause_event_id") or None,
                count=int(data.get("count", 1) or 1),
            )
            if data.get("event_id"):
                kwargs["event_id"] = data["event_id"]
            if data.get("timestamp") not in (None, ""):
                kwargs["timestamp"] = parse_timestamp(data["timestamp"])
            if data.get("last_timestamp"):
                kwargs["last_timestamp"] = parse_timestamp(data["last_timestamp"])
            usec = data.get("kernel_usec")
            if usec is not None:
                if type(usec) is not int or usec < 0:
                    raise EventFormatError(f"kernel_usec {usec!r} is not a count of microseconds")
                kwargs["kernel_usec"] = usec
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            # JSON of the right shape with a field of the wrong kind ("count":
            # NaN, "extension": 5): not an event, whoever wrote it.
            raise EventFormatError(f"not a peripety event: {type(exc).__name__}: {exc}") from None
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> "StorageEvent":
        if isinstance(text, bytes):
            text = text.rstrip(b"\0").decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EventFormatError(f"event is not valid JSON: {exc}") from None
        return cls.from_dict(data)


_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(StorageEvent))
