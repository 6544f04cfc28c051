"""``prpt query``: stored events matching filters, oldest first."""

from __future__ import annotations

import contextlib
import gc
import sys

import click

from ..event import StorageEvent
from .filters import (build_filter, resolve_event_types, check_time_range, filter_options, include_untrusted_option,
                      journal_files_options, since_option, store_option, store_to_read, until_option)
from .options import OUTPUT_JSONL, output_options, utc_option, verbose_option
from .output import EventWriter
from .store_access import reading_store, reads_journal_files


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@filter_options
@since_option()
@until_option()
@click.option("--event-id", "event_ids", multiple=True, metavar="UUID", help="Only this event. Repeatable.")
@click.option("-n", "--lines", "limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only the newest N matching events (still printed oldest first).")
@store_option
@journal_files_options
@include_untrusted_option
@output_options
@utc_option
@verbose_option
@click.pass_context
def command(ctx, blk, severity, sub_systems, event_types, since, until, event_ids, limit, store_spec,
            directory, files, hosts, include_untrusted, output_format):
    """Show stored storage events, oldest first.

    \b
    Examples:
      prpt query --since -1h --severity error
      prpt query --blk /dev/sdb --event-type FS_REMOUNT_READ_ONLY -J
      prpt query --since yesterday --until today --jsonl | jq .kdev
      prpt query -D /var/log/journal/remote --host db01 --severity error
      prpt query --file 'sosreport-db01/var/log/journal/*/*.journal'

    Filters are applied by the store itself (journal matches or SQL).

    Order: events are sorted by their own time (the event's timestamp: when
    the kernel logged the line, or a storm's first occurrence), not by when
    the store received them, so an event spooled or folded late still sits
    where it happened. A journal that holds several hosts' events
    (journal-remote) is merged by those timestamps, each taken by its own
    host's clock: a host whose clock is off sorts where its clock puts it.
    Events with the same time keep the store's order. -n picks the N newest
    the store holds, then sorts them. One store is read per run:
    events kept in SQLite while no journald ran are not merged with the
    journal's; read each with --store, or merge the JSON lines yourself (sort
    on .timestamp with --utc).

    Hosts: reading journal files (--directory, --file), or events of more
    than one host, text lines show each event's host after the time.

    Times: text shows local time (UTC with --utc), with the date when not
    today; JSON has RFC 3339 with the offset. With --utc every JSON time has
    the same offset, so `jq -r .timestamp | sort -c` holds across DST changes.

    Exit status: 0 (also when nothing matches), 1 on error, 2 on a usage
    error (an unknown event type or sub-system, --since after --until).
    """
    check_time_range(ctx, since, until)
    source = store_to_read(ctx, store_spec, directory, files)
    flt = build_filter(blk, severity, sub_systems, event_types, since=since, until=until,
                       event_ids=event_ids, limit=limit, hosts=hosts)
    with reading_store(source, include_untrusted) as store, no_cyclic_gc():
        flt = resolve_event_types(ctx, store, flt)
        if output_format == OUTPUT_JSONL and hasattr(store, "query_lines"):
            # The same lines, without making events of what is already them.
            write_lines(in_time_order(store.query_lines(flt)))
            return
        events = in_time_order(store.query(flt))
        writer = EventWriter(output_format=output_format, flush_each=False,
                             show_host=reads_journal_files(store) or many_hosts(events))
        for event in events:
            writer.write(event)
        writer.flush()


@contextlib.contextmanager
def no_cyclic_gc():
    """Read without Python's cycle collector: events hold no cycles, and
    every pass over the growing list of them made decoding 2-3x slower."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def write_lines(lines, batch: int = 1024) -> None:
    """``JsonLine``s to stdout, ``batch`` to a write."""
    out = sys.stdout
    for start in range(0, len(lines), batch):
        out.write("".join([line.text + "\n" for line in lines[start:start + batch]]))
    out.flush()


def many_hosts(events) -> bool:
    return len({e.hostname for e in events}) > 1


def in_time_order(events) -> list[StorageEvent]:
    """Oldest first by the event's own time; a stable sort keeps the store's
    order among equal times. (Also for ``JsonLine``s, which have the time.)"""
    return sorted(events, key=lambda e: e.timestamp)
