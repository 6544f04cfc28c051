"""The embedded store for hosts without journald: one SQLite database in WAL
mode (readers never block the daemon's writes).

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
                 busy_timeout: float = 5.0):
        self.path = Path(path)
        self.write = write
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
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False)
                _check_version(db, self.path)
            db.execute("PRAGMA foreign_keys=ON")
            return db
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        except PermissionError as exc:
            raise StoreError(f"{self.path}: {exc.strerror} (peripetyd's database is readable by "
                             "root and its group)") from exc

    # -- writing ------------------------------------------------------------
    def append(self, event: StorageEvent) -> None:
        info = event.cur_blk_info
        row = (
            event.event_id, to_usec(event.timestamp), int(event.severity), event.event_type,
            event.sub_system, event.kdev, info.wwid if info else "",
            event.dev_num or (info.dev_num if info else ""), event.to_json(),
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
                yield event

    def follow(self, flt: EventFilter) -> "SqliteFollower":
        return SqliteFollower(self, flt)

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
    """Events name devices and mount points: keep them to root and its group."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o640)
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
