"""Line formats of saved logs: how to find the message text, its time and its host in a line.

Each format turns one line (kmsg: one record with its dictionary lines) into
a :class:`~peripety.record.LogRecord`, or None when the line is not in that
format. ``lead`` is a regex fragment that always directly precedes the
message text in a line of this format: the file reader searches a whole
chunk for ``lead + rule prefix`` and only parses the lines found.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass
from typing import Callable

from .kmsg.record import parse_record
from ..record import KERNEL_FACILITY, LogRecord

SOURCE = "file"

# dmesg:  "[  123.456789] text", "[Tue Nov 25 03:44:01 2025] text" (-T),
# "2025-11-25T03:44:01,123456+00:00 text" (--time-format iso), "text";
# with CONFIG_PRINTK_CALLER dmesg adds "[  T123] " after the stamp.
_DMESG_STAMP = re.compile(r"\[ *(\d+)\.(\d+)\] (?:\[ *[TC]\d+\] )?")
_DMESG_CTIME = re.compile(r"\[([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\] (?:\[ *[TC]\d+\] )?")
_DMESG_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:,\d+)?[+-]\d\d:?\d\d) (?:\[ *[TC]\d+\] )?")
# dmesg -r:  "<3>[  123.456789] text" or "<3>text" (printk.time=0)
_DMESG_RAW = re.compile(r"<(\d+)>(?:\[ *(\d+)\.(\d+)\] )?(?:\[ *[TC]\d+\] )?")
# /dev/kmsg: "3,123,456789,-;text" (dictionary lines follow, indented by one space)
_KMSG_HEAD = re.compile(r"\d+,\d+,\d+,[^;\n]*;")
# syslog / journalctl short, short-precise, short-iso[-precise], short-full,
# short-monotonic; RFC 3339 (rsyslog). The host is the logging host.
_SYSLOG = re.compile(
    r"(?:(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r"|(?P<full>[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? (?:[A-Za-z]\w*|[+-]\d\d(?:\d\d)?))"
    r"|\[ *(?P<mono_s>\d+)\.(?P<mono_f>\d+)\])"
    r" (?P<host>\S+) (?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: ?(?P<text>.*)",
    re.DOTALL,  # journalctl prints a multi-line message's other lines indented
)
# A dmesg line can look like "[stamp] word word: text" too; journalctl -o
# short-monotonic is told apart by its program field: "kernel:" or "name[pid]:".
_SYSLOG_MONOTONIC = re.compile(r"\[ *\d+\.\d+\] \S+ (?:kernel|[^\s\[:]+\[\d+\]): ")
_KERNEL_STAMP = re.compile(r"\[ *(\d+)\.(\d+)\] ")


def _usec(seconds: str, fraction: str) -> int:
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])


def _join_continuation(text: str) -> str:
    """dmesg prints a message's embedded newlines as indented lines."""
    if "\n" not in text:
        return text
    first, *rest = text.split("\n")
    return "\n".join([first] + [l.lstrip(" ") for l in rest])


def parse_dmesg(line: str) -> LogRecord:
    """Every line is a kernel message, stamped or not."""
    line = _join_continuation(line)
    m = _DMESG_STAMP.match(line)
    if m:
        return LogRecord(line[m.end():], SOURCE, kernel_usec=_usec(m.group(1), m.group(2)))
    m = _DMESG_CTIME.match(line)
    if m:
        return LogRecord(line[m.end():], SOURCE, wallclock=_ctime(m.group(1)))
    if line[:1].isdigit():
        m = _DMESG_ISO.match(line)
        if m:
            try:
                wall = _dt.datetime.fromisoformat(m.group(1))
            except ValueError:
                wall = None
            return LogRecord(line[m.end():], SOURCE, wallclock=wall)
    return LogRecord(line, SOURCE)


