"""Decoding the program's aggregation maps: keys, per-CPU values and sector
bitmaps as bcc hands them over (ctypes structures laid out as in
bpf/scsi_trace.c, whose _Static_asserts check the sizes at every compile)."""

from __future__ import annotations

import ctypes as ct

from peripety.tracepoints import aggregates as agg
from peripety.tracepoints.kinds import KINDS
from peripety.tracepoints.loader import DEFAULT_TUNING, defines
from peripety.tracepoints.plan import AttachPlan


def _key(kind: str, *, status=0, op=0, dev=0, hctl=(0, 0, 0, 0), disk=b"") -> agg.AggKey:
    key = agg.AggKey()
    key.kind = KINDS[kind].number
    key.status, key.op, key.dev = status, op, dev
    key.host_no, key.channel, key.id, key.lun = hctl
    key.disk = disk
    return key


def _value(count, first_ns, last_ns, lo=agg.NO_SECTOR, end=0, unmapped=0) -> agg.AggValue:
    return agg.AggValue(count, first_ns, last_ns, lo, end, unmapped)


def _words(*bits: int, n: int = 64) -> list[int]:
    words = [0] * n
    for bit in bits:
        words[bit // 64] |= 1 << (bit % 64)
    return words


LOOP0 = 7 << 20 | 0  # kernel dev_t of 7:0
READ = ord("R")


def test_struct_sizes_are_passed_to_the_compiler():
    table = defines(AttachPlan(mode="on"))
    assert table["PRPT_SIZEOF_AGG_KEY"] == str(ct.sizeof(agg.AggKey)) == "64"
    assert table["PRPT_SIZEOF_AGG_VAL"] == str(ct.sizeof(agg.AggValue)) == "56"
    assert table["PRPT_SIZEOF_SLOT"] == str(ct.sizeof(agg.Slot)) == "72"
    assert table["PRPT_SIZEOF_BUCKET"] == str(ct.sizeof(agg.Bucket)) == "24"
    # the epoch alone on the control block's first cache line
    assert table["PRPT_SIZEOF_CTL"] == str(ct.sizeof(agg.Ctl)) == "128"
    assert agg.Ctl.slots_claimed.offset == 64
    assert table["PRPT_SAMPLE_BUDGET"] == str(DEFAULT_TUNING.sample_budget)
    assert table["PRPT_SAMPLE_INTERVAL_NS"] == "1000000000ULL"


def test_bitmap_runs_become_inclusive_sector_ranges():
    words = _words(0, 1, 2, 63, 64, 65, 4095)
    assert agg.bitmap_ranges(0, words, 4096) == [(0, 2), (63, 65), (4095, 4095)]
    # bucket 3 starts at sector 3 * 4096
    assert agg.bitmap_ranges(3, _words(8, 9), 4096) == [(12296, 12297)]
    assert agg.bitmap_ranges(0, [0] * 64, 4096) == []
    assert agg.bitmap_ranges(1, [(1 << 64) - 1] * 64, 4096) == [(4096, 8191)]


def test_ranges_across_a_bucket_seam_are_joined():
    assert agg.merge_ranges([(4096, 4100), (4090, 4095), (10, 10), (11, 12)]) == ((10, 12), (4090, 4100))
    assert agg.ranges_text(((2048, 2055), (4096, 4096))) == "2048-2055,4096"


def test_block_key_sums_cpus_and_names_device_op_and_error():
    key = _key("block_rq_error", status=-5, op=READ, dev=LOOP0)
    cpus = [_value(3, 2_000_000, 9_000_000, 4095, 4104), _value(0, 0, 0), _value(2, 1_000_000, 5_000_000, 8000, 8008)]
    # sectors 4095-4103 straddle buckets 0 and 1; 8000-8007 lie in bucket 1
    buckets = {1: _words(*range(0, 8), *range(8000 - 4096, 8008 - 4096)), 0: _words(4095)}
    a = agg.aggregate_from_maps(key, cpus, buckets)
    assert (a.kind, a.count, a.first_usec, a.last_usec) == ("block_rq_error", 5, 1000, 9000)
    assert (a.dev_num, a.kdev, a.op) == ("7:0", "7:0", "READ")
    assert (a.status, a.errno, a.error, a.blk_status) == (-5, 5, "EIO", "I/O")
    assert a.sectors == ((4095, 4103), (8000, 8007))
    assert a.sectors_text() == "4095-4103,8000-8007"
    assert (a.sector_min, a.sector_max, a.unmapped) == (4095, 8007, 0)


def test_block_op_letters_and_medium_error():
    # "DE" is secure erase, stored as two letters low byte first
    key = _key("block_rq_error", status=-61, op=ord("D") | ord("E") << 8, dev=8 << 20 | 16)
    a = agg.aggregate_from_maps(key, [_value(1, 1000, 1000, 0, 8, unmapped=1)])
    assert (a.dev_num, a.op, a.error, a.blk_status) == ("8:16", "SECURE_ERASE", "ENODATA", "critical medium")
    # no bitmap: sectors are known only by their bounds
    assert a.sectors == () and (a.sector_min, a.sector_max, a.unmapped) == (0, 7, 1)


def test_flush_without_sectors_has_no_sector_bounds():
    key = _key("block_rq_error", status=-5, op=ord("F"), dev=LOOP0)
    a = agg.aggregate_from_maps(key, [_value(4, 10_000, 20_000)])
    assert (a.op, a.count, a.sectors, a.sector_min, a.sector_max) == ("FLUSH", 4, (), None, None)


def test_a_key_no_cpu_counted_is_nothing():
    assert agg.aggregate_from_maps(_key("block_rq_error", dev=LOOP0), [_value(0, 0, 0)] * 2) is None


def test_scsi_key_is_target_opcode_and_result():
    # DID_TIME_OUT (0x03) in the host byte; opcode READ(10)
    key = _key("scsi_cmd_done", status=0x00030000, op=0x28, hctl=(2, 0, 0, 1))
    a = agg.aggregate_from_maps(key, [_value(7, 5_000, 6_000)])
    assert (a.kdev, a.dev_num, a.op, a.error, a.count) == ("2:0:0:1", "", "READ(10)", "DID_TIME_OUT", 7)
    rtn = agg.aggregate_from_maps(_key("scsi_cmd_error", status=0x1055, op=0x2A, hctl=(0, 0, 3, 0)),
                                  [_value(1, 1, 1)])
    assert (rtn.kdev, rtn.op, rtn.error) == ("0:0:3:0", "WRITE(10)", "SCSI_MLQUEUE_HOST_BUSY")


def test_nvme_key_is_disk_and_status():
    key = _key("nvme_complete_rq", status=0x0281, hctl=(0, 0, 0, 0), disk=b"nvme0n1")
    a = agg.aggregate_from_maps(key, [_value(2, 1_000, 3_000)])
    assert (a.kdev, a.error, a.count) == ("nvme0n1", "Unrecovered Read Error", 2)


def test_fs_keys():
    ext4 = agg.aggregate_from_maps(_key("ext4_error", op=1234, dev=LOOP0), [_value(1, 1, 1)])
    assert (ext4.kdev, ext4.line, ext4.errno) == ("7:0", 1234, None)
    xfs = agg.aggregate_from_maps(_key("xfs_buf_ioerror", status=-5, dev=LOOP0),
                                  [_value(1, 1, 1, 64, 72)], {0: _words(*range(64, 72))})
    assert (xfs.error, xfs.sectors, xfs.op) == ("EIO", ((64, 71),), "")


def test_aggregates_total_includes_failures_counted_without_a_unit():
    key = _key("block_rq_error", status=-5, op=READ, dev=LOOP0)
    one = agg.aggregate_from_maps(key, [_value(10, 1, 2)])
    found = agg.Aggregates(items=[one], untracked={"block_rq_error": 5, "scsi_cmd_done": 1})
    assert found.total() == 16 and found.total("block_rq_error") == 15
    assert found and not agg.Aggregates()

