"""Opening the event store for reading, with errors a user can act on."""

from __future__ import annotations

import contextlib
import logging

import click

from ..errors import PeripetyError
from .output import quiet_broken_pipe

log = logging.getLogger("peripety.cli")


def open_store_for_reading(spec, include_untrusted: bool = False):
    """The store named by ``spec`` (see ``filters.store_to_read``): a store
    spec, or a list of journal files; a store already open (``follow_from``)
    as it is."""
    from ..stores import open_store  # late: journal/SQLite bindings

    if hasattr(spec, "follow"):
        return spec
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


def follow_from(ctx: click.Context, source: str, socket_path: str, store_spec: str, directory, files,
                include_untrusted: bool = False):
    """What ``prpt monitor`` and ``prpt top`` read (``--source``): the local
    peripetyd over Varlink (a ``VarlinkStore`` that falls back to the store
    when the daemon goes away), or what ``filters.store_to_read`` names.

    auto takes Varlink only when nothing names a store (--store on the
    command line or in $PRPT_STORE, --directory, --file,
    --include-untrusted) and the socket answers as root's peripetyd."""
    from ..stores.varlink import VarlinkStore, VarlinkUnavailable, VarlinkUntrusted
    from .filters import SOURCE_AUTO, SOURCE_VARLINK, store_to_read

    spec = store_to_read(ctx, store_spec, directory, files)
    if source not in (SOURCE_AUTO, SOURCE_VARLINK):
        return spec
    named = [opt for opt, given in (
        ("--store", ctx.get_parameter_source("store_spec") != click.core.ParameterSource.DEFAULT),
        ("--directory", bool(directory)), ("--file", bool(files)), ("--include-untrusted", include_untrusted),
    ) if given]
    if named:
        if source == SOURCE_VARLINK:
            raise click.UsageError(f"--source varlink reads the local peripetyd; {named[0]} names a store "
                                   "to read instead: give one", ctx)
        return spec
    fallback = (lambda: open_store_for_reading(spec)) if source == SOURCE_AUTO else None
    try:
        store = VarlinkStore(socket_path, fallback=fallback)
    except VarlinkUntrusted as exc:
        if source == SOURCE_VARLINK:
            raise click.ClickException(f"not following {socket_path}: {exc}") from None
        log.warning("not following peripetyd over Varlink: %s; reading the store", exc)
        return spec
    except VarlinkUnavailable as exc:
        if source == SOURCE_VARLINK:
            raise click.ClickException(str(exc)) from None
        log.info("not following peripetyd over Varlink (%s): reading the store", exc)
        return spec
    log.info("following peripetyd over Varlink (%s)", socket_path)
    return store
