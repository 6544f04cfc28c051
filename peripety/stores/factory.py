"""``open_store(spec)``: pick and open an event store from a short spec.

One spelling everywhere (the ``store =`` config key, ``peripetyd --store``,
``prpt --store``, ``PRPT_STORE``)::

    auto                 journal where journald runs, else sqlite
    journal              the system journal   (``journald`` is an alias)
    journal:NAMESPACE    a journal namespace (systemd-journald NAMESPACE)
    journal:/DIR         journal files in DIR (read only: sosreports, journal-remote)
    sqlite               /var/lib/peripety/events.db
    sqlite:PATH          an SQLite database at PATH
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError
from .journald_socket import runtime_dir
from .sqlite import DEFAULT_PATH, SqliteStore

SPEC_HELP = ("auto (journal where journald runs, else sqlite), journal (alias journald), journal:NAMESPACE, "
             "journal:/DIR (read only), sqlite or sqlite:PATH")
_ALIASES = {"journald": "journal"}


@dataclass(frozen=True)
class StoreSpec:
    kind: str
    """``auto``, ``journal`` or ``sqlite``."""
    namespace: str | None = None
    directory: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        arg = self.namespace or self.directory or self.path
        return f"{self.kind}:{arg}" if arg else self.kind


def parse_store_spec(spec: str | None) -> StoreSpec:
    """The spec as a StoreSpec; StoreError for anything else."""
    text = (spec or "auto").strip()
    kind, colon, arg = text.partition(":")
    kind = _ALIASES.get(kind.lower(), kind.lower())
    if colon and not arg:
        raise StoreError(f"store {spec!r}: nothing after ':'; expected {SPEC_HELP}")
    if kind == "auto" and not colon:
        return StoreSpec("auto")
    if kind == "journal":
        if not arg:
            return StoreSpec("journal")
        if "/" in arg:
            return StoreSpec("journal", directory=arg)
        return StoreSpec("journal", namespace=arg)
    if kind == "sqlite":
        return StoreSpec("sqlite", path=arg or None)
    raise StoreError(f"unknown store {spec!r}: expected {SPEC_HELP}")


def open_store(spec: str = "auto", *, write: bool = False, include_untrusted: bool = False, writers=None):
    """Open the store named by ``spec`` (see SPEC_HELP); StoreError says why not.

    Readers see only events written by peripetyd (``writers`` for the
    journal, see provenance.py); ``include_untrusted`` shows the others too,
    marked."""
    parsed = parse_store_spec(spec)
    if parsed.kind == "auto":
        parsed = StoreSpec("journal") if (runtime_dir() / "socket").exists() else StoreSpec("sqlite")
    if parsed.kind == "journal":
        return _open_journal(parsed, write, include_untrusted, writers)
    return SqliteStore(Path(parsed.path or DEFAULT_PATH), write=write, include_untrusted=include_untrusted)


def _open_journal(spec: StoreSpec, write: bool, include_untrusted: bool, writers):
    from .journal import JournalStore, _check_readable  # late: needs systemd bindings
    from .provenance import PERIPETYD_WRITER

    options = {"include_untrusted": include_untrusted, "writers": writers or PERIPETYD_WRITER}
    if spec.directory is not None:
        if write:
            raise StoreError(f"store journal:{spec.directory}: a journal directory can only be read; "
                             "peripetyd writes to journald (journal or journal:NAMESPACE)")
        _check_has_journal_files(Path(spec.directory))
        return JournalStore(directory=spec.directory, **options)
    socket_path = runtime_dir(spec.namespace) / "socket"
    if write and not socket_path.exists():
        raise StoreError(f"journald is not running (no {socket_path}): start systemd-journald, "
                         "or use the sqlite store")
    if not write:
        _check_readable(spec.namespace)
    return JournalStore(spec.namespace, **options)


def _check_has_journal_files(directory: Path) -> None:
    """sd-journal reads an empty or mistyped directory as "no events"; say so."""
    if not directory.is_dir():
        raise StoreError(f"store journal:{directory}: no such directory")
    try:
        found = any(directory.glob("*.journal")) or any(directory.glob("*/*.journal"))
    except OSError as exc:
        raise StoreError(f"store journal:{directory}: {exc.strerror}") from None
    if not found:
        raise StoreError(f"store journal:{directory}: no journal files (*.journal) in it or its "
                         "subdirectories; give the directory holding them (e.g. /var/log/journal)")
