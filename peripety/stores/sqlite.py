"""The embedded store for hosts without journald: one SQLite database in WAL
mode (readers never block the daemon's writes).

Provenance: SQLite records no writer per row, so the *file* says who wrote
the events. A reader accepts a database only when it, and every directory
above it, could have been written by root alone (the daemon's user): the
database is owned by root (or by the reader itself, for a private store),
is not group/world-writable, is not a symbolic link (checked with
``O_NOFOLLOW`` and again on the opened inode), and its directory passes
the same check as the daemon's state directories (``safefiles.py``). A
database anyone else could have written is refused with the reason;
``include_untrusted`` reads it anyway and marks every event.
The daemon creates the file with ``O_NOFOLLOW`` in a checked directory.

Durability: ``synchronous=NORMAL`` in WAL mode keeps every committed event
across a crash of peripetyd; only a power loss may take the last few
commits. Each ``append`` is its own transaction, and appending an
``event_id`` already stored does nothing, so re-delivery after a crash
never duplicates an event.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterator

from ..errors import EventFormatError, StoreError
from ..event import StorageEvent
from ..event_json import compact_json
from ..safefiles import UnsafePathError, check_dir_chain, check_private_dir, open_private
from .filter import EventFilter, to_usec

log = logging.getLogger("peripety.stores.sqlite")

DEFAULT_PATH = Path("/var/lib/peripety/events.db")
SCHEMA_VERSION = 1
POLL_INTERVAL = 0.05
"""Seconds between ``PRAGMA data_version`` checks in ``SqliteFollower.wait``.
SQLite offers no change notification across processes; the check reads
the WAL index in shared memory (no disk I/O), so a 50 ms poll is cheap and
keeps ``prpt monitor`` latency well under a second."""

_SCHEMA = """
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,   -- the rowid: arrival order
    event_id    TEXT NOT NULL UNIQUE,
    timestamp   INTEGER NOT NULL,      -- microseconds since the epoch
    priority    INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    sub_system  TEXT NOT NULL,
    kdev        TEXT NOT NULL,
    dev_wwid    TEXT NOT NULL,
    dev_num     TEXT NOT NULL,
    json        TEXT NOT NULL
);
CREATE TABLE event_owners (
    event_rowid INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    wwid        TEXT NOT NULL
);
CREATE INDEX events_by_time ON events(timestamp);
CREATE INDEX events_by_type ON events(event_type, timestamp);
CREATE INDEX events_by_wwid ON events(dev_wwid);
CREATE INDEX events_by_kdev ON events(kdev);
CREATE INDEX event_owners_by_wwid ON event_owners(wwid);
"""

_COLUMNS = "id, json"


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: str | os.PathLike = DEFAULT_PATH, *, write: bool = False,
                 busy_timeout: float = 5.0, include_untrusted: bool = False):
        self.path = Path(path)
        self.write = write
        self.include_untrusted = include_untrusted
        self.untrusted_skipped = 0
        """Always 0 for a trusted database (provenance is per file, see above)."""
        self._untrusted_writer: dict | None = None
        self.busy_timeout = busy_timeout
        """Seconds to wait for another writer's lock before append fails."""
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.write:
                _create_private(self.path)
                db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                     check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                _migrate(db, self.path)
            else:
                if not self.path.exists():
                    raise StoreError(f"no event database at {self.path} (peripetyd has stored no "
                                     "events there yet, or it uses the journal store)")
                before = self._check_provenance()
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False)
                _check_version(db, self.path)
                after = os.stat(self.path)
                if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
                    db.close()
                    raise StoreError(f"{self.path}: replaced while it was being opened; not read")
            db.execute("PRAGMA foreign_keys=ON")
            return db
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        except PermissionError as exc:
            raise StoreError(f"{self.path}: {exc.strerror} (peripetyd's database is readable by "
                             "root and its group)") from exc

    def _check_provenance(self) -> os.stat_result:
        """The stat of a database only root could have written; else
        StoreError (or, with include_untrusted, a mark on every event)."""
        try:
            fd = open_private(self.path, os.O_RDONLY)
        except UnsafePathError as exc:
            raise StoreError(str(exc)) from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        problem = None
        if st.st_uid not in (0, os.geteuid()):
            problem = f"owned by uid {st.st_uid}, not root"
        elif st.st_mode & 0o022:
            problem = f"group/world-writable (mode {st.st_mode & 0o7777:04o})"
        else:
            try:
                check_dir_chain(self.path.parent)
            except UnsafePathError as exc:
                problem = str(exc)
        if problem is None:
            return st
        if not self.include_untrusted:
            raise StoreError(f"{self.path}: not read: {problem}, so anyone could have written its events "
                             "(--include-untrusted reads it anyway, marking every event)")
        log.warning("%s: %s; its events are marked untrusted", self.path, problem)
        self._untrusted_writer = {"uid": str(st.st_uid), "file": str(self.path), "reason": problem}
        return st

    # -- writing ------------------------------------------------------------
    def append(self, event: StorageEvent) -> None:
        info = event.cur_blk_info
        row = (
            event.event_id, to_usec(event.timestamp), int(event.severity), event.event_type,
            event.sub_system, event.kdev, info.wwid if info else "",
            event.dev_num or (info.dev_num if info else ""), compact_json(event),
        )
        try:
            with self._db:  # one transaction: the event and its owners, or nothing
                self._db.execute("BEGIN IMMEDIATE")
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO events (event_id, timestamp, priority, event_type, "
                    "sub_system, kdev, dev_wwid, dev_num, json) VALUES (?,?,?,?,?,?,?,?,?)", row)
                if cursor.rowcount and info and info.owners_wwids:
                    self._db.executemany(
                        "INSERT INTO event_owners (event_rowid, wwid) VALUES (?, ?)",
                        [(cursor.lastrowid, w) for w in dict.fromkeys(info.owners_wwids) if w])
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot store event {event.event_id}: {exc}") from exc

    def sync(self) -> None:
        """Every append is committed before it returns: nothing to wait for."""

    # -- reading ------------------------------------------------------------
    def query(self, flt: EventFilter) -> Iterator[StorageEvent]:
        if flt.limit == 0:
            return iter(())
        where, params = where_clause(flt)
        if flt.limit is None:
            sql = f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY id"
        else:
            sql = (f"SELECT * FROM (SELECT {_COLUMNS} FROM events WHERE {where} "
                   f"ORDER BY id DESC LIMIT ?) ORDER BY id")
            params.append(flt.limit)
        return self._rows(self._db, sql, params)

    def _rows(self, db, sql, params) -> Iterator[StorageEvent]:
        try:
            rows = db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: query failed: {exc}") from exc
        for rowid, text in rows:
            event = _decode(self.path, rowid, text)
            if event is not None:
                event.untrusted_writer = self._untrusted_writer
                yield event

    def follow(self, flt: EventFilter) -> "SqliteFollower":
        return SqliteFollower(self, flt)

    def event_types(self) -> set[str]:
        try:
            return {row[0] for row in self._db.execute("SELECT DISTINCT event_type FROM events")}
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: query failed: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"