def parse_kmsg(block: str) -> LogRecord | None:
    """``dmesg -r`` lines and /dev/kmsg records; facility decides trust."""
    if block.startswith("<"):
        m = _DMESG_RAW.match(block)
        if not m:
            return None
        prio = int(m.group(1))
        usec = _usec(m.group(2), m.group(3)) if m.group(2) else None
        return LogRecord(
            _join_continuation(block[m.end():]),
            SOURCE,
            trusted_kernel=prio >> 3 == KERNEL_FACILITY,
            kernel_usec=usec,
            level=prio & 7,
            facility=prio >> 3,
        )
    return _parse_plain_kmsg(block) or parse_record(block, source=SOURCE)


def _parse_plain_kmsg(block: str) -> LogRecord | None:
    """The usual kmsg record (``prio,seq,usec,-;text``: no flags, caller,
    dictionary or escapes) read in a few string operations, as
    ``parse_record`` reads it; None for any other shape, which it then reads.
    A large saved log spends much of its time here."""
    prefix, sep, text = block.partition(";")
    parts = prefix.split(",")
    if (
        len(parts) != 4 or parts[3] != "-" or "\n" in text or "\\x" in text
        or not (parts[0].isdigit() and parts[1].isdigit() and parts[2].isdigit())
    ):
        return None
    prio = int(parts[0])
    return LogRecord(
        text, SOURCE, trusted_kernel=prio >> 3 == KERNEL_FACILITY, kernel_usec=int(parts[2]),
        seq=int(parts[1]), level=prio & 7, facility=prio >> 3,
    )


def parse_syslog(line: str) -> LogRecord | None:
    m = _SYSLOG.match(_join_continuation(line))
    if not m:
        return None
    text, prog, host = m.group("text"), m.group("prog"), m.group("host")
    usec = None
    if m.group("ts") is not None:
        wall = _syslog_time(m.group("ts"))
    elif m.group("full") is not None:
        wall = _full_time(m.group("full"))
    else:  # journalctl -o short-monotonic: the boot's clock only
        wall = None
        usec = _usec(m.group("mono_s"), m.group("mono_f"))
    # The kernel has no pid: "kernel[123]:" is a program that named itself kernel.
    if prog != "kernel" or m.group("pid") is not None:
        return LogRecord(text, SOURCE, trusted_kernel=False, kernel_usec=usec, wallclock=wall,
                         identifier=prog, hostname=host)
    stamp = _KERNEL_STAMP.match(text)
    if stamp:
        usec = _usec(stamp.group(1), stamp.group(2))
        text = text[stamp.end():]
    return LogRecord(text, SOURCE, kernel_usec=usec, wallclock=wall, facility=KERNEL_FACILITY,
                     hostname=host)


def _full_time(text: str) -> _dt.datetime | None:
    """journalctl -o short-full: "Tue 2025-11-25 03:44:01 UTC" (the zone is
    an abbreviation: only UTC/GMT and this system's own are unambiguous)."""
    stamp, _, zone = text[4:].rpartition(" ")
    try:
        ts = _dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if zone in ("UTC", "GMT", "Z"):
        return ts.replace(tzinfo=_dt.timezone.utc)
    if zone[0] in "+-":  # a zone with no abbreviation: "+05", "-0330"
        minutes = int(zone[1:3]) * 60 + int(zone[3:5] or 0)
        return ts.replace(tzinfo=_dt.timezone(_dt.timedelta(minutes=-minutes if zone[0] == "-" else minutes)))
    local = ts.astimezone()
    return local if local.tzname() == zone else None


_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                         "Nov", "Dec"), 1)}
_last_stamp: tuple[str, _dt.datetime | None] = ("", None)
"""The last stamp read and its time: a log's lines share their second."""


def _syslog_time(text: str) -> _dt.datetime | None:
    global _last_stamp
    if text == _last_stamp[0]:
        return _last_stamp[1]
    ts = _iso_time(text) if text[0].isdigit() else _bsd_time(text)
    _last_stamp = (text, ts)
    return ts


