"""Opening the event store for reading, with errors a user can act on."""

from __future__ import annotations

import contextlib

import click

from ..errors import PeripetyError
from .output import quiet_broken_pipe


def open_store_for_reading(spec: str):
    from ..stores import open_store  # late: journal/SQLite bindings

    try:
        return open_store(spec)
    except PermissionError as exc:
        raise click.ClickException(
            f"{exc.filename or spec}: permission denied. Reading peripety events from the journal "
            "needs root or membership in the 'systemd-journal' group (usermod -aG systemd-journal $USER, "
            "then log in again)."
        ) from None
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def reading_store(spec: str):
    """The store, open for the ``with`` block: a reader that went away
    (``| head``) ends quietly, a store error becomes a message and exit 1."""
    store = open_store_for_reading(spec)
    try:
        yield store
    except BrokenPipeError:
        quiet_broken_pipe()
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
