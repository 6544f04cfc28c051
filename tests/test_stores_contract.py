"""One contract, every store: the same tests run against the journal store
(a real systemd-journald, in a journal namespace of its own so other tests'
events cannot interfere) and the SQLite store (in a temporary directory)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from peripety.event import Severity
from peripety.stores import EventFilter
from peripety.stores.journal import JournalStore
from peripety.stores.provenance import SenderPolicy
from peripety.stores.sqlite import SqliteStore
from tests.harness.services import ensure_journald, private_journald
from tests.stores_support import full_event, names, namespace_name, read_follower

# These tests write events themselves: trust this process as the writer.
WRITERS = SenderPolicy.this_process()

pytestmark = pytest.mark.root
_seq = itertools.count()


@pytest.fixture(params=["journal", "sqlite"])
def store(request, tmp_path):
    if request.param == "journal":
        ensure_journald()
        with private_journald(namespace_name(f"c{next(_seq)}")) as ns:
            s = JournalStore(ns, writers=WRITERS)
            yield s
            s.close()
    else:
        s = SqliteStore(tmp_path / "events.db", write=True)
        yield s
        s.close()


T0 = dt.datetime.now().astimezone().replace(microsecond=0) - dt.timedelta(seconds=60)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def five_events():
    """a..e, one second apart; a and d sit on top of the same lower device."""
    return [
        full_event("a", "FS_ERROR", "ext4", Severity.Error, "loop1", "W-A", ["W-LOWER"], at(0)),
        full_event("b", "BLK_IO_ERROR", "block", Severity.Error, "loop2", "W-B", [], at(1)),
        full_event("c", "FS_MOUNTED", "xfs", Severity.Info, "loop3", "", [], at(2)),
        full_event("d", "SCSI_CMD_FAILED", "SCSI", Severity.Critical, "sdb", "W-D",
                   ["W-LOWER", "W-X"], at(3)),
        full_event("e", "FS_REMOUNT_READ_ONLY", "ext4", Severity.Warning, "dm-1", "W-E", [], at(4)),
    ]


@pytest.fixture
def stored(store):
    events = five_events()
    for event in events:
        store.append(event)
    store.sync()
    return store, events


def test_round_trip_keeps_every_field(store):
    event = full_event("full", wwid="W-FULL", owners=["W-1", "W-2"])
    store.append(event)
    store.sync()
    assert list(store.query(EventFilter())) == [event]


def test_query_without_filter_returns_all_oldest_first(stored):
    store, _ = stored
    assert names(store.query(EventFilter())) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("flt, expected", [
    (EventFilter(event_types=("FS_ERROR",)), ["a"]),
    (EventFilter(event_types=("FS_ERROR", "FS_MOUNTED")), ["a", "c"]),
    (EventFilter(sub_systems=("ext4",)), ["a", "e"]),
    (EventFilter(severity=Severity.Error), ["a", "b", "d"]),
    (EventFilter(severity=Severity.Warning), ["a", "b", "d", "e"]),
    (EventFilter(severity=Severity.Emergency), []),
    (EventFilter(wwids=("W-B",)), ["b"]),
    (EventFilter(wwids=("W-LOWER",)), ["a", "d"]),          # stacked: OWNERS_WWIDS
    (EventFilter(wwids=("W-X", "W-E")), ["d", "e"]),
    (EventFilter(kdevs=("loop3",)), ["c"]),
    (EventFilter(wwids=("W-A",), kdevs=("loop3",)), ["a", "c"]),
    (EventFilter(since=at(3)), ["d", "e"]),
    (EventFilter(until=at(1)), ["a", "b"]),
    (EventFilter(since=at(1), until=at(3)), ["b", "c", "d"]),
], ids=lambda v: repr(v) if isinstance(v, list) else None)
def test_each_filter_alone(stored, flt, expected):
    store, _ = stored
    assert names(store.query(flt)) == expected


def test_event_id_filter(stored):
    store, events = stored
    wanted = (events[4].event_id, events[1].event_id)
    assert names(store.query(EventFilter(event_ids=wanted))) == ["b", "e"]


@pytest.mark.parametrize("flt, expected", [
    (EventFilter(sub_systems=("ext4",), severity=Severity.Error), ["a"]),
    (EventFilter(event_types=("FS_ERROR", "SCSI_CMD_FAILED", "FS_MOUNTED"), wwids=("W-LOWER",)), ["a", "d"]),
    (EventFilter(wwids=("W-LOWER",), severity=Severity.Critical), ["d"]),
    (EventFilter(wwids=("W-LOWER",), kdevs=("loop3",), sub_systems=("xfs", "SCSI")), ["c", "d"]),
    (EventFilter(severity=Severity.Warning, since=at(1), until=at(3)), ["b", "d"]),
    (EventFilter(sub_systems=("ext4",), event_types=("FS_MOUNTED",)), []),
], ids=lambda v: repr(v) if isinstance(v, list) else None)
def test_filters_combined(stored, flt, expected):
    store, _ = stored
    assert names(store.query(flt)) == expected


@pytest.mark.parametrize("flt, expected", [
    (EventFilter(limit=2), ["d", "e"]),
    (EventFilter(limit=1, severity=Severity.Error), ["d"]),
    (EventFilter(limit=2, sub_systems=("ext4",)), ["a", "e"]),
    (EventFilter(limit=2, until=at(2)), ["b", "c"]),
    (EventFilter(limit=10, since=at(2)), ["c", "d", "e"]),
    (EventFilter(limit=0), []),
], ids=lambda v: repr(v) if isinstance(v, list) else None)
def test_limit_returns_newest_oldest_first(stored, flt, expected):
    store, _ = stored
    assert names(store.query(flt)) == expected


def test_follow_sees_only_events_after_it_started(store):
    before = full_event("before")
    store.append(before)
    store.sync()
    follower = store.follow(EventFilter())
    try:
        after = [full_event("x"), full_event("y"), full_event("z")]
        for event in after:
            store.append(event)
        assert read_follower(follower, 3) == after
        assert follower.read() == []
    finally:
        follower.close()


def test_follow_applies_the_filter(store):
    follower = store.follow(EventFilter(wwids=("W-LOWER",), severity=Severity.Error))
    try:
        for event in five_events():
            store.append(event)
        marker = full_event("marker", severity=Severity.Alert, wwid="W-LOWER")
        store.append(marker)
        assert names(read_follower(follower, 3)) == ["a", "d", "marker"]
    finally:
        follower.close()


def test_follow_wait_and_read(store):
    follower = store.follow(EventFilter())
    try:
        assert follower.read() == []
        store.append(full_event("w"))
        store.sync()
        got = []
        for _ in range(3):  # journald may wake us before the entry is readable
            if not follower.wait(20.0):
                break
            got += follower.read()
            if got:
                break
        assert names(got) == ["w"]
    finally:
        follower.close()
