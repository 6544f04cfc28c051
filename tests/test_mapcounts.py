"""MapLedger: the stored total equals the kernel's map count, whatever part of
the failures also arrived as detail events (samples, kernel lines)."""

from __future__ import annotations

from peripety.event import StorageEvent
from peripety.mapcounts import MapLedger, aggregate_event
from peripety.merge import MAX_SECTOR_RANGES as MAX_RANGES
from peripety.tracepoints.aggregates import Aggregate, Aggregates


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _agg(count, sectors=((2048, 2055),), dev="7:0", kind="block_rq_error", first=1_000, last=2_000, **kw):
    return Aggregate(kind=kind, count=count, first_usec=first, last_usec=last, dev_num=dev, kdev=dev,
                     op="READ", status=-5, error="EIO", errno=5, blk_status="I/O", sectors=tuple(sectors),
                     sector_min=sectors[0][0] if sectors else None,
                     sector_max=sectors[-1][1] if sectors else None, **kw)


def _detail(sources, dev="7:0", event_type="BLK_IO_ERROR", sub_system="block", kernel_usec=5_000, **ext):
    event = StorageEvent(event_type=event_type, sub_system=sub_system, kdev="loop0", dev_num=dev,
                         msg="I/O error", sources=list(sources), extension=dict(ext))
    event.kernel_usec = kernel_usec
    return event


def _ledger(clock, attached_usec=1_000):
    return MapLedger(hostname="h", hold=0.25, attached_usec=attached_usec, clock=clock)


def test_map_count_minus_detail_events_is_stored_once():
    clock = Clock()
    ledger = _ledger(clock)
    # 3 samples (one merged with its line) and one line beyond the sample budget
    noted = [ledger.note(_detail(["kmsg", "bpf"])), ledger.note(_detail(["bpf"])), ledger.note(_detail(["bpf"])),
             ledger.note(_detail(["kmsg"]))]
    assert noted == [True] * 4
    ledger.add(Aggregates(items=[_agg(100, sectors=((0, 99),))]))
    assert ledger.settle() == []  # held as long as the merge stage holds details
    clock.now += 0.25
    [event] = ledger.settle()
    assert event.count == 96 and event.event_type == "BLK_IO_ERROR" and event.sources == ["bpf"]
    assert event.extension["sectors"] == "0-99"
    assert event.extension["counted_by"] == "bpf-maps"
    assert (event.extension["op"], event.extension["errno_name"], event.extension["blk_status"]) == ("READ", "EIO", "I/O error")
    assert (event.dev_num, event.kdev, event.kernel_usec) == ("7:0", "7:0", 1_000)
    assert ledger.settle(everything=True) == []
    assert ledger.tracked() == 0  # a settled key holds no memory


def test_detail_noted_after_its_count_is_absorbed_by_the_next_count():
    clock = Clock()
    ledger = _ledger(clock)
    ledger.add(Aggregates(items=[_agg(10)]))
    [first] = ledger.settle(everything=True)
    assert first.count == 10
    ledger.note(_detail(["bpf"]))  # late: its failure was in those 10
    ledger.add(Aggregates(items=[_agg(5)]))
    [second] = ledger.settle(everything=True)
    assert first.count + 1 + second.count == 15


def test_no_event_when_details_already_stored_every_failure():
    clock = Clock()
    ledger = _ledger(clock)
    for _ in range(3):
        ledger.note(_detail(["kmsg", "bpf"]))
    ledger.add(Aggregates(items=[_agg(3)]))
    assert ledger.settle(everything=True) == []


def test_lines_before_the_probes_attached_or_without_device_are_not_covered():
    ledger = _ledger(Clock(), attached_usec=10_000)
    assert not ledger.note(_detail(["kmsg"], kernel_usec=9_999))
    assert ledger.note(_detail(["kmsg"], kernel_usec=10_000))
    assert not ledger.note(_detail(["kmsg"], dev=""))
    # a line type no probe counts one for one
    assert not ledger.note(_detail(["kmsg"], event_type="BLK_BUFFER_IO_ERROR"))
    ledger.add(Aggregates(items=[_agg(4)]))
    [event] = ledger.settle(everything=True)
    assert event.count == 3


