"""``prpt top``: a live full-screen view of storage health."""

from __future__ import annotations

import datetime as _dt
import sys

import click

from ..errors import PeripetyError
from ..event import now as wall_clock
from . import filters
from .options import verbose_option


DEFAULT_HISTORY = _dt.timedelta(hours=1)


@click.command("top")
@filters.filter_options
@filters.store_option
@filters.since_option(help="Seed the view with events since this time (default: the last hour).")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts); implied when stdout is not a terminal.")
@click.option(
    "--status-file",
    type=click.Path(dir_okay=False),
    default="/run/peripety/status.json",
    show_default=True,
    help="peripetyd's status file, to show which sources are active.",
)
@verbose_option
def command(blk, severity, sub_systems, event_types, store_spec, since, once, status_file):
    """Watch storage health live: one row per device, worst first, and the
    newest events.

    \b
    Keys: q quit   s cycle sort (worst, recent, count, name)
          f or /  filter by device or event type   p pause
          Up/Down select a device to list only its events   Esc show all
    """
    from rich.console import Console

    from ..stores import open_store
    from ..top.app import render_once, run_live, seed

    since = since or wall_clock() - DEFAULT_HISTORY
    flt = filters.build_filter(blk, severity, sub_systems, event_types)
    # Rich drops colour when stdout is not a terminal; a pipe or a file gets
    # one plain frame, as a live screen makes no sense there.
    console = Console()
    once = once or not console.is_terminal
    try:
        store = open_store(store_spec)
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        model, follower = seed(store, flt, since, status_file)
        try:
            if once:
                render_once(model, console, wall_clock())
            else:
                run_live(model, follower, console, status_file, stdin_fd=_stdin_fd())
        finally:
            follower.close()
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _stdin_fd() -> int:
    """The keyboard; a closed or redirected stdin just means no keys."""
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return 0
