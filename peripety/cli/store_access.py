"""Opening the event store for reading, with errors a user can act on."""

from __future__ import annotations

import contextlib
import logging

import click

from ..errors import PeripetyError
from .output import quiet_broken_pipe

log = logging.getLogger("peripety.cli")


def open_store_for_reading(spec: str | list[str], include_untrusted: bool = False):
    """The store named by ``spec`` (see ``filters.store_to_read``): a store
    spec, or a list of journal files."""
    from ..stores import open_store  # late: journal/SQLite bindings

    try:
        if isinstance(spec, list):
            from ..stores.journal import JournalStore

            return JournalStore(files=spec, include_untrusted=include_untrusted)
        return open_store(spec, include_untrusted=include_untrusted)
    except PermissionError as exc:
        raise click.ClickException(
            f"{exc.filename or spec}: permission denied. Reading peripety events from the journal "
            "needs root or membership in the 'systemd-journal' group (usermod -aG systemd-journal $USER, "
            "then log in again)."
        ) from None
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None


def reads_journal_files(store) -> bool:
    """The store is journal files (--directory, --file): entries of any
    number of hosts, so text output shows each event's host."""
    return bool(getattr(store, "offline", False))


@contextlib.contextmanager
def reading_store(spec: str | list[str], include_untrusted: bool = False):
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
