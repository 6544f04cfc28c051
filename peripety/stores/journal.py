"""The journald store: each event is one journal entry (doc/design.md, "journald
fields"), so ``journalctl IS_PERIPETY=TRUE EVENT_TYPE=FS_ERROR`` works with
no peripety installed.

Reading decodes only the ``JSON`` field of each matching entry (and checks
journald's trusted sender fields): the per-field conversion
``systemd.journal.Reader.get_next()`` does is the slowest part of reading
and peripety needs none of it.

Rate limiting: journald limits entries per *systemd unit*
(``RateLimitIntervalSec``/``RateLimitBurst``, 10000 per 30 s by default,
scaled by free disk space). A sender outside any unit (no unit in its
cgroup, as the tests and benchmark here) is not limited at all: 30000
entries in under a second all arrived. peripetyd under
``peripetyd.service`` *is* limited; storms are aggregated into one event
with a ``count`` before they reach the store, and the unit may raise
``LogRateLimitBurst=``.
"""

from __future__ import annotations

import datetime
import errno
import functools
import logging
import os
from pathlib import Path
from typing import Iterator, NamedTuple

from systemd import journal as _sd

from ..errors import EventFormatError, StoreError
from ..event import BlkInfo, Severity, StorageEvent
from ..event_json import compact_json, stored_json_line
from ..event_types import EVENT_TYPES
from .filter import EventFilter, to_usec
from .journald_socket import JournaldSocket, encode_entry, runtime_dir, synchronize
from .provenance import PERIPETYD_WRITER, SenderPolicy, sender_from_fields

log = logging.getLogger("peripety.stores.journal")

UNTIL_SLACK_USEC = 10 * 60 * 1_000_000
"""The journal is ordered by arrival, ``until`` compares event times: an
event arrives after it happened, by up to this much (longer only when it
was spooled), so reading stops this far past ``until``."""

_DATA_THRESHOLD = 64 * 1024 * 1024
"""Return whole fields: a JSON cut at journald's default 64 KiB is useless."""

_JOURNAL_GROUP_HINT = (
    "reading the system journal needs root or membership of the systemd-journal group "
    "(usermod -aG systemd-journal USER, then log in again)"
)


def journal_fields(event: StorageEvent, json_text: str | None = None) -> dict[str, object]:
    """The journald entry for ``event`` (doc/design.md, "journald fields").

    Values are strings, or lists of strings for fields that repeat
    (``OWNERS_WWIDS``, ``OWNERS_PATHS``): the journal store writes a list
    as one field per element (``systemd.journal.send`` would not: it
    sends ``str(list)``). ``json_text``: the event's JSON, when the caller
    has it already.
    """
    info = event.cur_blk_info or BlkInfo()
    fields: dict[str, object] = {
        "IS_PERIPETY": "TRUE",
        "PRIORITY": str(int(event.severity)),
        "MESSAGE": event.msg or event.raw_msg or event.event_type,
        "MESSAGE_ID": EVENT_TYPES.message_id(event.event_type),
        "SYSLOG_IDENTIFIER": "peripetyd",
        "EVENT_TYPE": event.event_type,
        "EVENT_ID": event.event_id,
        "SUB_SYSTEM": event.sub_system,
        "SEVERITY": event.severity.name,
        "KDEV": event.kdev,
        "DEV_NUM": event.dev_num or info.dev_num,
        "DEV_WWID": info.wwid,
        "DEV_PATH": info.preferred_blk_path or info.blk_path,
        "JSON": compact_json(event) if json_text is None else json_text,
    }
    if info.mount_point:
        fields["MOUNT_POINT"] = info.mount_point
    if info.owners_wwids:
        fields["OWNERS_WWIDS"] = list(info.owners_wwids)
    if info.owners_paths:
        fields["OWNERS_PATHS"] = list(info.owners_paths)
    if event.root_cause_event_id:
        fields["ROOT_CAUSE_EVENT_ID"] = event.root_cause_event_id
    for key, value in event.extension.items():
        fields["EXT_" + _journal_key(key)] = str(value)
    return {k: v for k, v in fields.items() if v not in ("", None, [])}


