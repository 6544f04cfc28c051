"""Who wrote a journal entry, told by journald's trusted fields only.

journald adds ``_UID``, ``_PID``, ``_COMM``, ``_EXE`` and ``_SYSTEMD_UNIT``
itself (from the socket credentials, /proc and the cgroup) and drops any
field starting with ``_`` that a client sends. Every other field
(``SYSLOG_IDENTIFIER``, ``IS_PERIPETY``, ``JSON``) is whatever the sender
wrote: any local user can send ``IS_PERIPETY=TRUE`` with a made-up event.

A ``SenderPolicy`` accepts an entry when its ``_UID`` is one of ``uids``
*and* one of: its ``_COMM`` is in ``comms``, its ``_EXE`` is in ``exes``,
its ``_SYSTEMD_UNIT`` is in ``units``. The uid is what a non-root user
cannot fake; the name says which of root's processes it was.

What journald records for peripetyd (checked with ``journalctl -o
verbose``): ``_COMM=peripetyd`` (the kernel names a process after the
script it ran, and ``peripetyd`` is a console script), ``_EXE`` the Python
interpreter (shared with every Python program, so not used by default), and
``_SYSTEMD_UNIT=peripetyd.service`` under systemd. journald reads ``_COMM``
from /proc when the entry arrives: a sender that already exited has none
(peripetyd syncs the journal before it exits, so its last entries keep it).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

SENDER_FIELDS = {"_PID": "pid", "_UID": "uid", "_COMM": "comm", "_EXE": "exe", "_SYSTEMD_UNIT": "unit"}
"""journald's trusted field -> the short name used in JSON and extensions."""


@dataclass(frozen=True)
class SenderPolicy:
    uids: frozenset[int] = frozenset({0})
    comms: frozenset[str] = frozenset()
    exes: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()

    @classmethod
    def of(cls, uids=(0,), comms=(), exes=(), units=()) -> "SenderPolicy":
        return cls(frozenset(int(u) for u in uids), frozenset(comms), frozenset(exes), frozenset(units))

    @classmethod
    def for_daemon(cls, name: str) -> "SenderPolicy":
        """A system daemon called ``name``: root, its comm (the kernel keeps 15
        characters of it) or its ``name.service`` unit."""
        return cls.of(comms=(name[:15],), units=(f"{name}.service",))

    @classmethod
    def this_process(cls) -> "SenderPolicy":
        """Entries this process writes (tests, tools that store events themselves)."""
        with open("/proc/self/comm", encoding="utf-8") as f:
            comm = f.read().strip()
        return cls.of(uids=(os.geteuid(),), comms=(comm,))

    def trusts(self, sender: dict[str, str]) -> bool:
        """``sender`` maps the short names (``uid``, ``comm``, ...) to the
        values journald recorded."""
        uid = sender.get("uid", "")
        if not uid.isdigit() or int(uid) not in self.uids:
            return False
        return (sender.get("comm") in self.comms or sender.get("exe") in self.exes
                or sender.get("unit") in self.units)

    def trusts_fields(self, fields: dict) -> bool:
        """``trusts`` for an entry's fields as ``systemd.journal._Reader._get_all()``
        gives them (bytes; a list when a field repeats, whose first value is
        the one ``_get`` returns): readers that need the whole entry anyway
        check it without a call per field."""
        uids, comms, units = self._accepted_bytes
        uid, comm, unit = fields.get("_UID"), fields.get("_COMM", b""), fields.get("_SYSTEMD_UNIT", b"")
        if type(uid) is bytes and uid in uids and ((type(comm) is bytes and comm in comms)
                                                   or (type(unit) is bytes and unit in units)):
            return True  # spelled as journald writes it: what every entry of peripetyd's says
        uid = _text(fields.get("_UID"))
        if not uid.isdigit() or int(uid) not in self.uids:
            return False
        return ((self.comms and _text(fields.get("_COMM")) in self.comms)
                or (self.units and _text(fields.get("_SYSTEMD_UNIT")) in self.units)
                or (self.exes and _text(fields.get("_EXE")) in self.exes)) or False

    @functools.cached_property
    def _accepted_bytes(self) -> tuple[frozenset, frozenset, frozenset]:
        """Uids, comms and units as ``_get_all`` gives them (a subset of
        what ``trusts_fields`` accepts: its exact check covers the rest)."""
        return (frozenset(str(u).encode() for u in self.uids), frozenset(c.encode() for c in self.comms),
                frozenset(u.encode() for u in self.units))

    def describe(self) -> str:
        names = sorted(f"comm {c}" for c in self.comms) + sorted(f"exe {e}" for e in self.exes) \
            + sorted(f"unit {u}" for u in self.units)
        uids = ", ".join(str(u) for u in sorted(self.uids))
        return f"uid {uids} and one of: {', '.join(names) or 'nothing'}"


PERIPETYD_WRITER = SenderPolicy.for_daemon("peripetyd")
"""Who may write peripety events into the journal: root's peripetyd."""


def _text(value) -> str:
    """A ``_get_all`` value as text: absent is "", a repeated field its first
    value (the one ``_get`` would give)."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = value[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def sender_from_fields(fields: dict) -> dict[str, str]:
    """The trusted sender fields of an entry (its ``_get_all()`` fields), by
    short name; absent fields are left out."""
    return {name: _text(fields[journal_field]) for journal_field, name in SENDER_FIELDS.items()
            if journal_field in fields}


def sender_from_entry(entry: dict) -> dict[str, str]:
    """The same from a ``journal.Reader`` entry dictionary (converted values)."""
    sender = {}
    for journal_field, name in SENDER_FIELDS.items():
        value = entry.get(journal_field)
        if value is None:
            continue
        sender[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return sender