def _ctime(text: str) -> _dt.datetime | None:
    """dmesg -T: "Tue Nov 25 03:44:01 2025", local time."""
    global _last_stamp
    if text == _last_stamp[0]:
        return _last_stamp[1]
    try:
        ts = _dt.datetime(int(text[20:24]), _MONTHS[text[4:7]], int(text[8:10]), int(text[11:13]),
                          int(text[14:16]), int(text[17:19])).astimezone()
    except (KeyError, ValueError):
        ts = None
    _last_stamp = (text, ts)
    return ts


def _iso_time(text: str) -> _dt.datetime | None:
    try:
        ts = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.astimezone()


def _bsd_time(text: str) -> _dt.datetime | None:
    """"Nov 25 03:44:01[.123456]", local time. BSD syslog has no year: take
    the latest year that does not put the line in the future."""
    try:
        month = _MONTHS[text[:3]]
        day, hour, minute, second = int(text[4:6]), int(text[7:9]), int(text[10:12]), int(text[13:15])
        micro = int((text[16:] + "000000")[:6]) if len(text) > 16 else 0
        today = _dt.datetime.now()
        ts = _dt.datetime(today.year, month, day, hour, minute, second, micro)
        if ts > today + _dt.timedelta(days=1):
            ts = ts.replace(year=today.year - 1)
    except (KeyError, ValueError):  # Feb 29 outside a leap year
        return None
    return ts.astimezone()


def parse_journal_json(line: str) -> LogRecord | None:
    """One ``journalctl -o json`` entry. Only ``_TRANSPORT=kernel`` with
    facility 0 is the kernel: ``SYSLOG_IDENTIFIER=kernel`` can be set by
    anyone (logger -t), and journald files a user's write to /dev/kmsg under
    ``_TRANSPORT=kernel`` too, with ``SYSLOG_FACILITY=1``."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    text = _journal_text(entry.get("MESSAGE"))
    if text is None:
        return None
    # When the sender logged it where journald kept that, else when journald
    # got it: the time journalctl itself shows.
    wall = None
    realtime = _digits(entry.get("_SOURCE_REALTIME_TIMESTAMP")) or _digits(entry.get("__REALTIME_TIMESTAMP"))
    if realtime is not None:
        wall = _dt.datetime.fromtimestamp(realtime // 1_000_000, _dt.timezone.utc).replace(
            microsecond=realtime % 1_000_000)
    host = _journal_text(entry.get("_HOSTNAME"))
    # The kernel's own stamp where journald kept it, else when journald got
    # the entry: both on the boot's monotonic clock.
    usec = _digits(entry.get("_SOURCE_MONOTONIC_TIMESTAMP")) or _digits(entry.get("__MONOTONIC_TIMESTAMP"))
    level = _digits(entry.get("PRIORITY"))  # the kernel's log level: generic events take their severity from it
    if entry.get("_TRANSPORT") == "kernel" and entry.get("SYSLOG_FACILITY", "0") == "0":
        return LogRecord(
            text,
            SOURCE,
            kernel_usec=usec,
            wallclock=wall,
            facility=KERNEL_FACILITY,
            subsystem=_journal_text(entry.get("_KERNEL_SUBSYSTEM")),
            device=_journal_text(entry.get("_KERNEL_DEVICE")),
            hostname=host,
            level=level,
        )
    ident = _journal_text(entry.get("SYSLOG_IDENTIFIER")) or _journal_text(entry.get("_COMM"))
    return LogRecord(
        text,
        SOURCE,
        trusted_kernel=False,
        kernel_usec=usec,
        wallclock=wall,
        identifier=ident,
        facility=_digits(entry.get("SYSLOG_FACILITY")),
        hostname=host,
        level=level,
    )


def _digits(value) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _journal_text(value) -> str | None:
    """journalctl writes non-UTF-8 or binary fields as an array of byte values."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", "replace").rstrip("\n")
    return None


@dataclass(frozen=True)
class LogFormat:
    name: str
    parse: Callable[[str], LogRecord | None]
    looks_like: Callable[[str], bool]
    """True when a line is typical of this format (for ``--format auto``)."""
    multiline: bool = False
    """Lines starting with a space continue the previous record (kmsg
    dictionary lines, dmesg's indented lines of a multi-line message)."""