def journal_entry(event: StorageEvent) -> bytes:
    """``encode_entry(journal_fields(event))``, byte for byte (tests check),
    built for the daemon's rate: the fields that are the same for every
    event of a type, and those of a device, are encoded once and kept; an
    event is one string format, its JSON and its extension. Anything
    unusual (an empty identity field, a newline in a value, which the
    native protocol writes in its binary form) takes the general path."""
    info = event.cur_blk_info
    msg = event.msg or event.raw_msg or event.event_type
    event_id, kdev = event.event_id, event.kdev
    dev_num = event.dev_num or (info.dev_num if info is not None else "")
    json_text = compact_json(event)
    if not (type(msg) is str and type(event_id) is str and type(kdev) is str and type(dev_num) is str
            and msg and event_id) or "\n" in msg + event_id + kdev + dev_num or "\n" in json_text:
        return encode_entry(journal_fields(event, json_text))
    key = (event.event_type, event.severity, event.sub_system, bool(kdev), bool(dev_num))
    head = _HEADS.get(key)
    if head is None:
        head = _head(*key)
    if head is _GENERAL:
        return encode_entry(journal_fields(event, json_text))
    values = (msg, event_id, kdev, dev_num) if kdev and dev_num else \
        (msg, event_id, kdev) if kdev else (msg, event_id, dev_num) if dev_num else (msg, event_id)
    tail = _tail(event)
    device = _device_lines(info)
    if tail is None or device is None:
        return encode_entry(journal_fields(event, json_text))
    wwid_path, mount_owners = device
    return b"".join((
        (head % values).encode("utf-8"),
        wwid_path,
        b"JSON=", json_text.encode("utf-8"), b"\n",
        mount_owners,
        tail,
    ))


_GENERAL = object()
_HEADS: dict[tuple, object] = {}
"""(event type, severity, sub-system, has KDEV, has DEV_NUM) -> the entry's
first lines, with ``%s`` for MESSAGE, EVENT_ID, and KDEV and DEV_NUM when
they are there (or _GENERAL)."""


def _head(event_type: str, severity: Severity, sub_system: str, kdev: bool, dev_num: bool):
    if len(_HEADS) > 4096:
        _HEADS.clear()
    fixed = {"MESSAGE_ID": EVENT_TYPES.message_id(event_type), "SYSLOG_IDENTIFIER": "peripetyd",
             "EVENT_TYPE": event_type, "SUB_SYSTEM": sub_system, "SEVERITY": severity.name}
    plain = all(type(v) is str and v and "\n" not in v and "%" not in v for v in fixed.values())
    head = _GENERAL if not plain else (
        f"IS_PERIPETY=TRUE\nPRIORITY={int(severity)}\nMESSAGE=%s\nMESSAGE_ID={fixed['MESSAGE_ID']}\n"
        f"SYSLOG_IDENTIFIER=peripetyd\nEVENT_TYPE={event_type}\nEVENT_ID=%s\nSUB_SYSTEM={sub_system}\n"
        f"SEVERITY={severity.name}\n" + ("KDEV=%s\n" if kdev else "") + ("DEV_NUM=%s\n" if dev_num else ""))
    _HEADS[(event_type, severity, sub_system, kdev, dev_num)] = head
    return head


_DEVICES: dict[tuple, tuple[bytes, bytes]] = {}
"""A device's fields (what it is, then where it is mounted and what is
below it) -> their encoded lines: the same for every event on it."""


_DEVICE_OF: dict[int, tuple] = {}
"""id(BlkInfo) -> (it, the fields _DEVICES keys on, their lines): the same
device object comes with every event on it."""


