"""``prpt query``: stored events matching filters, oldest first."""

from __future__ import annotations

import click

from .filters import (build_filter, filter_options, include_untrusted_option, since_option, store_option,
                      until_option)
from .options import output_options, verbose_option
from .output import EventWriter
from .store_access import reading_store


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@filter_options
@since_option()
@until_option()
@click.option("--event-id", "event_ids", multiple=True, metavar="UUID", help="Only this event. Repeatable.")
@click.option("-n", "--lines", "limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Only the newest N matching events (still printed oldest first).")
@store_option
@include_untrusted_option
@output_options
@verbose_option
def command(blk, severity, sub_systems, event_types, since, until, event_ids, limit, store_spec, include_untrusted, output_format):
    """Show stored storage events, oldest first.

    \b
    Examples:
      prpt query --since -1h --severity error
      prpt query --blk /dev/sdb --event-type FS_REMOUNT_READ_ONLY -J
      prpt query --since yesterday --until today --jsonl | jq .kdev

    Filters are applied by the store itself (journal matches or SQL).
    Exit status: 0 (also when nothing matches), 1 on error.
    """
    flt = build_filter(blk, severity, sub_systems, event_types, since=since, until=until,
                       event_ids=event_ids, limit=limit)
    writer = EventWriter(output_format=output_format, flush_each=False)
    with reading_store(store_spec, include_untrusted) as store:
        for event in store.query(flt):
            writer.write(event)
        writer.flush()
