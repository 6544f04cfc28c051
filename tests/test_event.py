"""The event model: JSON round trip, the original project's JSON; its journald fields (stores/journal.py)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from peripety.errors import EventFormatError
from peripety.event import BlkInfo, Severity, StorageEvent, new_event_id
from peripety.stores.journal import journal_entry, journal_fields
from peripety.stores.journald_socket import encode_entry
from peripety.stores.provenance import PERIPETYD_WRITER, SenderPolicy, sender_from_fields

UTC = dt.timezone.utc


def sample(**overrides) -> StorageEvent:
    fields = dict(
        event_type="BLK_IO_ERROR",
        sub_system="block",
        severity=Severity.Error,
        kdev="loop0",
        msg="I/O error on loop0 at sector 8 — \"quoted\"\n",
        raw_msg="I/O error, dev loop0, sector 8 op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2",
        timestamp=dt.datetime(2025, 11, 25, 3, 44, 1, 123456, tzinfo=UTC),
        hostname="host1",
        extension={"sector": "8", "blk_status": "I/O error"},
        sources=["kmsg", "bpf"],
    )
    fields.update(overrides)
    return StorageEvent(**fields)


def test_json_round_trip_keeps_every_field():
    event = sample(root_cause_event_id=str(uuid.uuid4()), count=3,
                   last_timestamp=dt.datetime(2025, 11, 25, 3, 45, tzinfo=UTC))
    again = StorageEvent.from_json(event.to_json())
    assert again.to_dict() == event.to_dict()
    assert StorageEvent.from_json(event.to_json(pretty=True)).to_dict() == event.to_dict()


def test_timestamp_is_rfc3339_with_microseconds():
    assert sample().to_dict()["timestamp"] == "2025-11-25T03:44:01.123456+00:00"


def test_original_project_json_is_accepted():
    original = {
        "hostname": "gris",
        "severity": "Ctritical",
        "sub_system": "FsExt4",
        "timestamp": 1511862342123456,
        "event_id": "b5d1e5a6-5d0f-4c0b-9a57-4d9e1c6e6f3e",
        "event_type": "FS_ERROR",
        "dev_wwid": "36001405a0b1c2d3",
        "dev_path": "/dev/sdb",
        "owners_wwids": ["36001405a0b1c2d3"],
        "owners_paths": ["/dev/sdb"],
        "kdev": "sdb",
        "msg": "EXT4-fs error (device sdb): ext4_find_entry",
        "extention": {"mount_point": "/mnt"},
    }
    event = StorageEvent.from_dict(original)
    assert event.severity is Severity.Critical and event.sub_system == "ext4"
    assert event.extension == {"mount_point": "/mnt"}
    assert event.timestamp == dt.datetime(2017, 11, 28, 9, 45, 42, 123456, tzinfo=UTC)
    assert event.cur_blk_info.wwid == "36001405a0b1c2d3" and event.cur_blk_info.mount_point == "/mnt"
    assert event.raw_msg == original["msg"]


@pytest.mark.parametrize("bad", ["[1, 2]", '{"sub_system": "block"}', "{not json", '{"event_type": "X", "sub_system": "nope"}'])
def test_bad_json_raises_event_format_error(bad):
    with pytest.raises(EventFormatError):
        StorageEvent.from_json(bad)


def test_journal_fields():
    event = sample(cur_blk_info=BlkInfo(wwid="w1", blk_path="/dev/dm-3", preferred_blk_path="/dev/mapper/mpatha",
                                        dev_num="253:3", owners_wwids=["a", "b"], owners_paths=["/dev/sdb", "/dev/sdc"],
                                        mount_point="/srv"))
    fields = journal_fields(event)
    assert fields["IS_PERIPETY"] == "TRUE" and fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "peripetyd" and fields["EVENT_TYPE"] == "BLK_IO_ERROR"
    assert fields["DEV_PATH"] == "/dev/mapper/mpatha" and fields["DEV_NUM"] == "253:3"
    assert fields["OWNERS_PATHS"] == ["/dev/sdb", "/dev/sdc"] and fields["MOUNT_POINT"] == "/srv"
    assert fields["EXT_SECTOR"] == "8" and fields["EXT_BLK_STATUS"] == "I/O error"
    assert len(fields["MESSAGE_ID"]) == 32
    assert json.loads(fields["JSON"])["event_id"] == event.event_id
    assert "ROOT_CAUSE_EVENT_ID" not in fields


_DEVICE = BlkInfo(wwid="w1", blk_path="/dev/dm-3", preferred_blk_path="/dev/mapper/mpatha", dev_num="253:3",
                  owners_wwids=["a", "b"], owners_paths=["/dev/sdb", "/dev/sdc"], mount_point="/srv")


@pytest.mark.parametrize("overrides", [
    {},
    {"cur_blk_info": _DEVICE, "hierarchy_blk_info": [_DEVICE]},
    {"cur_blk_info": BlkInfo(blk_path="/dev/loop0", dev_num="7:0"), "dev_num": ""},  # DEV_PATH from blk_path
    {"cur_blk_info": BlkInfo(wwid="w\nx", preferred_blk_path="/dev/x", mount_point="/m\nt")},  # binary form
    {"msg": "", "raw_msg": ""},  # MESSAGE falls back to the event type
    {"msg": "two\nlines"}, {"kdev": ""}, {"dev_num": "", "cur_blk_info": None},
    {"kdev": "sd%s", "msg": "100% %d done", "extension": {"pct": "50%"}},
    {"root_cause_event_id": "cause-1", "extension": {"a-b": "1", "a_b": "2", "c": "3"}},  # EXT_A_B twice
    {"extension": {"empty": "", "n": 5, "nl": "x\ny"}},
    {"extension": {"ünï code": "välue"}, "msg": "ümlaut \u2028"},
    {"event_type": "NOT_A_KNOWN_TYPE", "severity": Severity.Debug},
    {"cur_blk_info": BlkInfo(owners_wwids=[["unhashable"]], owners_paths=["/dev/a"])},
    {"extension": {"none": None, "k": "v"}}, {"root_cause_event_id": "cause\n2"},
    {"extension": {"Sector": "1", "sector": "2"}},  # one EXT_SECTOR: the last value
])
def test_journal_entry_is_the_encoded_journal_fields(overrides):
    """The daemon's fast encoder writes exactly what the field mapping says."""
    event = sample(**overrides)
    for _ in range(2):  # second time: from the caches
        assert journal_entry(event) == encode_entry(journal_fields(event))


