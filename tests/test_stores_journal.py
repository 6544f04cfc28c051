"""The journal store against the real system journald: what users' own
tools (journalctl) see, the catalog, and the failure modes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from peripety.event_types import EVENT_TYPES
from peripety.stores import EventFilter, StoreError, open_store
from peripety.stores.catalog import catalog_text, install_catalog
from peripety.event_json import compact_json
from peripety.stores.journal import JournalStore
from peripety.stores.journald_socket import JournaldSocket
from peripety.stores.provenance import SenderPolicy
from tests.harness.services import ensure_journald
from tests.stores_support import full_event, read_follower

# These tests write events themselves: trust this process as the writer.
WRITERS = SenderPolicy.this_process()

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def journal():
    ensure_journald()
    store = open_store("journal", write=True, writers=WRITERS)
    assert isinstance(store, JournalStore)
    yield store
    store.close()


def unique_kdev() -> str:
    return f"loop-t{uuid.uuid4().hex[:10]}"  # isolates this test's entries in the shared journal


def journalctl(*args: str) -> str:
    return subprocess.run(["journalctl", "--no-pager", *args], check=True, capture_output=True,
                          text=True).stdout


def test_journalctl_finds_events_without_peripety(journal):
    kdev = unique_kdev()
    event = full_event("jctl", event_type="FS_ERROR", kdev=kdev, wwid="W-J", owners=["W-O1", "W-O2"])
    journal.append(event)
    journal.sync()
    lines = journalctl("IS_PERIPETY=TRUE", "EVENT_TYPE=FS_ERROR", f"KDEV={kdev}", "-o", "json").splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["MESSAGE_ID"] == EVENT_TYPES.message_id("FS_ERROR")
    assert entry["EVENT_ID"] == event.event_id
    assert entry["OWNERS_WWIDS"] == ["W-O1", "W-O2"]  # one field per owner
    assert entry["PRIORITY"] == "3"
    assert entry["SYSLOG_IDENTIFIER"] == "peripetyd"
    assert json.loads(entry["JSON"]) == event.to_dict()


def test_catalog_explains_events_in_journalctl_x(journal):
    install_catalog()
    kdev = unique_kdev()
    journal.append(full_event("cat", event_type="FS_REMOUNT_READ_ONLY", kdev=kdev))
    journal.sync()
    text = journalctl("-x", f"KDEV={kdev}")
    info = EVENT_TYPES.get("FS_REMOUNT_READ_ONLY")
    assert f"Subject: {info.title}" in text
    assert f"/dev/{kdev}" in text  # @DEV_PATH@ filled from the entry


def test_shipped_catalog_file_is_generated_from_event_types():
    shipped = (REPO / "systemd" / "peripety.catalog").read_text()
    assert shipped == catalog_text(), "regenerate it: python -m peripety.stores.catalog"


def test_event_larger_than_a_datagram_is_stored_whole(journal):
    kdev = unique_kdev()
    big = full_event("big", kdev=kdev, extension={"dump": "x" * 600_000})
    journal.append(big)
    journal.sync()
    assert list(journal.query(EventFilter(kdevs=(kdev,)))) == [big]


def test_query_and_follow_on_the_system_journal(journal):
    kdev = unique_kdev()
    follower = journal.follow(EventFilter(kdevs=(kdev,)))
    try:
        events = [full_event(f"s{i}", kdev=kdev) for i in range(3)]
        for event in events:
            journal.append(event)
        journal.sync()
        assert list(journal.query(EventFilter(kdevs=(kdev,)))) == events
        assert list(journal.query(EventFilter(kdevs=(kdev,), limit=1))) == events[-1:]
        assert read_follower(follower, 3) == events
    finally:
        follower.close()


def test_append_to_a_missing_socket_is_a_store_error(tmp_path):
    store = JournalStore(socket_path=tmp_path / "no-such-socket")
    with pytest.raises(StoreError, match="no-such-socket"):
        store.append(full_event("lost"))


def test_unprivileged_reader_is_told_about_the_journal_group():
    # A real unprivileged process: nobody may not read the system journal.
    code = ("from peripety.stores import open_store, StoreError\n"
            "try:\n    open_store('journal')\nexcept StoreError as e:\n    print(e)\n")
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", code],
        capture_output=True, text=True, cwd="/", check=True)
    assert "usermod -aG systemd-journal" in result.stdout


def test_the_journal_lists_the_event_types_it_holds(journal):
    """What ``prpt query --event-type`` accepts beyond the built-in and
    configured types (another host's rule types, shipped by journal-remote)."""
    kind = f"SITE_TYPE_{uuid.uuid4().hex[:8].upper()}"
    assert kind not in journal.event_types()
    journal.append(full_event("t", kdev=unique_kdev(), event_type=kind))
    journal.sync()
    assert kind in journal.event_types()
def test_query_lines_are_the_jsonl_of_query(journal):
    """``prpt query --jsonl`` reads ``query_lines``: the same lines as
    ``compact_json`` of every event ``query`` gives, with the same trust
    decisions and counts, whether or not the stored JSON is peripetyd's own
    spelling (entries sent here by hand spell it otherwise)."""
    kdev = unique_kdev()
    events = [full_event(f"l{i}", kdev=kdev, wwid="W-L", owners=["W-O"]) for i in range(3)]
    events.append(full_event("plain", kdev=kdev, cur_blk_info=None, hierarchy_blk_info=[], count=1,
                             last_timestamp=None, root_cause_event_id=None))
    for event in events:
        journal.append(event)
    sender = JournaldSocket(journal.socket_path)
    data = events[0].to_dict()
    for spelled in (json.dumps(data), json.dumps({**data, "severity": "Ctritical", "msg": "odd"}),
                    json.dumps({**data, "cur_blk_info": {**data["cur_blk_info"], "diskseq": 1e-05}},
                               separators=(",", ":"), ensure_ascii=False),
                    json.dumps({**data, "timestamp": data["timestamp"][:-6] + "Z"}, separators=(",", ":"))):
        sender.send({"IS_PERIPETY": "TRUE", "KDEV": kdev, "MESSAGE": "by hand", "JSON": spelled})
    sender.close()
    journal.sync()
    for flt in (EventFilter(kdevs=(kdev,)), EventFilter(kdevs=(kdev,), limit=3)):
        for writers, include_untrusted in ((WRITERS, False), (SenderPolicy.for_daemon("peripetyd"), False),
                                           (SenderPolicy.for_daemon("peripetyd"), True)):
            by_events = JournalStore(writers=writers, include_untrusted=include_untrusted)
            by_lines = JournalStore(writers=writers, include_untrusted=include_untrusted)
            try:
                expected = [(e.timestamp, e.hostname, compact_json(e)) for e in by_events.query(flt)]
                assert [tuple(line) for line in by_lines.query_lines(flt)] == expected
                assert by_lines.untrusted_skipped == by_events.untrusted_skipped
                wanted = 3 if flt.limit else 8
                assert len(expected) == (0 if writers != WRITERS and not include_untrusted else wanted)
            finally:
                by_events.close()
                by_lines.close()


def test_a_forged_entry_with_a_field_of_the_wrong_kind_is_skipped_not_a_crash(journal):
    """Anyone can send IS_PERIPETY=TRUE with JSON that parses but is no
    event ("count": NaN); --include-untrusted readers skip it with a warning."""
    kdev = unique_kdev()
    data = full_event("forged", kdev=kdev).to_dict()
    sender = JournaldSocket(journal.socket_path)
    sender.send({"IS_PERIPETY": "TRUE", "KDEV": kdev, "MESSAGE": "forged",
                 "JSON": json.dumps({**data, "count": float("nan")})})
    sender.close()
    genuine = full_event("genuine", kdev=kdev)
    journal.append(genuine)  # the sentinel
    journal.sync()
    for make_lines in (False, True):
        reader = JournalStore(writers=SenderPolicy.for_daemon("peripetyd"), include_untrusted=True)
        try:
            flt = EventFilter(kdevs=(kdev,))
            got = list(reader.query_lines(flt) if make_lines else reader.query(flt))
        finally:
            reader.close()
        assert len(got) == 1  # the genuine one (untrusted here: this test wrote it), not the forged one
