"""``open_store(spec)``: pick and open an event store from a short spec
(the ``--store`` option and the ``store =`` config key)."""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreError
from .journald_socket import runtime_dir
from .sqlite import DEFAULT_PATH, SqliteStore

SPEC_HELP = ("auto (journal where journald runs, else sqlite), journal, journal:NAMESPACE, "
             "sqlite or sqlite:PATH")


def open_store(spec: str = "auto", *, write: bool = False):
    """Open the store named by ``spec`` (see SPEC_HELP); StoreError says why not."""
    kind, _, arg = (spec or "auto").partition(":")
    if kind == "auto" and not arg:
        kind = "journal" if (runtime_dir() / "socket").exists() else "sqlite"
    if kind == "journal":
        return _open_journal(arg or None, write)
    if kind == "sqlite":
        return SqliteStore(Path(arg) if arg else DEFAULT_PATH, write=write)
    raise StoreError(f"unknown store {spec!r}: expected {SPEC_HELP}")


def _open_journal(namespace: str | None, write: bool):
    from .journal import JournalStore, _check_readable  # late: needs systemd bindings

    socket_path = runtime_dir(namespace) / "socket"
    if write and not socket_path.exists():
        raise StoreError(f"journald is not running (no {socket_path}): start systemd-journald, "
                         "or use the sqlite store")
    if not write:
        _check_readable(namespace)
    return JournalStore(namespace)
