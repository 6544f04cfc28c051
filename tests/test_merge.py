"""Correlation of kmsg lines with tracepoint hits, storms, root causes."""

from peripety.event import BlkInfo, StorageEvent
from peripety.merge import Correlator, RootCauseLinker, StormAggregator
from peripety.pipeline import InFlight


def blk_error(sector, source="kmsg", dev_num="7:0", kdev="loop0", usec=1_000_000):
    event = StorageEvent(
        event_type="BLK_IO_ERROR",
        sub_system="block",
        kdev=kdev,
        dev_num=dev_num,
        msg=f"I/O error on {kdev} at sector {sector}",
        raw_msg=f"I/O error, dev {kdev}, sector {sector} op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2"
        if source == "kmsg" else "",
        extension={"sector": str(sector)},
        sources=[source],
    )
    event.kernel_usec = usec
    return event


def test_line_and_hit_about_the_same_io_become_one_event():
    corr = Correlator(hold=0.25)
    hit = blk_error(2048, source="bpf", usec=1_000_000)
    hit.extension["errno_name"] = "EIO"
    line = blk_error(2048, source="kmsg", usec=1_000_050)
    corr.add(hit, now=0.0)
    corr.add(line, now=0.01)
    assert corr.release(now=0.1) == []  # still held
    out = corr.release(now=1.0)
    assert len(out) == 1
    merged = out[0]
    assert merged.sources == ["kmsg", "bpf"]
    assert merged.event_id == line.event_id  # the line's identity is kept
    assert merged.raw_msg.startswith("I/O error, dev loop0, sector 2048")
    assert merged.extension["errno_name"] == "EIO"
    assert merged.dev_num == "7:0"


def test_different_sectors_or_devices_are_not_merged():
    corr = Correlator(hold=0.1)
    corr.add(blk_error(1, source="bpf", usec=1_000_000), now=0.0)
    corr.add(blk_error(2, source="kmsg", usec=1_000_001), now=0.0)
    corr.add(blk_error(1, source="kmsg", dev_num="7:1", kdev="loop1", usec=1_000_002), now=0.0)
    out = corr.release(now=1.0)
    assert [e.sources for e in out] == [["bpf"], ["kmsg"], ["kmsg"]]


def test_hits_far_apart_in_kernel_time_are_not_merged():
    corr = Correlator(hold=0.1, window_usec=1_000_000)
    corr.add(blk_error(7, source="bpf", usec=1_000_000), now=0.0)
    corr.add(blk_error(7, source="kmsg", usec=5_000_000), now=0.0)
    assert len(corr.release(now=1.0)) == 2


def test_release_is_in_kernel_time_order_across_sources():
    corr = Correlator(hold=0.1)
    late_source_but_older = blk_error(10, source="bpf", usec=100)
    newer = blk_error(20, source="kmsg", usec=200)
    corr.add(newer, now=0.0)
    corr.add(late_source_but_older, now=0.05)
    out = corr.release(now=1.0)
    assert [e.extension["sector"] for e in out] == ["10", "20"]


def test_storm_counts_every_occurrence_and_stays_bounded():
    storm = StormAggregator(window=5.0, burst=10, max_keys=8)
    emitted = []
    for i in range(40):
        ready, _ = storm.add(blk_error(4096 + i), now=0.001 * i)
        emitted += ready
    assert len(emitted) == 10  # the burst passes individually
    emitted += storm.expire(now=10.0)
    assert len(emitted) == 11
    assert sum(e.count for e in emitted) == 40
    aggregate = emitted[-1]
    assert aggregate.count == 30
    assert aggregate.extension["first_sector"] == "4106"
    assert aggregate.extension["last_sector"] == "4135"
    assert aggregate.last_timestamp is not None
    # many devices: never more than max_keys windows held
    for dev in range(100):
        storm.add(blk_error(1, dev_num=f"7:{dev}", kdev=f"loop{dev}"), now=20.0)
    assert len(storm._windows) <= 8


