"""``prpt top``: a live full-screen view of storage health."""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time

import click

from ..errors import PeripetyError
from ..event import now as wall_clock
from . import filters
from .options import verbose_option


DEFAULT_HISTORY = _dt.timedelta(hours=1)
DEFAULT_WIDTH = 80


@click.command("top")
@filters.filter_options
@filters.store_option
@filters.journal_files_options
@filters.source_options
@filters.since_option(help="Seed the view with events since this time (default: the last hour).")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts); implied when stdout is not a terminal.")
@click.option("-J", "--json", "as_json", is_flag=True,
              help="With --once (implied): print the view's model (header, device rows with live state, events) as JSON.")
@click.option("--width", type=click.IntRange(40, 1000), metavar="COLUMNS",
              help="Width of the --once frame (default: the terminal's, else $COLUMNS, else 80).")
@click.option("--ascii/--no-ascii", "ascii_only", default=None,
              help="Plain ASCII (no box drawing, no Unicode symbols). Default: ASCII unless the locale is UTF-8.")
@click.option("--state/--no-state", "with_state", default=None,
              help="Read each device's live state (I/O, md, multipath, read-only filesystems). With --no-state, "
              "only devices that have events are listed. Default: --state, but --no-state with --directory or "
              "--file (the events may be other hosts').")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between live-state samples (/proc/diskstats, sysfs); --once samples twice this far apart.")
@click.option(
    "--status-file",
    type=click.Path(dir_okay=False),
    default="/run/peripety/status.json",
    show_default=True,
    help="peripetyd's status file, to show which sources are active and whether its store works.",
)
@verbose_option
@click.pass_context
def command(ctx, blk, severity, sub_systems, event_types, store_spec, directory, files, hosts, source, varlink_socket,
            since, once, as_json, width, ascii_only, with_state, interval, status_file):
    """Watch storage health live: one row per device identity (WWID), worst
    first, with its live state (I/O rate and latency, md and multipath
    state, read-only filesystems) next to its event counts, and the newest
    events.

    \b
    Keys: ?  help            q  quit
          Tab  devices/events   Up/Down PgUp/PgDn Home/End  move
          Enter  a device's events, then an event's detail
          f or /  filter (read again from the store)   Esc  back
          s  sort   n  earlier names   p  pause

    Live state is read from /proc/diskstats, /proc/self/mountinfo and sysfs
    only: top never reads from the disks themselves. Devices with no events
    are listed for their state (I/O, an md array, a multipath map, a
    problem) unless an event filter (--blk, --severity, ...) is given.

    Events come from the local peripetyd's Varlink Monitor stream where
    you may connect (root, or peripetyd --varlink-group), else from the
    store; --source picks one (see prpt monitor --help).

    Journal files (--directory, --file: a sosreport, journal-remote's
    output) are shown without this host's live device state; the header
    names the hosts whose events are shown (--host picks them), and the
    device and event lists have a Host column (shown too whenever the
    events come from more than one host). A WWID is one row whichever
    hosts saw it (a shared LUN); a device without one is a row per host.
    """
    from rich.console import Console

    from ..top.app import Refresher, render_once, run_live, seed
    from ..top.fmt import ASCII, UNICODE, locale_is_utf8
    from ..top.state import StateSampler
    from .store_access import open_store_for_reading

    from .store_access import follow_from

    offline = bool(directory or files)
    if with_state is None:
        with_state = not offline
    since = since or wall_clock() - DEFAULT_HISTORY
    flt = filters.build_filter(blk, severity, sub_systems, event_types, hosts=hosts)
    source = follow_from(ctx, source, varlink_socket, store_spec, directory, files)
    glyphs = ASCII if (ascii_only if ascii_only is not None else not locale_is_utf8()) else UNICODE
    console = Console()
    # A pipe or a file gets one plain frame, as a live screen makes no sense there.
    once = once or as_json or not console.is_terminal
    if once:
        console = Console(width=width or _terminal_width(), color_system=console.color_system,
                          force_terminal=console.is_terminal, emoji=False)
    store = open_store_for_reading(source)
    sampler = StateSampler() if with_state else None
    try:
        flt = filters.resolve_event_types(ctx, store, flt)
        model, follower = seed(store, flt, since, status_file)
        if offline:
            model.show_hosts = True
            model.hostname = hosts_label(model, hosts)
            model.store_name = "journal files " + (directory or ", ".join(source))
        model.state_only_rows = not (blk or severity or sub_systems or event_types or offline)
        try:
            if once:
                if sampler is not None:
                    sampler.sample(time.monotonic())
                    time.sleep(interval)  # rates need two samples
                    model.update_state(sampler.sample(time.monotonic()))
                if as_json:
                    click.echo(json.dumps(model.to_dict(wall_clock()), indent=2, ensure_ascii=glyphs.ascii))
                else:
                    render_once(model, console, wall_clock(), glyphs)
            else:
                refresher = Refresher(store, flt, since, sampler, interval)
                run_live(model, follower, console, status_file, stdin_fd=_stdin_fd(), refresher=refresher,
                         glyphs=glyphs)
        finally:
            follower.close()
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def hosts_label(model, hosts) -> str:
    """The header's host for journal files: the hosts asked for, else those
    whose events were read (a follower may bring more later)."""
    names = list(hosts) or sorted({e.hostname for e in model.by_id.values() if e.hostname})
    if not names:
        return "no hosts yet"
    return names[0] if len(names) == 1 else f"{len(names)} hosts: {', '.join(names)}"


def _terminal_width() -> int:
    """$COLUMNS, else the width of whichever of stdout, stderr, stdin is a
    terminal (``prpt top --once | less`` still fits the screen), else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            continue
    return DEFAULT_WIDTH


def _stdin_fd() -> int:
    """The keyboard; a closed or redirected stdin just means no keys."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return 0
