"""``prpt monitor``: follow new events as peripetyd stores them."""

from __future__ import annotations

import logging
import select
import signal

import click

from .filters import (build_filter, filter_options, include_untrusted_option, journal_files_options,
                      resolve_event_types, source_options, store_option)
from .options import output_options, utc_option, verbose_option
from .output import EventWriter
from .store_access import follow_from, reading_store, reads_journal_files

log = logging.getLogger("peripety.cli.monitor")


class _Stop(BaseException):
    """SIGTERM, raised wherever the main thread is: a BaseException, as
    KeyboardInterrupt is, so no ``except Exception`` on the way (logging's
    own, while a line is written) swallows it and leaves monitor running."""


def _raise_stop(signum, frame):
    raise _Stop()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@filter_options
@store_option
@journal_files_options
@include_untrusted_option
@source_options
@output_options
@utc_option
@verbose_option
@click.pass_context
def command(ctx, blk, severity, sub_systems, event_types, store_spec, directory, files, hosts, include_untrusted,
            source, varlink_socket, output_format):
    """Follow new storage events until interrupted (Ctrl-C).

    \b
    Examples:
      prpt monitor -J
      prpt monitor --severity error --jsonl | jq -c '{kdev, event_type}'
      prpt monitor -D /var/log/journal/remote --host db01

    -J and --jsonl write each event at once, so pipes see it immediately.

    Source: where the local peripetyd serves Varlink (its default) and you may
    connect (root, or peripetyd --varlink-group), events come from its
    Monitor stream as soon as it stored them; otherwise from the store
    (journald wakes its readers later). --source picks one. Should the
    daemon stop or restart, monitor goes on reading the store.

    Order: each batch the store hands over is written oldest first by the
    events' own time. An event that reaches the store late (a storm's summary,
    folded when the storm ends; events spooled while the store was down;
    another host's events arriving through journal-remote) is written when it
    arrives, after newer ones already shown. prpt query sorts everything.

    Hosts: following journal files (--directory, --file: what
    systemd-journal-remote writes as hosts send), text lines show each
    event's host after the time.

    Times: text shows local time (UTC with --utc), with the date when not
    today; JSON has RFC 3339 with the offset.

    Exit status: 0 when interrupted, 1 on error, 2 on a usage error (an
    unknown event type or sub-system).
    """
    flt = build_filter(blk, severity, sub_systems, event_types, hosts=hosts)
    source = follow_from(ctx, source, varlink_socket, store_spec, directory, files, include_untrusted)
    signal.signal(signal.SIGTERM, _raise_stop)
    with reading_store(source, include_untrusted) as store:
        flt = resolve_event_types(ctx, store, flt)
        writer = EventWriter(output_format=output_format, flush_each=True, show_host=reads_journal_files(store))
        follower = store.follow(flt)
        log.info("following %s events (Ctrl-C to stop)", store.name)
        try:
            _follow(follower, writer)
        except (KeyboardInterrupt, _Stop):
            pass


def _follow(follower, writer: EventWriter) -> None:
    while True:
        write_batch(follower, writer)
        fd = follower.fileno()  # may change: a Varlink follower falls back to the store
        if fd is not None:
            select.select([fd], [], [], 1.0)
        else:
            follower.wait(1.0)


def write_batch(follower, writer: EventWriter) -> int:
    """Write what the follower has now, oldest first by the events' own
    time (equal times in store order); how many were written."""
    events = sorted(follower.read(), key=lambda e: e.timestamp)
    for event in events:
        writer.write(event)
    return len(events)