def test_keys_are_per_type_and_device_and_scsi_samples_by_target():
    ledger = _ledger(Clock())
    # a SCSI sample resolved to sdb keeps its target in extension.hctl
    scsi = _detail(["bpf"], dev="8:16", event_type="SCSI_CMD_FAILED", sub_system="SCSI", hctl="2:0:0:1")
    assert ledger.note(scsi)
    ledger.note(_detail(["bpf"], dev="7:1"))
    ledger.add(Aggregates(items=[
        _agg(5, dev="7:0"), _agg(2, dev="7:1"),
        Aggregate(kind="scsi_cmd_done", count=4, first_usec=1, last_usec=2, kdev="2:0:0:1", op="READ(10)",
                  error="DID_TIME_OUT"),
        Aggregate(kind="scsi_eh_wakeup", count=9, first_usec=1, last_usec=2, kdev="host2"),
    ]))
    events = {(e.event_type, e.kdev): e.count for e in ledger.settle(everything=True)}
    assert events == {("BLK_IO_ERROR", "7:0"): 5, ("BLK_IO_ERROR", "7:1"): 1, ("SCSI_CMD_FAILED", "2:0:0:1"): 3}


def test_failures_beyond_the_key_map_are_still_an_event():
    ledger = _ledger(Clock())
    ledger.add(Aggregates(untracked={"block_rq_error": 7, "scsi_eh_wakeup": 1}))
    [event] = ledger.settle(everything=True)
    assert (event.event_type, event.count, event.extension["device"]) == ("BLK_IO_ERROR", 7, "untracked")


def test_aggregate_event_joins_ops_and_bounds_its_sector_list():
    many = tuple((i * 16, i * 16 + 7) for i in range(MAX_RANGES + 5))
    read = _agg(300, sectors=many)
    write = Aggregate(kind="block_rq_error", count=2, first_usec=500, last_usec=9_000, dev_num="7:0", kdev="7:0",
                      op="WRITE", status=-5, error="EIO", errno=5, blk_status="I/O", unmapped=2,
                      sector_min=1 << 30, sector_max=(1 << 30) + 7)
    event = aggregate_event([read, write], 302, hostname="h")
    assert event.extension["op"] == "READ,WRITE"
    assert event.extension["sectors"].count(",") == MAX_RANGES - 1
    # the bound and its wording are the storm stage's (merge.SectorRanges)
    assert (event.extension["sectors_truncated"], event.extension["sectors_unlisted"]) == ("true", str(5 * 8))
    assert event.extension["sectors_unmapped"] == "2"
    assert (event.extension["first_sector"], event.extension["last_sector"]) == ("0", str((1 << 30) + 7))
    assert event.kernel_usec == 500 and event.count == 302


def test_map_counts_fold_into_a_storm_slice_with_all_their_sectors():
    from peripety.merge import StormAggregator

    # a map count is never one of the burst's singles, even with room left
    storm = StormAggregator(window=5.0, burst=10)
    one = aggregate_event([_agg(40, sectors=((0, 39),), first=1_000_000)], 40, hostname="h")
    two = aggregate_event([_agg(2, sectors=((100, 107), (4096, 4103)), first=1_200_000)], 2, hostname="h")
    assert storm.add(one, now=1.0)[1] == StormAggregator.AGGREGATE
    assert storm.add(two, now=1.2)[1] == StormAggregator.FOLDED
    [agg] = storm.expire(now=10.0, everything=True)
    assert agg.count == 42
    assert agg.extension["sectors"] == "0-39,100-107,4096-4103"
    assert "sectors_truncated" not in agg.extension


def _nvme_line(disk="nvme1c1n1", kernel_usec=5_000):
    event = StorageEvent(event_type="NVME_IO_ERROR", sub_system="NVMe", kdev=disk, dev_num="",
                         msg="I/O Error", sources=["kmsg"], extension={"sct": "0x0", "sc": "0x6"})
    event.kernel_usec = kernel_usec
    return event


def test_nvme_lines_are_taken_off_the_count_of_their_disk():
    """nvme_log_error prints a line for a failed completion nvme_complete_rq
    counted (kinds.toml line_unit = kdev): a line beyond the sample budget
    is one of the map's failures, not one more (the lab measured 309 stored
    for 300 failures before)."""
    clock = Clock()
    ledger = _ledger(clock)
    lines = [_nvme_line() for _ in range(9)]
    assert all(ledger.note(line) for line in lines)
    sample = _nvme_line()
    sample.sources = ["kmsg", "bpf"]
    sample.extension["disk"] = "nvme1c1n1"
    assert ledger.note(sample)
    ledger.add(Aggregates(items=[Aggregate(kind="nvme_complete_rq", count=300, first_usec=1, last_usec=9,
                                           kdev="nvme1c1n1", status=6, error="Internal Error")]))
    [event] = ledger.settle(everything=True)
    assert event.count == 300 - 10 and event.event_type == "NVME_IO_ERROR" and event.kdev == "nvme1c1n1"


def test_lines_of_a_kind_not_attached_are_not_covered():
    ledger = MapLedger(hostname="h", attached_usec=1_000, kinds={"block_rq_error"}, clock=Clock())
    assert not ledger.note(_nvme_line())
    assert ledger.note(_detail(["kmsg"]))  # block lines still are
    assert ledger.tracked() == 1
