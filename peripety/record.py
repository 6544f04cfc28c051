"""The record every source yields: one log message with where it came from."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field

KERNEL_FACILITY = 0


@dataclass(slots=True)
class LogRecord:
    """One message from a source (``kmsg``, ``journal``, ``file``).

    ``text`` is the message as printed, without any syslog/dmesg prefix.
    ``trusted_kernel`` is True only when the record provably came from the
    kernel: kmsg facility 0, or journald ``_TRANSPORT=kernel``. Kernel rules
    fire on trusted kernel records only; a line written to /dev/kmsg by user
    space, or ``logger -t kernel``, is never a kernel event.
    """

    text: str
    source: str = "file"
    trusted_kernel: bool = True
    kernel_usec: int | None = None
    """Kernel monotonic time in microseconds (kmsg's usec field)."""
    wallclock: _dt.datetime | None = None
    seq: int | None = None
    level: int | None = None
    """Syslog level 0-7 (priority & 7)."""
    facility: int | None = None
    identifier: str | None = None
    """SYSLOG_IDENTIFIER of a user-space record (multipathd, iscsid, ...)."""
    subsystem: str | None = None
    device: str | None = None
    """kmsg dictionary DEVICE= value: b8:0, +scsi:2:0:0:0, n2, c4:64."""
    fields: dict[str, str] = field(default_factory=dict)
    """Other dictionary / journal fields worth keeping."""
    sender: dict[str, str] = field(default_factory=dict)
    """Who journald says sent a journal record (``sender_pid``, ``sender_uid``,
    ``sender_comm``, ``sender_unit``); copied into its event's extension."""
    hostname: str | None = None
    """The host that logged the line, where a saved log names it (syslog's
    host field, journal ``_HOSTNAME``); None: this host."""


def record_lines(record: LogRecord) -> list[tuple[int, LogRecord]]:
    """(line number, record) for each line of a kernel record that holds
    several: one printk call, several lines, one kmsg record (6.1's raid1
    error() prints "Disk failure on sdb, disabling device." and "Operation
    continuing on 1 devices." in one pr_crit; /dev/kmsg shows the newline as
    ``\\x0a``, dmesg as an indented line). Each line is a fact of its own
    (member failed; array degraded) with its own event type, so each is
    matched as a record; blank lines are skipped. Any other record is its
    only line, number 0. The daemon and ``prpt parse`` both split here."""
    if not (record.trusted_kernel and "\n" in record.text):
        return [(0, record)]
    return [(n, dataclasses.replace(record, text=line))
            for n, line in enumerate(record.text.split("\n")) if line.strip()]
