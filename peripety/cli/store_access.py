"""Opening the event store for reading, with errors a user can act on."""

from __future__ import annotations

import contextlib
import logging

import click

from ..errors import PeripetyError
from .output import quiet_broken_pipe

log = logging.getLogger("peripety.cli")


def open_store_for_reading(spec: str, include_untrusted: bool = False):
    from ..stores import open_store  # late: journal/SQLite bindings

    try:
        return open_store(spec, include_untrusted=include_untrusted)
    except PermissionError as exc:
        raise click.ClickException(
            f"{exc.filename or spec}: permission denied. Reading peripety events from the journal "
            "needs root or membership in the 'systemd-journal' group (usermod -aG systemd-journal $USER, "
            "then log in again)."
        ) from None
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def reading_store(spec: str, include_untrusted: bool = False):
    """The store, open for the ``with`` block: a reader that went away
    (``| head``) ends quietly, a store error becomes a message and exit 1.
    Entries skipped as not peripetyd's are reported at the end (-v)."""
    store = open_store_for_reading(spec, include_untrusted)
    try:
        yield store
    except BrokenPipeError:
        quiet_broken_pipe()
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        skipped = getattr(store, "untrusted_skipped", 0)
        if skipped and not include_untrusted:
            log.info("%d entr%s not written by peripetyd skipped (--include-untrusted shows them)",
                     skipped, "y" if skipped == 1 else "ies")
        store.close()