def test_journal_entry_of_a_device_changed_in_place_is_its_new_fields():
    """The encoder keeps each device's lines per object; a device changed
    in place is written as it is now."""
    info = BlkInfo(wwid="w", preferred_blk_path="/dev/sdb", dev_num="8:16", owners_wwids=["a"], owners_paths=["/dev/a"])
    event = sample(cur_blk_info=info)
    for change in (lambda: None, lambda: info.owners_paths.append("/dev/b"), lambda: info.owners_wwids.append("b"),
                   lambda: setattr(info, "mount_point", "/srv"), lambda: setattr(info, "wwid", "w2")):
        change()
        assert journal_entry(event) == encode_entry(journal_fields(event))


def test_event_ids_are_unique_version4_uuids():
    ids = [new_event_id() for _ in range(3000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


@pytest.mark.parametrize("policy", [PERIPETYD_WRITER, SenderPolicy.of(uids=(0, 1000), comms=("a",), exes=("/x",)),
                                    SenderPolicy.of(units=("u.service",))])
def test_trusting_get_all_fields_is_trusting_the_sender_they_name(policy):
    """``trusts_fields`` (readers, from ``_get_all``) decides as ``trusts``
    does on the same sender, whatever the spelling journald gave."""
    values = {"_UID": [b"0", b"00", b"1000", b"x", "0", [b"0", b"5"], b"\xff"],
              "_COMM": [b"peripetyd", b"peripetydX", b"a", "peripetyd", [b"peripetyd"], b"\xffperipetyd"],
              "_SYSTEMD_UNIT": [b"peripetyd.service", b"u.service", [b"u.service"], b"other"],
              "_EXE": [b"/x", b"/usr/bin/python3"]}
    seen = set()
    for uid in values["_UID"] + [None]:
        for comm in values["_COMM"] + [None]:
            for unit in values["_SYSTEMD_UNIT"] + [None]:
                for exe in values["_EXE"] + [None]:
                    fields = {k: v for k, v in (("_UID", uid), ("_COMM", comm), ("_SYSTEMD_UNIT", unit),
                                                ("_EXE", exe)) if v is not None}
                    trusted = policy.trusts_fields(fields)
                    assert trusted == policy.trusts(sender_from_fields(fields)), fields
                    seen.add(trusted)
    assert seen == {True, False}


def test_a_journald_that_takes_nothing_times_the_sender_out(tmp_path, monkeypatch):
    """Sends never block the daemon for long: a full queue is waited on for
    SEND_TIMEOUT, then the store says so (and the daemon spools)."""
    import socket
    import time

    from peripety.errors import StoreError
    from peripety.stores import journald_socket

    monkeypatch.setattr(journald_socket, "SEND_TIMEOUT", 0.3)
    path = tmp_path / "socket"
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stuck.bind(str(path))  # never read
    sender = journald_socket.JournaldSocket(path)
    try:
        entry = journal_entry(sample())
        with pytest.raises(StoreError, match="timed out"):
            for sent in range(100_000):
                started = time.monotonic()
                sender.send_entry(entry)
        assert sent > 0 and time.monotonic() - started >= 0.3
        stuck.recv(65536)  # room for one again: the next send goes through at once
        sender.send_entry(entry)
    finally:
        sender.close()
        stuck.close()


@pytest.mark.parametrize("field, value", [
    ("count", float("nan")), ("count", 1e400), ("count", [1]), ("extension", 5), ("cur_blk_info", 5),
    ("hierarchy_blk_info", 5), ("sources", 5),
])
def test_json_of_the_right_shape_with_a_field_of_the_wrong_kind_is_not_an_event(field, value):
    """A forged journal entry (read with --include-untrusted) or a damaged
    one is refused as not an event, never a crash of the reader."""
    data = StorageEvent("BLK_IO_ERROR", "block").to_dict()
    data[field] = value
    with pytest.raises(EventFormatError, match="not a peripety event"):
        StorageEvent.from_json(json.dumps(data))


@pytest.fixture
def zone(monkeypatch):
    """Set the local zone (TZ, time.tzset()) for one test."""
    import time

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def _around(instants: list[float]) -> list[float]:
    """Times at and around each instant's seconds, where rounding to the
    microsecond may carry into the next second, in increasing order."""
    offsets = (-1.0, -1e-6, -5e-7, -4e-7, 0.0, 1e-6, 0.25, 0.4999995, 0.999998, 0.999999, 0.9999995, 0.9999996, 1.0)
    return sorted({t + d + k for t in instants for k in (-3600.0, -1.0, 0.0, 1.0, 1800.0) for d in offsets})


@pytest.mark.parametrize("name,transitions", [
    ("Europe/Berlin", ["2026-03-29T01:00:00+00:00", "2026-10-25T01:00:00+00:00"]),
    ("Australia/Lord_Howe", ["2026-04-04T15:00:00+00:00", "2026-10-03T15:30:00+00:00"]),  # 30-minute shifts
    ("UTC", ["2026-01-01T00:00:00+00:00"]),
])
def test_local_times_and_their_text_are_astimezones_across_offset_changes(zone, name, transitions):
    """``local_time`` and ``format_timestamp`` keep the local zone per second:
    their results equal ``fromtimestamp().astimezone()`` and
    ``astimezone().isoformat()`` on both sides of daylight saving changes
    and where the microsecond rounding carries into the next second."""
    from peripety.event import format_timestamp, local_time, set_output_utc

    zone("UTC")  # what was kept for the same seconds under another zone is not used after time.tzset()
    times = _around([dt.datetime.fromisoformat(t).timestamp() for t in transitions])
    for t in times:
        format_timestamp(local_time(t))
    zone(name)
    got, want = local_time(times[-1]), dt.datetime.fromtimestamp(times[-1]).astimezone()
    assert (got, got.utcoffset()) == (want, want.utcoffset())
    offsets = set()
    for t in times:
        got, want = local_time(t), dt.datetime.fromtimestamp(t).astimezone()
        assert (got, got.utcoffset(), got.tzname(), got.fold) == (want, want.utcoffset(), want.tzname(), want.fold), t
        offsets.add(got.utcoffset())
        for utc in (False, True):
            set_output_utc(utc)
            try:
                for ts in (got, got.astimezone(UTC), got.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))):
                    assert format_timestamp(ts) == ts.astimezone(UTC if utc else None).isoformat(
                        timespec="microseconds"), (t, ts)
            finally:
                set_output_utc(False)
    assert len(offsets) == (1 if name == "UTC" else 2)
