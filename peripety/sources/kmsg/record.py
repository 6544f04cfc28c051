"""One ``/dev/kmsg`` record, parsed into a :class:`~peripety.record.LogRecord`.

A record is ``prio,seq,usec,flags[,caller=T123];text`` followed by optional
dictionary lines `` KEY=VALUE`` (``SUBSYSTEM=``, ``DEVICE=``). The kernel
escapes every byte below 0x20, above 0x7e and the backslash itself as
``\\xNN``, so UTF-8 text arrives byte by byte and is reassembled here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ...record import KERNEL_FACILITY, LogRecord

log = logging.getLogger("peripety.kmsg")

_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")

FIELD_FLAGS = "KMSG_FLAGS"
"""``LogRecord.fields`` key: kmsg flags when not ``-`` (``c`` fragment, ``+`` continuation)."""
FIELD_CALLER = "CALLER"
"""``LogRecord.fields`` key: the ``caller=`` value (``T123`` task or ``C1`` CPU)."""


@dataclass
class KmsgStats:
    """What a kmsg parser or reader has seen; malformed records are counted, never raised."""

    records: int = 0
    malformed: int = 0
    missed: int = 0
    """Records the kernel overwrote before we read them (seq gaps)."""


def decode_escapes(text: str) -> str:
    """Undo the kernel's ``\\xNN`` escaping; invalid UTF-8 becomes U+FFFD."""
    if "\\x" not in text:
        return text
    raw = text.encode("utf-8", "surrogateescape")
    return _ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), raw).decode("utf-8", "replace")


def parse_record(raw: bytes | str, stats: KmsgStats | None = None, source: str = "kmsg") -> LogRecord | None:
    """Parse one record; return None (and count it) when it is malformed."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    record = _parse(raw, source)
    if stats is not None:
        if record is None:
            stats.malformed += 1
        else:
            stats.records += 1
    if record is None:
        log.debug("malformed kmsg record skipped: %r", raw[:120])
    return record


def _parse(raw: str, source: str) -> LogRecord | None:
    head, _, dictionary = raw.rstrip("\n").partition("\n")
    prefix, sep, text = head.partition(";")
    if not sep:
        return None
    parts = prefix.split(",")
    if len(parts) < 4:
        return None
    try:
        prio, seq, usec = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if prio < 0 or seq < 0 or usec < 0:
        return None
    facility = prio >> 3
    fields: dict[str, str] = {}
    if parts[3] not in ("-", ""):
        fields[FIELD_FLAGS] = parts[3]
    for extra in parts[4:]:
        if extra.startswith("caller="):
            fields[FIELD_CALLER] = extra[7:]
    record = LogRecord(
        text=decode_escapes(text),
        source=source,
        trusted_kernel=facility == KERNEL_FACILITY,
        kernel_usec=usec,
        seq=seq,
        level=prio & 7,
        facility=facility,
        fields=fields,
    )
    if dictionary and not _read_dictionary(dictionary, record):
        return None
    return record


def _read_dictionary(dictionary: str, record: LogRecord) -> bool:
    for line in dictionary.split("\n"):
        if not line:
            continue
        key, sep, value = line[1:].partition("=")
        if line[0] != " " or not sep or not key:
            return False
        value = decode_escapes(value)
        if key == "SUBSYSTEM":
            record.subsystem = value
        elif key == "DEVICE":
            record.device = value
        else:
            record.fields[key] = value
    return True
