"""The daemon's processing chain in process, with a clock the test moves:
kmsg records and tracepoint hits in, device identity at event time, kernel
line + hit merged, storms folded, resume after a restart, the read position.

No root and no daemon: a real ``DeviceTimeline`` over the recorded SAS sysfs
tree (tests/fixtures/sysfs/scsi_sas, disk sda = 8:0) fed uevents as the
daemon's loop feeds them; kmsg records in the real format (the block line
recorded on Linux 6.18, tests/fixtures/recorded/linux-6.18-loop-faults.kmsg);
hits decoded from tracepoint field values by the real decoder. Exactly-once
details of storms and ratelimit summaries are in test_pipeline_position.py.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pytest

from peripety.devices import DeviceTimeline, Resolver
from peripety.devices.timeline import Uevent
from peripety.sources.kmsg.record import parse_record
from peripety.pipeline import Pipeline
from peripety.position import ResumeIndex, kmsg_event_id, storm_event_id
from peripety.rules import RuleSet
from peripety.tracepoints.decode import hit_from_fields

BOOT = "2f1a3c5e-0000-4000-8000-0000000000aa"
SAS = Path(__file__).parent / "fixtures" / "sysfs" / "scsi_sas"
SDA_WWID = "naa.5000c500a1b2c3d7"
LINE = "3,{seq},{usec},-;I/O error, dev sda, sector {sector} op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2"
EPOCH = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)


def wallclock(kernel_usec: int) -> _dt.datetime:
    """The injected kernel-time -> wall-clock conversion: boot at EPOCH."""
    return EPOCH + _dt.timedelta(microseconds=kernel_usec)


@pytest.fixture(scope="module")
def rules():
    return RuleSet.builtin()


@pytest.fixture
def timeline():
    tl = DeviceTimeline(Resolver(str(SAS), udev=False, mountinfo=str(SAS / "mountinfo")))
    tl.apply(Uevent("add", "sda", "8:0", {"DISKSEQ": "7", "USEC_INITIALIZED": "1000", "DEVNAME": "/dev/sda"},
                    seqnum=1, received_usec=1000))
    yield tl
    tl.close()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def make_pipeline(rules, timeline, clock, store: list, *, hold: float = 0.25, storm_window: float = 5.0):
    return Pipeline(rules, timeline, store.append, boot_id=BOOT, hostname="h", hold=hold,
                    storm_window=storm_window, clock=clock, to_wallclock=wallclock)


def record(seq: int, usec: int, sector: int):
    return parse_record(LINE.format(seq=seq, usec=usec, sector=sector))


def block_hit(usec: int, sector: int, dev: int = 8 << 20):
    """A block_rq_error hit as the decoder makes it from the tracepoint's fields."""
    fields = {"dev": dev, "sector": sector, "nr_sector": 8, "error": -5, "rwbs": "R", "cmd": ""}
    return hit_from_fields("block_rq_error", fields, kernel_usec=usec)


def test_a_record_becomes_an_event_with_its_identity_time_and_device(rules, timeline, clock):
    store: list = []
    pipeline = make_pipeline(rules, timeline, clock, store, hold=0.0)
    pipeline.add_record(record(41, 5_000_000, 2048))
    pipeline.tick()
    [event] = store
    assert event.event_type == "BLK_IO_ERROR" and event.sources == ["kmsg"]
    assert event.event_id == kmsg_event_id(BOOT, 41)
    assert event.kdev == "sda" and event.dev_num == "8:0"
    assert event.cur_blk_info.wwid == SDA_WWID and event.cur_blk_info.diskseq == 7
    assert event.extension["sector"] == "2048"
    assert event.hostname == "h"
    assert dict(pipeline.stats) == {"records": 1, "matched": 1, "emitted": 1}
    assert pipeline.read_position() == 41


def test_the_device_is_the_one_that_was_there_at_the_records_kernel_time(rules, timeline, clock):
    """sda is replaced (new media, diskseq 8) after the failure was logged
    but before the record is processed: the event names the old identity."""
    store: list = []
    pipeline = make_pipeline(rules, timeline, clock, store, hold=0.0)
    timeline.apply(Uevent("remove", "sda", "8:0", {"DEVNAME": "/dev/sda"}, seqnum=2, received_usec=6_000_000))
    timeline.apply(Uevent("add", "sda", "8:0", {"DISKSEQ": "8", "USEC_INITIALIZED": "6000001",
                                                "DEVNAME": "/dev/sda"}, seqnum=3, received_usec=6_000_001))
    pipeline.add_record(record(50, 5_500_000, 4096))  # logged before the swap
    pipeline.add_record(record(51, 6_500_000, 4104))  # after it
    pipeline.tick()
    assert [e.cur_blk_info.diskseq for e in store] == [7, 8]


