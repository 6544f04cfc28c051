"""The journal as a source of user-space storage messages (multipathd,
iscsid, lvm/dmeventd, smartd).

Kernel messages are read from /dev/kmsg only, never here: entries with
``_TRANSPORT=kernel`` are skipped, and an entry that merely *claims* to be
the kernel (``SYSLOG_IDENTIFIER=kernel``, as ``logger -t kernel`` writes) is
a user-space record that no kernel rule ever fires on.

Trust: ``SYSLOG_IDENTIFIER`` is whatever the sender wrote (``logger -t
multipathd`` as any user). A line is read as daemon ID's only when
journald's own fields say ID sent it (``SenderPolicy``: ``_UID`` 0 by
default, and ``_COMM``/``_EXE``/``_SYSTEMD_UNIT`` naming ID; the
``[senders.ID]`` config table changes that). Other lines are skipped and
counted in ``untrusted_skipped``. Every record read keeps its sender
(``sender_pid``, ``sender_uid``, ``sender_comm``, ``sender_unit``), which
ends up in the event's extension.

Positioning: without a saved cursor the reader starts at the time it was
opened (``seek_realtime``), not at "the tail": sd-journal's tail with
matches and no matching entry yet is a location that moves (the next
``sd_journal_next`` jumps to whatever is then the newest matching entry).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ..record import LogRecord
from .base import RECORDS, Notice
from ..stores.provenance import SenderPolicy, sender_from_entry

log = logging.getLogger("peripety.journal")

USERSPACE_IDENTIFIERS = ("multipathd", "iscsid", "lvm", "dmeventd", "lvmpolld", "smartd")
_SENDER_EXTENSION = ("pid", "uid", "comm", "unit")


class JournalSource:
    name = "journal"
    kind = RECORDS

    def __init__(self, identifiers=USERSPACE_IDENTIFIERS, cursor: str = "",
                 policy: Callable[[str], SenderPolicy] = SenderPolicy.for_daemon):
        from systemd import journal

        self._reader = journal.Reader()
        # The inotify watches first: nothing written from now on is missed.
        self._fd = self._reader.fileno()
        self.identifiers: tuple[str, ...] = ()
        self.policy = policy
        self.untrusted_skipped = 0
        self.cursor = ""
        self._add_matches(identifiers)
        if cursor and self._seek_cursor(cursor):
            self.cursor = cursor
        else:
            self._reader.seek_realtime(time.time())

    def _add_matches(self, identifiers) -> None:
        self._reader.flush_matches()
        self._reader.this_boot()
        self.identifiers = tuple(dict.fromkeys(identifiers))
        for ident in self.identifiers:
            self._reader.add_match(SYSLOG_IDENTIFIER=ident)

    def _seek_cursor(self, cursor: str) -> bool:
        """Stand on the entry at ``cursor`` (already handled), so the next
        read returns only later ones. False when the cursor is unusable."""
        try:
            self._reader.seek_cursor(cursor)
            if self._reader._next() and not self._reader.test_cursor(cursor):
                # The entry at the cursor is gone or no longer matches: the one
                # found is new, step back before it.
                self._reader._previous()
            return True
        except (OSError, ValueError) as exc:
            log.warning("journal cursor %s is unusable (%s): reading from now on", cursor, exc)
            return False

    def set_identifiers(self, identifiers, policy: Callable[[str], SenderPolicy] | None = None) -> None:
        """Read these identifiers from now on (config reload), continuing
        after the last entry read."""
        if policy is not None:
            self.policy = policy
        if tuple(dict.fromkeys(identifiers)) == self.identifiers:
            return
        self._add_matches(identifiers)
        if not (self.cursor and self._seek_cursor(self.cursor)):
            self._reader.seek_realtime(time.time())
        log.info("journal: reading %s", ", ".join(self.identifiers))

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[LogRecord]:
        self._reader.process()
        records = []
        while True:
            entry = self._reader.get_next()
            if not entry:
                break
            self.cursor = entry.get("__CURSOR", self.cursor)
            record = self._record(entry)
            if record is not None:
                records.append(record)
        return records

    def _record(self, entry: dict) -> LogRecord | None:
        if entry.get("_TRANSPORT") == "kernel":
            return None
        identifier = entry.get("SYSLOG_IDENTIFIER")
        sender = sender_from_entry(entry)
        if not self.policy(identifier).trusts(sender):
            self.untrusted_skipped += 1
            log.log(logging.WARNING if self.untrusted_skipped == 1 else logging.DEBUG,
                    "journal: a line tagged %s was not sent by %s but by %s; not read as %s's "
                    "(%d such line(s) so far)", identifier, self.policy(identifier).describe(),
                    " ".join(f"{k}={v}" for k, v in sender.items()) or "an unknown process", identifier,
                    self.untrusted_skipped)
            return None
        message = entry.get("MESSAGE")
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        if not message:
            return None
        mono = entry.get("__MONOTONIC_TIMESTAMP")
        kernel_usec = None
        if mono is not None:
            delta = mono[0] if isinstance(mono, tuple) else mono
            kernel_usec = int(delta.total_seconds() * 1_000_000)
        return LogRecord(
            text=str(message),
            source="journal",
            trusted_kernel=False,
            kernel_usec=kernel_usec,
            wallclock=entry.get("__REALTIME_TIMESTAMP"),
            level=entry.get("PRIORITY"),
            identifier=identifier,
            sender={f"sender_{k}": sender[k] for k in _SENDER_EXTENSION if k in sender},
        )

    def notices(self) -> list[Notice]:
        return []

    def close(self) -> None:
        self._reader.close()
