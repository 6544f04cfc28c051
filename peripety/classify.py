"""Record + rule match -> storage event.

Built for volume: ``prpt parse`` turns ~100k matched lines a second into
events, so every field is passed explicitly (no default factories) and the
caller may hand in one timestamp for records that carry no time of their own.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from json.encoder import ESCAPE as _JSON_ESCAPE
from json.encoder import encode_basestring as _json_str

from .event import BlkInfo, Severity, StorageEvent, local_hostname, new_event_id, now
from .event_json import FreshLayout, _timestamp_json, fresh_event_json
from .sources.kmsg.clock import kernel_usec_to_wallclock
from .record import LogRecord
from .rules import Match


def record_time(
    record: LogRecord, default: _dt.datetime | None = None, boot_time: _dt.datetime | None = None
) -> _dt.datetime:
    """When the record was logged: its wall clock; for a live kmsg record of
    this boot its kernel time converted; for a saved one with ``boot_time``
    (when its system booted) that plus its kernel time; else ``default`` (or now)."""
    if record.wallclock is not None:
        return record.wallclock
    if record.kernel_usec is not None:
        if record.source == "kmsg":
            return kernel_usec_to_wallclock(record.kernel_usec)
        if boot_time is not None:
            return boot_time + _dt.timedelta(microseconds=record.kernel_usec)
    return default if default is not None else now()


@dataclass(frozen=True)
class DeviceAtEvent:
    """The device an event is about, as it was at the event's kernel time:
    what goes into the event's device fields when it is made."""

    kdev: str
    dev_num: str = ""
    cur_blk_info: BlkInfo | None = None
    hierarchy_blk_info: tuple | list = ()
    mount_point: str | None = None
    """For a file-system event: where it was mounted (``extension.mount_point``)."""


def event_from_match(
    record: LogRecord,
    match: Match,
    hostname: str | None = None,
    default_time: _dt.datetime | None = None,
    boot_time: _dt.datetime | None = None,
    *,
    device: DeviceAtEvent | None = None,
    event_id: str | None = None,
    origin_seq: int | None = None,
) -> StorageEvent:
    """The event a matched record stands for, made once: the host is the
    one the record names, else ``hostname``, else this one; with ``device``
    (else the match's device name, unresolved), ``event_id`` (else a random
    one) and, in the daemon, the record's kmsg seq."""
    extension = {**match.extension, **record.sender} if record.sender else dict(match.extension)
    if device is None:
        kdev, dev_num, info, hierarchy = match.kdev, "", None, []
    else:
        kdev, dev_num, info, hierarchy = device.kdev, device.dev_num, device.cur_blk_info, list(device.hierarchy_blk_info)
        if device.mount_point and "mount_point" not in extension:
            extension["mount_point"] = device.mount_point
    return StorageEvent(
        event_type=match.event_type,
        sub_system=match.sub_system,
        severity=match.severity,
        kdev=kdev,
        msg=match.message() or record.text,
        raw_msg=record.text,
        timestamp=record_time(record, default_time, boot_time),
        kernel_usec=record.kernel_usec,
        hostname=record.hostname or hostname or local_hostname(),
        event_id=event_id or new_event_id(),
        dev_num=dev_num,
        cur_blk_info=info,
        hierarchy_blk_info=hierarchy,
        extension=extension,
        sources=[record.source],
        root_cause_event_id=None,
        count=1,
        last_timestamp=None,
        origin_seq=origin_seq,
        clockless=record.wallclock is None and (
            record.kernel_usec is None or (record.source != "kmsg" and boot_time is None)),
    )


# A saved log's kernel lines may carry no wall-clock time (dmesg, short-
# monotonic): unless the boot time is given, their events get the time they
# were parsed, re-read every so many events for long-running pipes; their
# kernel time stays in kernel_usec.
_CLOCK_EVERY = 4096


def events_from_matches(pairs, hostname: str | None = None, boot_time: _dt.datetime | None = None):
    """Events for ``(record, match)`` pairs, e.g. from ``LogFile.matches``."""
    hostname = hostname or local_hostname()
    default_time = now()
    for n, (record, match) in enumerate(pairs, 1):
        if n % _CLOCK_EVERY == 0:
            default_time = now()
        yield event_from_match(record, match, hostname, default_time, boot_time)


def json_lines_from_matches(pairs, hostname: str | None = None, boot_time: _dt.datetime | None = None):
    """``event.to_json()`` of each event ``events_from_matches`` would yield,
    without building the events: the ``prpt parse --jsonl`` path, where the
    event is only ever written out. Byte-identical (tests check).

    Each (rule, extension keys) gets a ``FreshLayout`` once: the JSON with
    all the rule fixes written in, and its message as one %-format; a line
    then costs one escape search and two % operations. Lines with text
    to escape, or a message the layout cannot render, take
    ``fresh_event_json`` and ``Match.message``."""
    host_json = _json_str(hostname or local_hostname())
    default_time = now()
    severity_names = {s: s.name for s in Severity}  # Enum.name is a slow property
    encoded: dict[str, str] = {}  # sub-systems, event types, sources: a few dozen strings
    layouts: dict[tuple, FreshLayout] = {}
    new_id = new_event_id
    # The output zone (--utc) is set before the first line is read: a time
    # object seen last renders the same.
    last_time, last_time_json = None, ""

    def enc(value: str) -> str:
        text = encoded.get(value)
        if text is None:
            if len(encoded) > 10_000:  # host names from a file: keep it bounded
                encoded.clear()
            text = encoded[value] = _json_str(value)
        return text

    for n, (record, match) in enumerate(pairs, 1):
        if n % _CLOCK_EVERY == 0:
            default_time = now()
        text = record.text
        host = record.hostname
        timestamp = record.wallclock
        if timestamp is None:  # (record_time, inlined for a saved log's lines)
            timestamp = default_time if boot_time is None and record.source != "kmsg" else \
                record_time(record, default_time, boot_time)
        if timestamp is not last_time:  # lines of one stretch share one time object
            last_time, last_time_json = timestamp, _timestamp_json(timestamp)
        extension = match.extension
        values = tuple(extension.values())
        kdev = match.kdev
        key = (id(match.rule), *extension)
        layout = layouts.get(key)
        if layout is None:
            if len(layouts) > 10_000:
                layouts.clear()
            rule = match.rule
            # (the layout holds the rule: its id is not reused while the key lives)
            layout = layouts[key] = FreshLayout(rule, tuple(extension), enc(rule.sub_system), enc(rule.event_type))
        if layout.generic:
            msg = text
        elif layout.message is not None:
            args = layout.pick((*values, kdev))
            msg = layout.message % args if "" not in args else (match.message() or text)
        else:
            msg = match.message() or text
        usec = record.kernel_usec
        joined = "".join((text, msg, kdev, *values))
        # No JSON escape needed? Printable text without quote or backslash
        # never needs one (isprintable is a C loop, several times faster than
        # encode_basestring's ESCAPE regex, which decides other text).
        if (joined.isprintable() and '"' not in joined and "\\" not in joined) or _JSON_ESCAPE.search(joined) is None:
            yield layout.json % (
                host_json if host is None else enc(host), severity_names[match.severity],
                last_time_json, "null" if usec is None else usec, new_id(), kdev, msg, text,
                *values, encoded.get(record.source) or enc(record.source))
            continue
        yield fresh_event_json(
            host_json if host is None else enc(host), severity_names[match.severity], enc(match.sub_system),
            timestamp, enc(match.event_type), kdev, msg, text, extension, enc(record.source), usec,
        ) + "\n"