class SqliteFollower:
    """Polls for rows after the last one seen, on a connection of its own (a
    connection does not see its own commits in ``data_version``)."""

    def __init__(self, store: SqliteStore, flt: EventFilter):
        self._store = store
        self._flt = flt
        try:
            self._db = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False)
            self._last = self._db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]
            self._version = self._data_version()
        except sqlite3.Error as exc:
            raise StoreError(f"{store.path}: cannot follow: {exc}") from exc

    def _data_version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    @property
    def untrusted_skipped(self) -> int:
        return self._store.untrusted_skipped

    def fileno(self) -> int | None:
        return None

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            version = self._data_version()
            if version != self._version:
                self._version = version
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(POLL_INTERVAL, left))

    def read(self) -> list[StorageEvent]:
        where, params = where_clause(self._flt)
        sql = f"SELECT {_COLUMNS} FROM events WHERE id > ? AND {where} ORDER BY id"
        events = []
        for rowid, text in self._fetch(sql, [self._last, *params]):
            self._last = rowid
            event = _decode(self._store.path, rowid, text)
            if event is not None:
                event.untrusted_writer = self._store._untrusted_writer
                events.append(event)
        return events

    def _fetch(self, sql, params):
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"{self._store.path}: cannot follow: {exc}") from exc

    def close(self) -> None:
        self._db.close()


def where_clause(flt: EventFilter) -> tuple[str, list]:
    """The filter (without limit) as an SQL condition with parameters."""
    terms: list[str] = ["1"]
    params: list = []

    def one_of(column: str, values) -> str:
        params.extend(values)
        return f"{column} IN ({','.join('?' * len(values))})"

    if flt.event_types:
        terms.append(one_of("event_type", flt.event_types))
    if flt.sub_systems:
        terms.append(one_of("sub_system", flt.sub_systems))
    if flt.event_ids:
        terms.append(one_of("event_id", flt.event_ids))
    if flt.hosts:
        # No column of its own (schema 1): the host is in the event's JSON.
        terms.append(one_of("json_extract(json, '$.hostname')", flt.hosts))
    if flt.severity is not None:
        terms.append("priority <= ?")
        params.append(int(flt.severity))
    if flt.wwids or flt.kdevs:
        either = []
        if flt.wwids:
            either.append(one_of("dev_wwid", flt.wwids))
            either.append("id IN (SELECT event_rowid FROM event_owners WHERE "
                          + one_of("wwid", flt.wwids) + ")")
        if flt.kdevs:
            either.append(one_of("kdev", flt.kdevs))
        terms.append("(" + " OR ".join(either) + ")")
    if flt.since is not None:
        terms.append("timestamp >= ?")
        params.append(to_usec(flt.since))
    if flt.until is not None:
        terms.append("timestamp <= ?")
        params.append(to_usec(flt.until))
    return " AND ".join(terms), params


def _create_private(path: Path) -> None:
    """Events name devices and mount points: keep them to root and its group.
    The directory is checked and the file opened without following links
    (SQLite itself follows them)."""
    try:
        check_private_dir(path.parent)
        fd = open_private(path, os.O_CREAT | os.O_RDWR, 0o640)
    except UnsafePathError as exc:
        raise StoreError(str(exc)) from None
    os.close(fd)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        with db:
            db.execute("BEGIN IMMEDIATE")
            # Checked again inside the write lock: another writer may have won the race.
            if db.execute("PRAGMA user_version").fetchone()[0] == 0:
                _create_schema(db)
    _check_version(db, path)


def _create_schema(db: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _check_version(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version} was written by a newer peripety "
                         f"(this one reads version {SCHEMA_VERSION}); upgrade peripety")
    if version < SCHEMA_VERSION:
        raise StoreError(f"{path}: not a peripety event database (schema version {version})")


def _decode(path: Path, rowid: int, text: str) -> StorageEvent | None:
    try:
        return StorageEvent.from_json(text)
    except EventFormatError as exc:
        log.warning("%s: event row %d: %s; skipped", path, rowid, exc)
        return None
