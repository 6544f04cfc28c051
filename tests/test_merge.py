"""Correlation of kmsg lines with tracepoint hits, storms, root causes."""

from peripety.event import BlkInfo, StorageEvent
from peripety.merge import Correlator, RootCauseLinker, SectorRanges, StormAggregator
from peripety.position import InFlight


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


def test_lines_held_before_the_first_hit_still_pair_with_it_in_the_order_they_came():
    """The correlator works out pair keys only once a second source shows
    up: lines held before the first hit pair with it as if it had from the
    start, the earliest line of a key first, whatever their kernel times."""
    corr = Correlator(hold=0.25)
    late, early, other, released = (blk_error(8, usec=3_000_000), blk_error(8, usec=1_000_000),
                                    blk_error(16, usec=2_000_000), blk_error(24, usec=10))
    corr.add(released, now=0.0)
    assert corr.release(now=0.3) == [released]  # gone before the hit: never pairs
    for line in (late, early, other):
        corr.add(line, now=0.3)
    for sector, usec in ((8, 2_000_000), (16, 2_000_100), (24, 20)):
        corr.add(blk_error(sector, source="bpf", usec=usec), now=0.31)
    out = corr.release(now=1.0)
    assert sorted((e.extension["sector"], e.sources, e.event_id) for e in out if "kmsg" in e.sources) == [
        ("16", ["kmsg", "bpf"], other.event_id), ("8", ["kmsg"], early.event_id),
        ("8", ["kmsg", "bpf"], late.event_id)]
    assert [(e.extension["sector"], e.sources) for e in out if "kmsg" not in e.sources] == [("24", ["bpf"])]


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
    assert aggregate.extension["sectors"] == "4106-4135"
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
    fs = linker.link(fs)
    assert fs.root_cause_event_id == io.event_id
    unrelated = StorageEvent(event_type="FS_ERROR", sub_system="xfs", kdev="sdc1", cur_blk_info=BlkInfo(wwid="other"))
    unrelated.kernel_usec = 2_000_000
    unrelated = linker.link(unrelated)
    assert unrelated.root_cause_event_id is None
    too_late = StorageEvent(event_type="FS_ERROR", sub_system="ext4", kdev="sdb1", cur_blk_info=part)
    too_late.kernel_usec = 90_000_000
    too_late = linker.link(too_late)
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


def test_sector_ranges_merge_and_say_when_they_are_truncated():
    ranges = SectorRanges(max_ranges=3)
    for first, last in [(4096, 4096), (2048, 2055), (2056, 2056), (4098, 4098), (4097, 4097), (2040, 2047)]:
        ranges.add(first, last)
    assert str(ranges) == "2040-2056,4096-4098"
    ranges.add(8000, 8000)
    ranges.add(9000, 9007)  # a fourth range: not listed, counted
    assert str(ranges) == "2040-2056,4096-4098,8000"
    assert ranges.unlisted == 8
    aggregate_storm = StormAggregator(window=5.0, burst=0, max_sector_ranges=2)
    for sector in (10, 20, 30, 40):
        aggregate_storm.add(blk_error(sector), now=0.0)
    [agg] = aggregate_storm.expire(now=10.0)
    assert agg.extension["sectors"] == "10,20"
    assert agg.extension["sectors_truncated"] == "true"
    assert agg.extension["sectors_unlisted"] == "2"
    assert agg.count == 4


def test_long_storm_is_one_aggregate_per_second_each_with_its_sectors():
    """A 5 s storm at 200 failures/s: 10 singles, then aggregates that each
    cover one second of kernel time and are released a second after they
    open, while the storm goes on (not at its end)."""
    storm = StormAggregator(window=5.0, burst=10)
    emitted, released_at = [], {}
    for i in range(1000):
        t = 100.0 + i * 0.005
        event = blk_error(2048 + i, usec=int(t * 1e6))
        ready, _ = storm.add(event, now=t)
        for e in ready:
            released_at[e.event_id] = t
        emitted += ready
    emitted += storm.expire(now=200.0)
    assert sum(e.count for e in emitted) == 1000
    singles = [e for e in emitted if e.count == 1]
    aggregates = [e for e in emitted if e.count > 1]
    assert len(singles) == 10
    assert 4 <= len(aggregates) <= 6, [a.count for a in aggregates]
    sectors = set()
    for agg in aggregates:
        for part in agg.extension["sectors"].split(","):
            first, _, last = part.partition("-")
            sectors.update(range(int(first), int(last or first) + 1))
        assert (agg.last_timestamp - agg.timestamp).total_seconds() < 1.0 or agg.last_timestamp is not None
    assert sectors | {int(e.extension["sector"]) for e in singles} == set(range(2048, 3048))
    # all but the last aggregate were released while the storm was running
    assert sum(1 for a in aggregates if a.event_id in released_at) >= len(aggregates) - 1
    assert len({e.event_id for e in emitted}) == len(emitted)


def test_storm_folds_by_kernel_time_not_by_arrival():
    """Two bursts 60 s apart in kernel time, read in one go (a replay): two
    storms, each with its own burst, not one."""
    storm = StormAggregator(window=5.0, burst=2)
    emitted = []
    for base in (10.0, 70.0):
        for i in range(5):
            emitted += storm.add(blk_error(i, usec=int((base + i * 0.01) * 1e6)), now=0.0)[0]
    emitted += storm.expire(now=0.0, everything=True)
    assert [e.count for e in emitted] == [1, 1, 3, 1, 1, 3]


def test_merged_line_and_hit_keep_the_lines_kmsg_seq():
    """The merged event is what releases the kernel line's seq for the saved
    position (it was lost when the hit came first: the position stuck)."""
    corr = Correlator(hold=0.25)
    hit = blk_error(10, source="bpf", usec=100)
    line = blk_error(10, source="kmsg", usec=120)
    line.origin_seq = 42
    corr.add(hit, now=0.0)
    corr.add(line, now=0.01)
    [merged] = corr.release(now=1.0)
    assert merged.sources == ["kmsg", "bpf"]
    assert merged.origin_seq == 42
    assert merged.event_id == line.event_id


def test_aggregate_ids_never_equal_a_single_events_id():
    ids = iter(["agg-1", "agg-2"])
    storm = StormAggregator(window=5.0, burst=1, aggregate_id=lambda agg, first_seq: next(ids))
    first, second, third = blk_error(1), blk_error(2), blk_error(3)
    single_ids = {first.event_id, second.event_id, third.event_id}
    out = []
    for e in (first, second, third):
        out += storm.add(e, now=0.0)[0]
    out += storm.expire(now=10.0)
    assert [e.event_id for e in out] == [first.event_id, "agg-1"]
    assert "agg-1" not in single_ids