def _device_lines(info: BlkInfo | None) -> tuple[bytes, bytes] | None:
    """None: the general path (a field that is not what a device has)."""
    if info is None:
        return b"", b""
    fields = (info.wwid, info.preferred_blk_path or info.blk_path, info.mount_point, info.owners_wwids,
              info.owners_paths)
    kept = _DEVICE_OF.get(id(info))
    if kept is not None and kept[0] is info and kept[1] == fields:
        return kept[2]
    try:
        key = fields[:3] + (tuple(info.owners_wwids), tuple(info.owners_paths))
        lines = _DEVICES.get(key)
    except TypeError:  # unhashable: not a device's fields as peripety makes them
        return None
    if lines is None:
        if len(_DEVICES) > 4096:
            _DEVICES.clear()
        wwid, path, mount_point, owners_wwids, owners_paths = key
        lines = _DEVICES[key] = (
            encode_entry(_present({"DEV_WWID": wwid, "DEV_PATH": path})),
            encode_entry(_present({"MOUNT_POINT": mount_point or None, "OWNERS_WWIDS": list(owners_wwids),
                                   "OWNERS_PATHS": list(owners_paths)})))
    if len(_DEVICE_OF) > 4096:
        _DEVICE_OF.clear()
    # (a copy of the lists: one changed in place is not the kept one)
    _DEVICE_OF[id(info)] = (info, fields[:3] + (list(info.owners_wwids), list(info.owners_paths)), lines)
    return lines


def _tail(event: StorageEvent) -> bytes | None:
    """ROOT_CAUSE_EVENT_ID and the EXT_ lines; None when a value needs
    the general path."""
    extension = event.extension
    keys = tuple(extension)
    form = _EXT_FORMS.get(keys)
    if form is None:
        form = _ext_form(keys)
    if form is _GENERAL:
        return None
    values = tuple(extension.values())
    for value in values:
        if type(value) is not str or not value:
            return None
    text = form % values
    lines = len(values)
    root = event.root_cause_event_id
    if root:
        text = f"ROOT_CAUSE_EVENT_ID={root}\n" + text
        lines += 1
    if text.count("\n") != lines:
        return None
    return text.encode("utf-8")


_EXT_FORMS: dict[tuple, object] = {}
"""Extension keys (in order) -> "EXT_NAME=%s\\n..." (_GENERAL: two keys share
a name, and journal_fields keeps the last value)."""


def _ext_form(keys: tuple):
    if len(_EXT_FORMS) > 4096:
        _EXT_FORMS.clear()
    names = [_journal_key(key) for key in keys]  # [A-Z0-9_]: no "%" to escape
    form = "".join(f"EXT_{name}=%s\n" for name in names) if len(set(names)) == len(names) else _GENERAL
    _EXT_FORMS[keys] = form
    return form


def _present(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if v not in ("", None, [])}


@functools.lru_cache(maxsize=1024)
def _journal_key(key: str) -> str:
    """journald field names: upper-case ASCII letters, digits, underscore.
    Cached: the same few extension keys come back with every event."""
    out = "".join(c if c.isalnum() and c.isascii() else "_" for c in key.upper())
    return out or "_"


