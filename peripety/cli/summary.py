"""``prpt summary``: stored events counted per host, device and event type."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging

import click

from ..errors import PeripetyError
from ..event import Severity, StorageEvent, format_timestamp, local_hostname
from ..timespec import human_time
from .filters import (build_filter, resolve_event_types, check_time_range, filter_options, include_untrusted_option,
                      journal_files_options, since_option, store_option, store_to_read, until_option)
from .options import OUTPUT_JSON, OUTPUT_JSONL, output_options, utc_option, verbose_option
from .store_access import reading_store, reads_journal_files

log = logging.getLogger("peripety.cli.summary")

NAME_FROM_DEVICE = "device"
"""The row's kdev, path and mount point are the device's now (resolved on this host)."""
NAME_FROM_EVENT = "event"
"""They are those of the row's newest event (the device is gone, or on another host)."""


@dataclasses.dataclass
class SummaryRow:
    """One (host, device, event type): the JSON object ``-J``/``--jsonl``
    print, field for field (see ``to_dict``)."""

    hostname: str
    wwid: str
    event_type: str
    sub_system: str
    kdev: str
    blk_path: str
    mount_point: str | None
    worst_severity: Severity
    first_seen: _dt.datetime
    last_seen: _dt.datetime
    count: int = 0
    """Occurrences: a storm's aggregate adds its ``count``."""
    events: int = 0
    """Stored events (a storm's aggregate is one)."""
    untrusted_events: int = 0
    """Of those, how many --include-untrusted let in."""
    name_from: str = NAME_FROM_EVENT
    _newest: _dt.datetime | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "hostname": self.hostname,
            "wwid": self.wwid,
            "kdev": self.kdev,
            "blk_path": self.blk_path,
            "mount_point": self.mount_point,
            "name_from": self.name_from,
            "event_type": self.event_type,
            "sub_system": self.sub_system,
            "count": self.count,
            "events": self.events,
            "untrusted_events": self.untrusted_events,
            "worst_severity": self.worst_severity.name,
            "first_seen": format_timestamp(self.first_seen),
            "last_seen": format_timestamp(self.last_seen),
        }


def device_key(event: StorageEvent) -> str:
    """Events are grouped by the device's WWID; one without (no udev
    information) by its kernel name."""
    info = event.cur_blk_info
    return info.wwid if info is not None and info.wwid else f"kdev:{event.kdev}"


def summarize(events) -> list[SummaryRow]:
    """One row per (hostname, device, event type), worst severity first,
    then most occurrences, then by host, device and type."""
    rows: dict[tuple[str, str, str], SummaryRow] = {}
    for event in events:
        key = (event.hostname, device_key(event), event.event_type)
        last = event.last_timestamp or event.timestamp
        row = rows.get(key)
        if row is None:
            row = rows[key] = SummaryRow(
                hostname=event.hostname, wwid=event.cur_blk_info.wwid if event.cur_blk_info else "",
                event_type=event.event_type, sub_system=event.sub_system, kdev="", blk_path="",
                mount_point=None, worst_severity=event.severity, first_seen=event.timestamp, last_seen=last)
        row.count += max(event.count, 1)
        row.events += 1
        row.untrusted_events += event.untrusted_writer is not None
        row.worst_severity = min(row.worst_severity, event.severity)
        row.first_seen = min(row.first_seen, event.timestamp)
        row.last_seen = max(row.last_seen, last)
        if row._newest is None or event.timestamp >= row._newest:
            row._newest = event.timestamp
            _name_from_event(row, event)
    return sorted(rows.values(), key=lambda r: (r.worst_severity, -r.count, r.hostname, r.wwid or r.kdev,
                                                r.event_type))


def _name_from_event(row: SummaryRow, event: StorageEvent) -> None:
    info = event.cur_blk_info
    row.kdev = event.kdev
    row.blk_path = (info.preferred_blk_path or info.blk_path) if info else ""
    row.mount_point = (info.mount_point if info else None) or event.extension.get("mount_point") or None


def name_devices_now(rows: list[SummaryRow], hostname: str) -> None:
    """Give this host's rows the name and mount point their WWID has now,
    where the device is present (udev and sysfs only, no I/O to it)."""
    from ..devices import resolve  # late: pyudev

    found: dict[str, object] = {}
    for row in rows:
        if row.hostname != hostname or not row.wwid:
            continue
        if row.wwid not in found:
            try:
                found[row.wwid] = resolve(row.wwid)
            except PeripetyError as exc:
                log.debug("%s: %s; named as in its newest event", row.wwid, exc)
                found[row.wwid] = None
        info = found[row.wwid]
        if info is None:
            continue
        row.kdev = info.blk_path.rsplit("/", 1)[-1] if info.blk_path else row.kdev
        row.blk_path = info.preferred_blk_path or info.blk_path or row.blk_path
        row.mount_point = info.mount_point
        row.name_from = NAME_FROM_DEVICE


COLUMN_GAP = 3
"""Rich's SIMPLE_HEAD box with the default padding puts 3 cells between columns."""


