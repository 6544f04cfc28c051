"""The spool: events a store refuses wait on disk and are delivered in order,
once, when the store is back (real journald namespace, real SQLite lock)."""

from __future__ import annotations

import logging
import os
import sqlite3

import pytest

from peripety.stores import EventFilter, Spool, SpoolingStore, StoreError
from peripety.stores.journal import JournalStore
from peripety.stores.provenance import SenderPolicy
from peripety.stores.sqlite import SqliteStore
from tests.harness.services import ensure_journald, private_journald
from tests.stores_support import full_event, names, namespace_name

# These tests write events themselves: trust this process as the writer.
WRITERS = SenderPolicy.this_process()


@pytest.fixture(scope="module")
def journal_ns():
    ensure_journald()
    with private_journald(namespace_name("spool")) as ns:
        yield ns


@pytest.fixture
def switchable_journal(journal_ns, tmp_path):
    """A journal store whose socket path does not exist until ``connect()``
    links it to the real journald socket: down, then back."""
    link = tmp_path / "journal.socket"
    store = JournalStore(journal_ns, writers=WRITERS, socket_path=link)
    real = f"/run/systemd/journal.{journal_ns}/socket"
    store.connect = lambda: os.symlink(real, link)
    yield store
    store.close()


def mine(store, events):
    """The events of this test, as the store returns them (the namespace is shared by this module)."""
    return list(store.query(EventFilter(event_ids=tuple(e.event_id for e in events))))


pytestmark = pytest.mark.root


def test_refused_events_are_spooled_then_delivered_in_order_once(switchable_journal, tmp_path):
    store = SpoolingStore(switchable_journal, tmp_path / "spool", retry_interval=0)
    events = [full_event(f"e{i}") for i in range(250)]  # more than one delivery batch
    for event in events[:200]:
        store.append(event)
    assert len(store.spool) == 200
    switchable_journal.connect()
    for event in events[200:]:  # the first append delivers the spool, then its own event
        store.append(event)
    store.sync()
    assert len(store.spool) == 0
    assert mine(switchable_journal, events) == events
    assert store.flush_spool() == 0  # nothing left to deliver twice
    assert mine(switchable_journal, events) == events
    store.close()


def test_new_events_wait_behind_the_spool(switchable_journal, tmp_path):
    store = SpoolingStore(switchable_journal, tmp_path / "spool", retry_interval=3600)
    first = full_event("first")
    store.append(first)
    switchable_journal.connect()  # back, but no retry is due yet: order beats speed
    second = full_event("second")
    store.append(second)
    assert len(store.spool) == 2
    assert store.flush_spool() == 2
    store.sync()
    assert names(mine(switchable_journal, [first, second])) == ["first", "second"]
    store.close()


def test_spool_survives_a_restart(switchable_journal, tmp_path):
    events = [full_event(f"r{i}") for i in range(5)]
    before = SpoolingStore(switchable_journal, tmp_path / "spool", fsync_every=2)
    for event in events:
        before.append(event)
    before.close()
    switchable_journal.connect()
    after = SpoolingStore(switchable_journal, tmp_path / "spool")
    assert len(after.spool) == 5
    assert after.flush_spool() == 5
    after.sync()
    assert mine(switchable_journal, events) == events
    after.close()


def test_full_spool_drops_the_oldest_and_counts_them(tmp_path, caplog):
    event_size = len(full_event("x").to_json()) + 1
    spool = Spool(tmp_path / "spool", max_bytes=10 * event_size + 50)
    events = [full_event(f"x{i:02}") for i in range(40)]
    with caplog.at_level(logging.WARNING, "peripety.stores.spool"):
        for event in events:
            spool.put(event)
    kept = [e for _, e in spool.pending()]
    assert spool.size <= spool.max_bytes
    assert os.path.getsize(spool.path) <= spool.max_bytes
    assert spool.dropped + len(kept) == 40
    assert kept == events[-len(kept):]  # the newest, in order
    assert len(spool) == len(kept)
    assert "is full" in caplog.text
    spool.close()


def test_torn_last_line_is_cut_and_the_rest_delivered(tmp_path, caplog):
    events = [full_event(f"t{i}") for i in range(3)]
    spool = Spool(tmp_path / "spool")
    for event in events:
        spool.put(event)
    spool.close()
    with open(spool.path, "ab") as f:  # a crash in the middle of a write
        f.write(full_event("torn").to_json().encode()[:57])
    with caplog.at_level(logging.WARNING, "peripety.stores.spool"):
        reopened = Spool(tmp_path / "spool")
    assert "torn" in caplog.text
    later = full_event("later")
    reopened.put(later)
    assert [e for _, e in reopened.pending()] == events + [later]
    reopened.close()


def test_sqlite_locked_by_another_writer_spools(tmp_path):
    db_path = tmp_path / "events.db"
    sqlite_store = SqliteStore(db_path, write=True, busy_timeout=0.05)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    store = SpoolingStore(sqlite_store, tmp_path / "spool", retry_interval=0)
    events = [full_event(f"s{i}") for i in range(3)]
    store.append(events[0])
    assert len(store.spool) == 1
    blocker.execute("ROLLBACK")
    blocker.close()
    store.append(events[1])
    store.append(events[2])
    assert len(store.spool) == 0
    assert list(store.query(EventFilter())) == events
    store.close()


def test_sqlite_ignores_an_event_delivered_twice(tmp_path):
    store = SqliteStore(tmp_path / "events.db", write=True)
    event = full_event("twice", owners=["W-1"])
    store.append(event)
    store.append(event)
    assert list(store.query(EventFilter())) == [event]
    assert list(store.query(EventFilter(wwids=("W-1",)))) == [event]
    store.close()


def test_unwritable_spool_directory_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="spool"):
        Spool(blocker / "spool")


def test_journald_restart_and_outage(tmp_path):
    """A real namespace journald, stopped and started again under the store."""
    ensure_journald()
    ns = namespace_name("restart")
    store = SpoolingStore(JournalStore(ns, writers=WRITERS), tmp_path / "spool", retry_interval=0)
    early, during, after = full_event("early"), full_event("during"), full_event("after")
    with private_journald(ns):
        store.append(early)
    with private_journald(ns):
        store.append(early)  # the store's socket is the old journald's: it must reconnect
        assert len(store.spool) == 0
    store.append(during)  # no journald at all
    assert len(store.spool) == 1
    with private_journald(ns):
        store.append(after)
        store.sync()
        assert len(store.spool) == 0
        # each private_journald removes its journal files when it stops
        assert names(store.query(EventFilter())) == ["during", "after"]
    store.close()