class JournalStore:
    """Events in the system journal, or in the journal namespace ``namespace``
    (``systemd-journald NS``), or read from a journal ``directory`` or
    journal ``files`` (a sosreport, systemd-journal-remote's output: these
    may hold many hosts' entries).

    The ``hosts`` filter matches ``_HOSTNAME``, which the origin host's
    journald set (journal-remote keeps it); the events keep the
    ``hostname`` peripetyd wrote, the same name unless the host was renamed
    while peripetyd ran.

    Provenance: an entry is read as an event only when journald's trusted
    fields say ``writers`` (by default root's peripetyd, see
    ``provenance.py``) wrote it. Others are skipped and counted in
    ``untrusted_skipped`` (this store's queries and followers together);
    with ``include_untrusted`` they are returned, each marked with
    ``untrusted_writer`` (who journald says wrote it).
    """

    name = "journal"

    def __init__(self, namespace: str | None = None, *, socket_path: str | os.PathLike | None = None,
                 directory: str | os.PathLike | None = None, files: list[str | os.PathLike] | None = None,
                 writers: SenderPolicy = PERIPETYD_WRITER, include_untrusted: bool = False):
        self.namespace = namespace
        self.directory = str(directory) if directory is not None else None
        self.files = [str(f) for f in files] if files else None
        self.socket_path = Path(socket_path) if socket_path else runtime_dir(namespace) / "socket"
        self.writers = writers
        self.include_untrusted = include_untrusted
        self.untrusted_skipped = 0
        """Entries with IS_PERIPETY=TRUE not written by ``writers``, skipped so far."""
        self._sender = JournaldSocket(self.socket_path)

    # -- writing ------------------------------------------------------------
    def append(self, event: StorageEvent) -> None:
        self._sender.send_entry(journal_entry(event))

    def sync(self) -> None:
        """Block until journald has written what we sent (readers see it).
        A no-op when we may not ask journald (not root)."""
        if not self.offline:
            synchronize(self.namespace)

    # -- reading ------------------------------------------------------------
    @property
    def offline(self) -> bool:
        """Reading journal files (a directory or files), not a journald's."""
        return self.directory is not None or self.files is not None

    def _open_reader(self, flt: EventFilter) -> _sd._Reader:
        if self.offline:
            _check_files_readable(self.files or _journal_files_in(self.directory))
        else:
            _check_readable(self.namespace)
        try:
            if self.files is not None:
                reader = _sd._Reader(0, None, self.files)
            elif self.directory is not None:
                reader = _sd._Reader(0, self.directory)
            elif self.namespace:
                reader = _sd._Reader(0, None, None, self.namespace)
            else:
                reader = _sd._Reader(_sd.LOCAL_ONLY)
        except OSError as exc:
            where = self._where()
            if self.offline:
                hint = "; is it a journal file?" if exc.errno in (errno.ENODATA, errno.EBADMSG) else ""
            else:
                hint = f"; {_JOURNAL_GROUP_HINT}" if isinstance(exc, PermissionError) else ""
            raise StoreError(f"cannot open {where}: {exc.strerror}{hint}") from exc
        reader.data_threshold = _DATA_THRESHOLD
        add_matches(reader, flt)
        return reader

    def event_types(self) -> set[str]:
        """EVENT_TYPE values in the journal (sd_journal_query_unique: one
        pass over the field's index, not over the entries)."""
        reader = self._open_reader(EventFilter())
        try:
            return {v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                    for v in reader.query_unique("EVENT_TYPE")}
        finally:
            reader.close()

    def query(self, flt: EventFilter) -> Iterator[StorageEvent]:
        if flt.limit == 0:
            return iter(())
        reader = self._open_reader(flt)
        if flt.limit is None:
            return self._forward(reader, flt)
        return self._newest(reader, flt)

    def query_lines(self, flt: EventFilter) -> Iterator["JsonLine"]:
        """What ``query`` yields, as ``JsonLine``s: each event's time, host
        and ``compact_json`` text. Cheaper: an entry whose stored JSON
        already is that text (peripetyd's) is not made into an event
        (``event_json.stored_json_line``). Same entries, order, trust checks
        and counts as ``query``."""
        if flt.limit == 0:
            return iter(())
        reader = self._open_reader(flt)
        if flt.limit is None:
            return self._forward(reader, flt, self._decode_line)
        return self._newest(reader, flt, self._decode_line)

    def _forward(self, reader, flt: EventFilter, decode=None) -> Iterator[StorageEvent]:
        decode = decode or self._decode
        with reader:
            if flt.since is not None:
                # An event never arrives before it happened: nothing older can match.
                reader.seek_realtime(to_usec(flt.since))
            stop = to_usec(flt.until) + UNTIL_SLACK_USEC if flt.until is not None else None
            while reader._next():
                if stop is not None and reader._get_realtime() > stop:
                    return
                event = decode(reader)
                if event is not None and flt.matches_time(event.timestamp):
                    yield event

    def _newest(self, reader, flt: EventFilter, decode=None) -> Iterator[StorageEvent]:
        decode = decode or self._decode
        newest: list[StorageEvent] = []
        with reader:
            if flt.until is not None:
                reader.seek_realtime(to_usec(flt.until) + UNTIL_SLACK_USEC)
            else:
                reader.seek_tail()
            start = to_usec(flt.since) if flt.since is not None else None
            while len(newest) < flt.limit and reader._previous():
                if start is not None and reader._get_realtime() < start:
                    break
                event = decode(reader)
                if event is not None and flt.matches_time(event.timestamp):
                    newest.append(event)
        return reversed(newest)

    def follow(self, flt: EventFilter) -> "JournalFollower":
        return JournalFollower(self._open_reader(flt), flt, self)

    def _decode(self, reader) -> StorageEvent | None:
        """The event of the reader's current entry, or None when it is not
        one (unreadable, or written by someone else and not asked for)."""
        entry = self._entry(reader)
        if entry is None:
            return None
        fields, sender = entry
        event = _decode(fields, reader)
        if event is not None and sender is not None:
            event.untrusted_writer = sender
        return event

    def _decode_line(self, reader) -> "JsonLine | None":
        """``_decode`` as a ``JsonLine``, taking peripetyd's stored JSON as
        it is when that is the event's JSON."""
        entry = self._entry(reader)
        if entry is None:
            return None
        fields, sender = entry
        raw = fields.get("JSON")
        if sender is None and type(raw) is bytes:
            line = stored_json_line(raw)
            if line is not None:
                return JsonLine(*line)
        event = _decode(fields, reader)
        if event is None:
            return None
        if sender is not None:
            event.untrusted_writer = sender
        return JsonLine(event.timestamp, event.hostname, compact_json(event))

    def _entry(self, reader) -> tuple[dict, dict | None] | None:
        """The current entry's fields and, when ``writers`` did not write
        it, who did (journald's trusted fields); None when it is skipped
        (counted in ``untrusted_skipped``).

        One ``_get_all`` reads the entry: sd-journal decompresses a field
        (JSON is large enough to be compressed) on every ``_get`` of it and
        on every ``_get`` that looks at it on the way to a later field, but
        once when it enumerates the entry."""
        fields = reader._get_all()
        if self.writers.trusts_fields(fields):
            return fields, None
        sender = sender_from_fields(fields)
        self.untrusted_skipped += 1
        if not self.include_untrusted:
            if self.untrusted_skipped == 1:
                log.warning("skipping journal entries that claim to be peripety events but were not "
                            "written by %s (first: %s, sent by %s)", self.writers.describe(),
                            reader._get_cursor(), _describe_sender(sender))
            return None
        return fields, sender

    def close(self) -> None:
        self._sender.close()

    def _where(self) -> str:
        if self.files is not None:
            return ", ".join(self.files)
        return self.directory or (f"journal namespace {self.namespace}" if self.namespace else "the system journal")

    def __repr__(self) -> str:
        return f"JournalStore({self._where()})"


