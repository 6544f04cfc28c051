"""What only the SQLite store promises: file modes, schema version, read-only
readers, and open_store's choice of store."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from peripety.stores import EventFilter, StoreError, open_store
from peripety.stores.journal import JournalStore
from peripety.stores.sqlite import SCHEMA_VERSION, SqliteStore, where_clause
from tests.stores_support import full_event


def test_directory_and_database_are_private(tmp_path):
    path = tmp_path / "lib" / "peripety" / "events.db"
    SqliteStore(path, write=True).close()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_schema_is_versioned_and_in_wal_mode(tmp_path):
    path = tmp_path / "events.db"
    SqliteStore(path, write=True).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_newer_schema_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "events.db"
    SqliteStore(path, write=True).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer peripety"):
        SqliteStore(path)


def test_reader_sees_writer_events_and_cannot_write(tmp_path):
    path = tmp_path / "events.db"
    writer = SqliteStore(path, write=True)
    event = full_event("r")
    writer.append(event)
    reader = open_store(f"sqlite:{path}")
    assert list(reader.query(EventFilter())) == [event]
    with pytest.raises(StoreError, match=str(path)):
        reader.append(full_event("nope"))
    reader.close()
    writer.close()


def test_missing_database_names_the_file(tmp_path):
    with pytest.raises(StoreError, match="no event database at .*missing.db"):
        open_store(f"sqlite:{tmp_path / 'missing.db'}")


def test_unknown_store_spec():
    with pytest.raises(StoreError, match="unknown store 'mongodb'"):
        open_store("mongodb")


@pytest.mark.root
def test_auto_picks_the_journal_where_journald_runs():
    from tests.harness.services import ensure_journald

    ensure_journald()
    assert isinstance(open_store("auto", write=True), JournalStore)


def test_filters_are_sql_parameters_not_text():
    where, params = where_clause(EventFilter(kdevs=("x' OR 1=1 --",)))
    assert "OR 1=1" not in where
    assert params == ["x' OR 1=1 --"]