def test_storm_outcomes_name_what_happened_to_the_event():
    storm = StormAggregator(window=5.0, burst=1)
    assert storm.add(blk_error(1), now=0.0)[1] == storm.PASSED
    assert storm.add(blk_error(2), now=0.0)[1] == storm.AGGREGATE
    assert storm.add(blk_error(3), now=0.0)[1] == storm.FOLDED


def test_fs_error_points_at_the_block_error_below_it():
    linker = RootCauseLinker(window_usec=60_000_000)
    disk = BlkInfo(wwid="naa.5000c500a1b2c3d4", dev_num="8:16")
    part = BlkInfo(wwid="naa.5000c500a1b2c3d4-part1", dev_num="8:17", owners_wwids=["naa.5000c500a1b2c3d4"])
    io = blk_error(123, dev_num="8:16", kdev="sdb")
    io.cur_blk_info = disk
    fs = StorageEvent(event_type="FS_IO_ERROR", sub_system="ext4", kdev="sdb1", dev_num="8:17", cur_blk_info=part)
    io.kernel_usec, fs.kernel_usec = 1_000_000, 2_000_000
    linker.link(io)
    linker.link(fs)
    assert fs.root_cause_event_id == io.event_id
    unrelated = StorageEvent(event_type="FS_ERROR", sub_system="xfs", kdev="sdc1", cur_blk_info=BlkInfo(wwid="other"))
    unrelated.kernel_usec = 2_000_000
    linker.link(unrelated)
    assert unrelated.root_cause_event_id is None
    too_late = StorageEvent(event_type="FS_ERROR", sub_system="ext4", kdev="sdb1", cur_blk_info=part)
    too_late.kernel_usec = 90_000_000
    linker.link(too_late)
    assert too_late.root_cause_event_id is None


def test_resume_position_never_passes_an_event_still_in_memory():
    flight = InFlight()
    flight.last_read = 10
    assert flight.safe_seq() == 10
    flight.hold(5)
    flight.hold(8)
    flight.last_read = 12
    assert flight.safe_seq() == 4
    flight.release(5)
    assert flight.safe_seq() == 7
    flight.release(8)
    assert flight.safe_seq() == 12


def test_ext4_error_hit_pairs_with_its_line_by_function_and_line():
    corr = Correlator(hold=0.1)
    line = StorageEvent(event_type="FS_ERROR", sub_system="ext4", kdev="loop0", dev_num="7:0",
                        extension={"function": "ext4_journal_check_start", "line": "87"}, sources=["kmsg"])
    hit = StorageEvent(event_type="FS_ERROR", sub_system="ext4", kdev="7:0", dev_num="7:0",
                       extension={"function": "ext4_journal_check_start", "line": "87", "fs": "ext4"},
                       sources=["bpf"])
    line.kernel_usec, hit.kernel_usec = 1_000_000, 1_000_900
    corr.add(line, now=0.0)
    corr.add(hit, now=0.0)
    out = corr.release(now=1.0)
    assert len(out) == 1 and out[0].sources == ["kmsg", "bpf"]


def test_xfs_daddr_in_hex_pairs_with_the_decoded_hit():
    corr = Correlator(hold=0.1)
    line = StorageEvent(event_type="FS_IO_ERROR", sub_system="xfs", kdev="loop0", dev_num="7:0",
                        extension={"daddr": "0x80"}, sources=["kmsg"])
    hit = StorageEvent(event_type="FS_IO_ERROR", sub_system="xfs", kdev="7:0", dev_num="7:0",
                       extension={"daddr": "128"}, sources=["bpf"])
    hit.kernel_usec, line.kernel_usec = 1_000_000, 1_000_100
    corr.add(hit, now=0.0)
    corr.add(line, now=0.0)
    out = corr.release(now=1.0)
    assert len(out) == 1 and out[0].extension["daddr"] == "128" and out[0].raw_msg == line.raw_msg