class JsonLine(NamedTuple):
    """An event as ``prpt query --jsonl`` writes it (``JournalStore.query_lines``)."""

    timestamp: datetime.datetime
    hostname: str
    text: str
    """``compact_json(event)``"""


class JournalFollower:
    def __init__(self, reader, flt: EventFilter, store: JournalStore):
        self._reader = reader
        self._flt = flt
        self._store = store
        # Set up inotify before positioning, so nothing written from now on is missed.
        self._fd = reader.fileno()
        # Step onto the last matching entry so _next() returns only newer ones.
        # With none, stay at the head: sd-journal would jump from "tail" to
        # the last entry written by then, skipping those before it.
        reader.seek_tail()
        if not reader._previous():
            reader.seek_head()

    def fileno(self) -> int | None:
        return self._fd

    def wait(self, timeout: float) -> bool:
        return self._reader.wait(max(0, int(timeout * 1_000_000))) != _sd.NOP

    def read(self) -> list[StorageEvent]:
        self._reader.process()  # consume the inotify events behind fileno()
        events = []
        while self._reader._next():
            event = self._store._decode(self._reader)
            if event is not None and self._flt.matches_time(event.timestamp):
                events.append(event)
        return events

    @property
    def untrusted_skipped(self) -> int:
        """Untrusted entries skipped so far by this follower's store."""
        return self._store.untrusted_skipped

    def close(self) -> None:
        self._reader.close()