def test_line_and_hit_about_one_io_become_one_event_after_the_hold(rules, timeline, clock):
    store: list = []
    pipeline = make_pipeline(rules, timeline, clock, store)
    pipeline.add_hit(block_hit(5_000_000, 2048))
    clock.now = 0.01
    pipeline.add_record(record(60, 5_000_040, 2048))
    assert pipeline.next_deadline() == pytest.approx(0.25)
    clock.now = 0.2
    pipeline.tick()
    assert not store
    assert pipeline.read_position() == 59  # the held line keeps the position before it
    clock.now = 0.3
    pipeline.tick()
    [event] = store
    assert event.sources == ["kmsg", "bpf"]
    assert event.event_id == kmsg_event_id(BOOT, 60)  # the line's identity is kept
    assert event.raw_msg.startswith("I/O error, dev sda, sector 2048 ")
    assert event.extension["errno_name"] == "EIO" and event.extension["tracepoint"] == "block:block_rq_error"
    assert event.dev_num == "8:0" and event.cur_blk_info.wwid == SDA_WWID
    assert pipeline.read_position() == 60
    assert pipeline.stats["hits"] == 1 and pipeline.stats["emitted"] == 1


def test_a_hit_with_no_line_is_an_event_named_by_the_timeline(rules, timeline, clock):
    store: list = []
    pipeline = make_pipeline(rules, timeline, clock, store)
    pipeline.add_hit(block_hit(5_000_000, 8192))
    clock.now = 1.0
    pipeline.tick()
    [event] = store
    assert event.sources == ["bpf"] and event.event_type == "BLK_IO_ERROR"
    assert event.kdev == "sda" and event.dev_num == "8:0"  # not the hit's "8:0" as a name
    assert event.timestamp == wallclock(5_000_000)
    assert event.extension["sector"] == "8192"


def test_a_storm_is_ten_events_and_aggregates_by_the_injected_clock(rules, timeline, clock):
    store: list = []
    pipeline = make_pipeline(rules, timeline, clock, store, hold=0.0)
    for i in range(40):
        clock.now = (5_000_000 + i * 10_000) / 1e6  # in the daemon both are CLOCK_MONOTONIC
        pipeline.add_record(record(100 + i, 5_000_000 + i * 10_000, 2048 + 8 * i))
        pipeline.tick()
    assert len(store) == 10 and all(e.count == 1 for e in store)
    assert pipeline.read_position() == 109  # the open slice holds the position
    deadline = pipeline.next_deadline()
    assert deadline is not None and deadline > clock.now
    clock.now = deadline
    pipeline.tick()
    aggregates = [e for e in store if e.count > 1]
    assert sum(e.count for e in store) == 40
    assert aggregates[0].event_id == storm_event_id(BOOT, 110)
    assert aggregates[0].cur_blk_info.wwid == SDA_WWID
    clock.now += 10
    pipeline.drain()
    assert sum(e.count for e in store) == 40
    assert pipeline.read_position() == 139


def test_resume_stores_each_record_once(rules, timeline, clock):
    """A restart re-reads records after the saved position: those the store
    already holds are skipped, the rest are stored, the position moves on."""
    store: list = []
    first = make_pipeline(rules, timeline, clock, store, hold=0.0)
    for seq in (200, 201, 202):
        first.add_record(record(seq, 5_000_000 + seq, 2048 + seq))
    first.tick()
    assert len(store) == 3
    saved = 200  # the last position saved before a kill -9
    second = make_pipeline(rules, timeline, Clock(), store, hold=0.0)
    second.resume(saved, ResumeIndex(BOOT, list(store)))
    for seq in (201, 202, 203):
        second.add_record(record(seq, 5_000_000 + seq, 2048 + seq))
    second.drain()
    assert [e.extension["sector"] for e in store] == ["2248", "2249", "2250", "2251"]
    assert second.stats["skipped_duplicates"] == 2
    assert second.read_position() == 203


def test_a_user_space_write_to_kmsg_moves_the_position_but_is_no_event(rules, timeline, clock):
    store: list = []
    pipeline = make_pipeline(rules, timeline, clock, store, hold=0.0)
    forged = parse_record(LINE.format(seq=300, usec=5_000_000, sector=1).replace("3,", "11,", 1))
    assert forged.facility == 1
    pipeline.add_record(forged)
    pipeline.drain()
    assert not store
    assert pipeline.read_position() == 300
    assert pipeline.stats["records"] == 1 and pipeline.stats["matched"] == 0


def test_reconfigure_takes_new_rules_and_storm_window(rules, timeline, clock):
    """SIGHUP's path: the pipeline gets new rules and a new storm window
    through ``reconfigure``; the next record uses them."""
    from peripety.config import load_config

    line = ("6,{seq},5000000,-;EXT4-fs (sda): mounted filesystem 0b5f7e1c-2a35-4b62-8c21-0f4c0d6a9e11 r/w "
            "with ordered data mode. Quota mode: none.")
    store: list = []
    pipeline = make_pipeline(rules, timeline, clock, store, hold=0.0, storm_window=5.0)
    pipeline.add_record(parse_record(line.format(seq=400)))
    pipeline.reconfigure(load_config(Path(__file__).parent.parent / "etc" / "peripetyd.conf").rules,
                         storm_window=0.0)
    pipeline.add_record(parse_record(line.format(seq=401)))
    pipeline.drain()
    built_in, site = store
    # the site rule captures only the uuid; the built-in one also the mode
    assert built_in.extension["data_mode"] == "ordered"
    assert site.extension == {"uuid": "0b5f7e1c-2a35-4b62-8c21-0f4c0d6a9e11"}
    assert pipeline.storm.window == 0.0
