"""The journal as a source of user-space storage messages (multipathd,
iscsid, lvm/dmeventd, smartd).

Kernel messages are read from /dev/kmsg only, never here: entries with
``_TRANSPORT=kernel`` are skipped, and an entry that merely *claims* to be
the kernel (``SYSLOG_IDENTIFIER=kernel``, as ``logger -t kernel`` writes) is
a user-space record that no kernel rule ever fires on.
"""

from __future__ import annotations

import logging

from ..record import LogRecord

log = logging.getLogger("peripety.journal")

USERSPACE_IDENTIFIERS = ("multipathd", "iscsid", "lvm", "dmeventd", "lvmpolld", "smartd")


class JournalSource:
    def __init__(self, identifiers=USERSPACE_IDENTIFIERS, cursor: str = ""):
        from systemd import journal

        self._reader = journal.Reader()
        self._reader.this_boot()
        for ident in identifiers:
            self._reader.add_match(SYSLOG_IDENTIFIER=ident)
        self.cursor = ""
        if cursor:
            try:
                self._reader.seek_cursor(cursor)
                entry = self._reader.get_next()  # the entry at the cursor: already handled
                self.cursor = entry.get("__CURSOR", cursor) if entry else cursor
            except (OSError, ValueError) as exc:
                log.warning("journal cursor from the last run is unusable (%s): starting at the end", exc)
                self._seek_end()
        else:
            self._seek_end()

    def _seek_end(self):
        self._reader.seek_tail()
        self._reader.get_previous()

    def fileno(self) -> int:
        return self._reader.fileno()

    def read(self) -> list[LogRecord]:
        self._reader.process()
        records = []
        while True:
            entry = self._reader.get_next()
            if not entry:
                break
            self.cursor = entry.get("__CURSOR", self.cursor)
            if entry.get("_TRANSPORT") == "kernel":
                continue
            message = entry.get("MESSAGE")
            if isinstance(message, bytes):
                message = message.decode("utf-8", "replace")
            if not message:
                continue
            mono = entry.get("__MONOTONIC_TIMESTAMP")
            kernel_usec = None
            if mono is not None:
                delta = mono[0] if isinstance(mono, tuple) else mono
                kernel_usec = int(delta.total_seconds() * 1_000_000)
            records.append(
                LogRecord(
                    text=str(message),
                    source="journal",
                    trusted_kernel=False,
                    kernel_usec=kernel_usec,
                    wallclock=entry.get("__REALTIME_TIMESTAMP"),
                    level=entry.get("PRIORITY"),
                    identifier=entry.get("SYSLOG_IDENTIFIER"),
                )
            )
        return records

    def close(self) -> None:
        self._reader.close()