def render_table(rows: list[SummaryRow], show_host: bool, width: int, now: _dt.datetime | None = None):
    """The summary as a Rich table that fits ``width``: one line per row
    when the widest cells fit, else the same cells stacked in fewer columns
    (host, device, WWID and mount point in one; first and last seen in
    another), so nothing is cut."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    cells = [_cells(row, show_host, now) for row in rows]
    headers = (["HOST"] if show_host else []) + ["DEVICE", "MOUNT", "EVENT TYPE", "COUNT", "WORST",
                                                  "FIRST SEEN", "LAST SEEN", "WWID"]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(headers)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, caption_justify="left")
    if sum(widths) + COLUMN_GAP * (len(widths) - 1) <= width:
        for header in headers:
            table.add_column(header, justify="right" if header == "COUNT" else "left", no_wrap=True)
        for row_cells in cells:
            table.add_row(*row_cells)
    else:
        table.add_column("HOST / DEVICE / WWID / MOUNT" if show_host else "DEVICE / WWID / MOUNT",
                         overflow="fold", ratio=1)
        table.add_column("EVENT TYPE / WORST", no_wrap=True)  # what a row is about: never cut
        table.add_column("COUNT", justify="right", no_wrap=True)
        table.add_column("FIRST / LAST SEEN", overflow="fold", min_width=10)
        offset = 1 if show_host else 0
        for row_cells in cells:
            host, (device, mount, event_type, count, worst, first, last, wwid) = \
                row_cells[:offset], row_cells[offset:]
            where = Text("\n".join(host + [device]))
            for extra in (wwid, mount):
                if extra and extra != "-":
                    where.append("\n" + extra, style="dim")
            table.add_row(where, f"{event_type}\n{worst}", count, f"{first}\n{last}")
    total = sum(r.count for r in rows)
    table.caption = (f"{total} occurrence{'s' * (total != 1)} in {sum(r.events for r in rows)} stored events, "
                     f"{len({(r.hostname, r.wwid or r.kdev) for r in rows})} devices")
    return table


def _cells(row: SummaryRow, show_host: bool, now: _dt.datetime | None) -> list[str]:
    event_type = row.event_type + (f" ({row.untrusted_events} UNTRUSTED)" if row.untrusted_events else "")
    return ([row.hostname or "-"] if show_host else []) + [
        row.blk_path or row.kdev or "-", row.mount_point or "", event_type, str(row.count),
        row.worst_severity.name, _seconds(row.first_seen, now), _seconds(row.last_seen, now), row.wwid or "-"]


def _seconds(ts: _dt.datetime, now: _dt.datetime | None) -> str:
    """human_time without the milliseconds: a summary spans hours or days."""
    return human_time(ts, now).rsplit(".", 1)[0]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@filter_options
@since_option()
@until_option()
@store_option
@journal_files_options
@include_untrusted_option
@click.option("--no-resolve", is_flag=True,
              help="Name each device as its newest event did, without looking up its current name and mount "
              "point on this host.")
@output_options
@utc_option
@verbose_option
@click.pass_context
def command(ctx, blk, severity, sub_systems, event_types, since, until, store_spec, directory, files, hosts,
            include_untrusted, no_resolve, output_format):
    """Count stored events per device and event type: how often (a storm's
    aggregate counts every occurrence it stands for), the worst severity,
    and when first and last seen.

    \b
    Examples:
      prpt summary --since -1d
      prpt summary --severity error --jsonl | jq -r 'select(.count > 100) | .wwid'
      prpt summary -D /var/log/journal/remote --host db01

    A device is its WWID (events without one are grouped by kernel name),
    per host. Its name (DEVICE) and MOUNT are the ones it has now on this
    host, where it is present; else (gone, another host's, --no-resolve,
    journal files) those of its newest event: JSON says which in
    name_from ("device" or "event").

    Rows: worst severity first, then most occurrences. Text is a table that
    fits the terminal (or $COLUMNS), with a host column when the events
    come from journal files (--directory, --file) or more than one host.

    \b
    JSON fields (-J, --jsonl; one object per row): hostname, wwid, kdev,
    blk_path, mount_point, name_from, event_type, sub_system, count (occurrences),
    events (stored events), untrusted_events, worst_severity, first_seen and
    last_seen (RFC 3339; a storm's last occurrence counts).

    Exit status: 0 (also when nothing matches), 1 on error, 2 on a usage
    error.
    """
    check_time_range(ctx, since, until)
    source = store_to_read(ctx, store_spec, directory, files)
    flt = build_filter(blk, severity, sub_systems, event_types, since=since, until=until, hosts=hosts)
    with reading_store(source, include_untrusted) as store:
        flt = resolve_event_types(ctx, store, flt)
        rows = summarize(store.query(flt))
        offline = reads_journal_files(store)
        if not (offline or no_resolve):
            name_devices_now(rows, local_hostname())
        if output_format == OUTPUT_JSONL:
            for row in rows:
                click.echo(json.dumps(row.to_dict(), ensure_ascii=False))
        elif output_format == OUTPUT_JSON and rows:
            click.echo("\n\n".join(json.dumps(row.to_dict(), indent=2, ensure_ascii=False) for row in rows))
        elif output_format not in (OUTPUT_JSON, OUTPUT_JSONL):
            from rich.console import Console

            console = Console(highlight=False, emoji=False)
            show_host = offline or len({r.hostname for r in rows}) > 1
            console.print(render_table(rows, show_host, console.width))