def iso_stamped(line: str) -> bool:
    """Is this a ``dmesg --time-format iso`` line?"""
    return bool(_DMESG_ISO.match(line))


def _looks_like_dmesg(line: str) -> bool:
    return bool(_DMESG_STAMP.match(line) or _DMESG_CTIME.match(line) or _DMESG_ISO.match(line))


def _looks_like_kmsg(line: str) -> bool:
    return bool(_KMSG_HEAD.match(line) or (line.startswith("<") and _DMESG_RAW.match(line)))


def _looks_like_json(line: str) -> bool:
    return line.startswith("{") and '"MESSAGE"' in line


def _looks_like_syslog(line: str) -> bool:
    if line.startswith("["):
        return bool(_SYSLOG_MONOTONIC.match(line))
    return bool(_SYSLOG.match(line))


# "[stamp] HOST PROGRAM[PID]: " of journalctl -o short-monotonic, PID optional.
_MONOTONIC_SHAPE = re.compile(r"\[ *\d+\.\d+\] (\S+) [^\s\[:]+(?:\[\d+\])?: ")


def _monotonic_journal(lines: list[str]) -> bool:
    """Is this ``journalctl -o short-monotonic`` rather than dmesg?

    Both start with a kernel stamp. A journal line has the host, then a
    program: the kernel's lines say "kernel:", user space's "name[pid]:" -
    or, for a writer journald could not name, "unknown:", which reads just
    like dmesg's "[stamp] usb 1-1: ...". So it is a vote over every line
    given (the head of the file): at least one line names the kernel or a
    pid, nine in ten stamped lines have the journal's shape, and they all
    name the same host (dmesg's second word is the driver, which varies)."""
    stamped = [l for l in lines if l.startswith("[")]
    if not any(_SYSLOG_MONOTONIC.match(l) for l in stamped):
        return False
    hosts = [m.group(1) for m in map(_MONOTONIC_SHAPE.match, stamped) if m]
    return len(hosts) * 10 >= len(stamped) * 9 and len(set(hosts)) == 1


# Order matters for detection: the most specific shapes first, dmesg without
# stamps (any text at all) never auto-detected.
FORMATS: dict[str, LogFormat] = {
    "journal-json": LogFormat("journal-json", parse_journal_json, _looks_like_json),
    "kmsg": LogFormat("kmsg", parse_kmsg, _looks_like_kmsg, multiline=True),
    "syslog": LogFormat("syslog", parse_syslog, _looks_like_syslog, multiline=True),
    "dmesg": LogFormat("dmesg", parse_dmesg, _looks_like_dmesg, multiline=True),
}

FORMAT_NAMES = tuple(sorted(FORMATS))


FORMAT_SHAPES = {
    "dmesg": "dmesg, dmesg -T, dmesg --time-format iso",
    "kmsg": "dmesg -r, /dev/kmsg records",
    "syslog": "/var/log/messages, kern.log, journalctl -o short, short-precise, short-iso, "
              "short-full, short-monotonic",
    "journal-json": "journalctl -o json",
}


def format_list() -> str:
    """The formats known, for messages about input that fits none."""
    return "Formats known: " + "; ".join(f"{n} ({FORMAT_SHAPES[n]})" for n in FORMAT_NAMES) + \
        "; gzip, xz or bzip2 compressed alike."


def detect_format(lines: list[str]) -> str | None:
    """The format most of the first non-empty lines fit, or None.
    ``journalctl -o short-monotonic`` is decided over all ``lines`` first
    (see ``_monotonic_journal``)."""
    sample = [l for l in lines if l.strip() and not l.startswith("-- ")][:20]
    if not sample:
        return None
    if sample[0].startswith("[") and _monotonic_journal(lines):
        return "syslog"
    for fmt in FORMATS.values():
        fits = sum(1 for l in sample if fmt.looks_like(l) or (fmt.multiline and l.startswith(" ")))
        if fits * 2 > len(sample):
            return fmt.name
    return None
