"""Record + rule match -> storage event.

Built for volume: ``prpt parse`` turns ~100k matched lines a second into
events, so every field is passed explicitly (no default factories) and the
caller may hand in one timestamp for records that carry no time of their own.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from .event import BlkInfo, StorageEvent, local_hostname, new_event_id, now
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
    """``event.to_json() + "\\n"`` of each event ``events_from_matches`` would
    yield, without building the events: the ``prpt parse --jsonl`` path,
    where the event is only ever written out (``json_lines``)."""
    from .json_lines import json_lines_from_matches as lines

    return lines(pairs, hostname, boot_time)