def _describe_sender(sender: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sender.items() if k != "exe") or "nobody journald could name"


def _check_readable(namespace: str | None) -> None:
    """sd-journal silently skips files it may not read: a user outside the
    systemd-journal group would see "no events". Say why instead."""
    if os.geteuid() == 0:
        return
    suffix = f".{namespace}" if namespace else ""
    machine_id = Path("/etc/machine-id").read_text().strip()
    for base in ("/var/log/journal", "/run/log/journal"):
        directory = Path(base) / f"{machine_id}{suffix}"
        if directory.is_dir() and not os.access(directory, os.R_OK | os.X_OK):
            raise StoreError(f"cannot read {directory}: {_JOURNAL_GROUP_HINT}")
        system = directory / "system.journal"
        if system.exists() and not os.access(system, os.R_OK):
            raise StoreError(f"cannot read {system}: {_JOURNAL_GROUP_HINT}")


def _journal_files_in(directory: str) -> list[str]:
    """The journal files sd-journal reads for a directory: in it and in its
    subdirectories (one level, as journalctl -D)."""
    base = Path(directory)
    return [str(p) for pattern in ("*.journal", "*/*.journal") for p in base.glob(pattern)]


def _check_files_readable(files: list[str]) -> None:
    """sd-journal silently skips journal files it may not read: say so, and
    fail when it could read none of them."""
    unreadable = [f for f in files if not os.access(f, os.R_OK)]
    if not unreadable:
        return
    if len(unreadable) == len(files):
        raise StoreError(f"cannot read {', '.join(unreadable[:3])}{' ...' if len(unreadable) > 3 else ''}: "
                         "permission denied (journal files are readable by root and the systemd-journal group)")
    log.warning("%d of %d journal files are not readable and are skipped (first: %s)",
                len(unreadable), len(files), unreadable[0])


def add_matches(reader, flt: EventFilter) -> None:
    """Express the filter as journal matches.

    sd-journal combines matches on different fields with AND and values of
    one field with OR; ``add_disjunction`` ORs whole groups and
    ``add_conjunction`` ANDs those. The device criterion (DEV_WWID or
    OWNERS_WWIDS or KDEV) is the only OR across fields, so it is its own
    conjunction term.
    """
    reader.add_match(b"IS_PERIPETY=TRUE")
    for field, values in (("EVENT_TYPE", flt.event_types), ("SUB_SYSTEM", flt.sub_systems),
                          ("EVENT_ID", flt.event_ids), ("_HOSTNAME", flt.hosts)):
        for value in values:
            reader.add_match(f"{field}={value}".encode())
    if flt.severity is not None:
        for priority in range(int(Severity.Emergency), int(flt.severity) + 1):
            reader.add_match(f"PRIORITY={priority}".encode())
    if flt.wwids or flt.kdevs:
        reader.add_conjunction()
        groups = [("DEV_WWID", flt.wwids), ("OWNERS_WWIDS", flt.wwids), ("KDEV", flt.kdevs)]
        for index, (field, values) in enumerate(g for g in groups if g[1]):
            if index:
                reader.add_disjunction()
            for value in values:
                reader.add_match(f"{field}={value}".encode())


def _decode(fields: dict, reader) -> StorageEvent | None:
    """The event in an entry's ``JSON`` field (the first, should it repeat)."""
    try:
        text = fields["JSON"]
        return StorageEvent.from_json(text[0] if isinstance(text, list) else text)
    except KeyError:
        log.warning("journal entry %s has IS_PERIPETY=TRUE but no JSON field; skipped",
                    reader._get_cursor())
    except EventFormatError as exc:
        log.warning("journal entry %s: %s; skipped", reader._get_cursor(), exc)
    return None
