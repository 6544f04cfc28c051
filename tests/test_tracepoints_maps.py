"""bpf/scsi_trace.c counts failures in kernel maps: on the real kernel,
against real failed requests on a faulty loop device, the counts read back
must equal what fio and faultyfs saw, also when the ring buffer overflows."""

from __future__ import annotations

import contextlib
import ctypes as ct
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from peripety.tracepoints import Aggregates, TracepointSource, plan_attach
from peripety.tracepoints.loader import Tuning
from tests.harness.faulty import FaultyDisk, MiB

pytestmark = [pytest.mark.root, pytest.mark.bpf]


def _open(tuning: Tuning):
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
    return TracepointSource.open("on", plan_attach("on"), tuning)


@pytest.fixture(scope="module")
def tiny_ring():
    """A one-page ring and no sample budget: a storm must overflow it."""
    with _open(Tuning(ringbuf_pages=1, sample_budget=10**9)) as src:
        yield src


@pytest.fixture(scope="module")
def budgeted():
    """Three samples per device per hour: every later failure is maps-only."""
    with _open(Tuning(sample_budget=3, sample_interval_ns=3600 * 10**9)) as src:
        yield src


@contextlib.contextmanager
def run_stats():
    """Make the kernel count program runs (run_cnt) while the fd is open
    (BPF_ENABLE_STATS; no global sysctl is touched)."""
    from bcc.libbcc import lib

    lib.bpf_enable_stats.restype, lib.bpf_enable_stats.argtypes = ct.c_int, [ct.c_int]
    fd = lib.bpf_enable_stats(0)  # BPF_STATS_RUN_TIME
    assert fd >= 0, "BPF_ENABLE_STATS failed"
    try:
        yield
    finally:
        os.close(fd)


def _block_runs(source) -> int:
    return source.maps.program_stats()["tracepoint__block__block_rq_error"].get("run_cnt", 0)


def _for_device(found: Aggregates, dev_num: str):
    return [a for a in found.items if a.dev_num == dev_num]


def no_merges(disk) -> None:
    """One fio I/O, one block request: the block layer otherwise merges two
    adjacent random reads now and then into one request, which fails (and
    is counted by the kernel) once while fio counts two failed I/Os."""
    Path(f"/sys/block/{disk.name}/queue/nomerges").write_text("2")


def _fio_storm(dev: str, seconds: int) -> int:
    """The storm of issue 14 against ``dev``; returns fio's failed I/Os."""
    done = subprocess.run(
        ["fio", "--name=storm", f"--filename={dev}", "--rw=randread", "--bs=4k", "--direct=1",
         "--ioengine=libaio", "--iodepth=32", "--numjobs=2", f"--runtime={seconds}", "--time_based",
         "--continue_on_error=all", "--output-format=json"],
        capture_output=True, text=True, check=False)
    report = json.loads(done.stdout[done.stdout.index("{"):])
    return sum(job["total_err"] for job in report["jobs"])


def test_storm_is_counted_exactly_while_the_ring_buffer_overflows(tiny_ring):
    with FaultyDisk(size=64 * MiB) as disk:
        disk.fail(0, disk.size, "read")
        no_merges(disk)
        with run_stats():
            tiny_ring.flush()  # start from empty maps
            lost_before, runs_before = tiny_ring.lost(), _block_runs(tiny_ring)
            failed = _fio_storm(disk.loopdev, seconds=2)
            # Nothing read the ring during the storm: most samples were lost.
            found = tiny_ring.flush()
            runs = _block_runs(tiny_ring) - runs_before
        assert failed > 5000, "fio did not make a storm"
        assert disk.counters().failed_reads == failed
        mine = _for_device(found, disk.dev_num)
        assert [(a.kind, a.op, a.error) for a in mine] == [("block_rq_error", "READ", "EIO")]
        # Every run of the program is counted, however full the ring was
        # (other devices of this shared machine would only add runs).
        assert mine[0].count == runs - sum(a.count for a in found.items if a not in mine)
        # The kernel ran it for every failure but, on some runs here, a few
        # in 10^5 (measured 0-22 of ~110,000, with recursion_misses 0: the
        # kernel's perf tracepoint path dropped them before any program ran).
        assert 0 <= failed - mine[0].count <= failed // 1000, (failed, mine[0].count, found.missed)
        assert found.untracked == {}
        assert tiny_ring.lost() - lost_before > failed // 2
        # 4 KiB reads on a 64 MiB device: every range is whole 8-sector blocks
        sectors = mine[0].sectors
        assert sectors and sectors[0][0] >= 0 and sectors[-1][1] < disk.size // 512
        assert all(a % 8 == 0 and (b + 1) % 8 == 0 for a, b in sectors)
        assert mine[0].unmapped == 0
        hits = [h for h in tiny_ring.read() if h.dev_num == disk.dev_num]
        assert 0 < len(hits) < 4096 // 56  # what one page holds


def test_only_the_budget_goes_out_as_samples_and_every_sector_is_kept(budgeted):
    with FaultyDisk(size=32 * MiB) as disk:
        disk.fail_sectors(4096, 20, "read")
        disk.fail_sectors(8190, 8, "read")
        disk.fail_sectors(9000, 20, "read")
        budgeted.flush()
        results = disk.read_sectors(4096, 20) + disk.read_sectors(9000, 20)
        # one 4 KiB request straddling the seam of two 4096-sector buckets
        results += disk.read_sectors(8190, 8, sectors_per_request=8)
        assert [r.error for r in results] == [5] * 41
        found = budgeted.flush()
        mine = _for_device(found, disk.dev_num)
        assert len(mine) == 1 and mine[0].count == 41
        assert mine[0].sectors == ((4096, 4115), (8190, 8197), (9000, 9019))
        assert mine[0].sectors_text() == "4096-4115,8190-8197,9000-9019"
        assert (mine[0].sector_min, mine[0].sector_max) == (4096, 9019)
        hits = [h for h in budgeted.read() if h.dev_num == disk.dev_num]
        assert [h.sector for h in hits] == [4096, 4097, 4098]
        assert mine[0].first_usec <= hits[0].kernel_usec <= hits[-1].kernel_usec <= mine[0].last_usec
        assert found.sampled_out.get("block_rq_error", 0) >= 38


def test_collecting_during_failures_counts_each_once(budgeted):
    """Generations swap while requests fail on the other CPU: the sum of
    every collect equals the failures, none lost, none twice."""
    with FaultyDisk(size=32 * MiB) as disk:
        disk.fail(0, disk.size, "read")
        budgeted.flush()
        done, stop = threading.Event(), threading.Event()
        results = []

        def fail_reads():
            # distinct sectors, until the main thread has seen enough swaps
            try:
                for first in range(0, disk.size // 512, 400):
                    if stop.is_set():
                        break
                    results.extend(disk.read_sectors(first, 400))
            finally:
                done.set()

        worker = threading.Thread(target=fail_reads)
        worker.start()
        collected, swaps = [], 0
        while not done.wait(budgeted.maps.grace / 4):
            got = budgeted.collect()
            if got is not None:
                swaps += 1
                collected += _for_device(got, disk.dev_num)
                if swaps >= 4:
                    stop.set()
        worker.join()
        collected += _for_device(budgeted.flush(), disk.dev_num)
        assert swaps >= 4, "the reads ended before the generations swapped"
        assert results and all(r.error == 5 for r in results)
        counted = sum(a.count for a in collected)
        # Never twice. Lost: only what the kernel itself never ran the probe
        # for, a few per 100,000 under concurrent I/O with recursion_misses
        # at 0 (measured by benchmarks/storm.py: every probe run is counted);
        # the collector's own losses would be whole generations, thousands.
        assert len(results) - len(results) // 1000 <= counted <= len(results)
        assert len(collected) >= 3  # the failures really were split over generations
        # each sector appears in at most one generation's ranges, once
        covered = sorted(s for a in collected for lo, hi in a.sectors for s in range(lo, hi + 1))
        assert len(covered) == counted and len(set(covered)) == len(covered)
        assert set(covered) <= set(range(len(results)))


def test_reading_the_counts_during_a_storm_loses_no_probe_run(budgeted):
    """User space reads the counts as fast as it can while a storm runs on
    both CPUs: no probe run may be skipped for it. While a process is inside
    a bpf() map syscall on a CPU, the kernel runs no tracepoint program
    there (bpf_prog_active; counted in recursion_misses on this kernel, not
    at all on 6.1), so reading the counts must not take one."""
    with FaultyDisk(size=64 * MiB) as disk:
        disk.fail(0, disk.size, "read")
        no_merges(disk)
        with run_stats():
            budgeted.flush()
            missed_before, runs_before = budgeted.maps.missed(), _block_runs(budgeted)
            failed = []
            storm = threading.Thread(target=lambda: failed.append(_fio_storm(disk.loopdev, seconds=3)))
            storm.start()
            collected, reads = [], 0
            while storm.is_alive():
                got = budgeted.collect()
                if got is not None:
                    collected.append(got)
                budgeted.lost()
                reads += 1
            storm.join()
            collected.append(budgeted.flush())
            runs = _block_runs(budgeted) - runs_before
            missed = budgeted.maps.missed() - missed_before
        assert failed and failed[0] > 5000, "fio did not make a storm"
        assert reads > 1000, "the reader did not keep reading during the storm"
        mine = sum(a.count for got in collected for a in _for_device(got, disk.dev_num))
        others = sum(a.count for got in collected for a in got.items if a.dev_num != disk.dev_num)
        assert missed == 0, f"the kernel skipped {missed} probe runs while the counts were read"
        assert sum(got.missed for got in collected) == 0
        assert mine == runs - others  # every probe run counted, once
        # and the kernel handed (nearly) every failure to the probe: see the
        # first test for the few in 10^5 it drops before any program runs
        assert failed[0] - failed[0] // 1000 <= mine <= failed[0], (failed[0], mine, runs)


def test_when_an_epoch_runs_out_of_slots_the_rest_is_counted_per_kind():
    """Two slots and two sector buckets per epoch: a third key is counted
    per kind only (exact total, no unit), and a request whose bucket found
    no room keeps only its bounds (``unmapped``): sectors never change a
    count. Nothing collects in between, so all of it falls in one epoch."""
    tuning = Tuning(agg_entries=2, sector_entries=2, sample_budget=3, sample_interval_ns=3600 * 10**9)
    with _open(tuning) as src, FaultyDisk(size=32 * MiB) as a, FaultyDisk(size=32 * MiB) as b:
        # only these sectors fail: udev's own probing reads of the new disks succeed
        for first in (20000, 30000, 40000):
            a.fail_sectors(first, 4, "read")
        a.fail_sectors(50000, 5, "write")
        b.fail_sectors(25000, 7, "read")
        src.flush()
        # a's reads: buckets 4, 7 (4096 sectors each) and 9, which finds no room
        results = a.read_sectors(20000, 4) + a.read_sectors(30000, 4) + a.read_sectors(40000, 4)
        results += a.write_sectors(50000, 5)  # a second key: the last slot; its bucket finds no room
        results += b.read_sectors(25000, 7)  # a third key: no slot left
        assert [r.error for r in results] == [5] * 24
        found = src.flush()
    mine = {(x.dev_num, x.op): x for x in found.items if x.dev_num in (a.dev_num, b.dev_num)}
    assert sorted(mine) == [(a.dev_num, "READ"), (a.dev_num, "WRITE")]
    reads, writes = mine[(a.dev_num, "READ")], mine[(a.dev_num, "WRITE")]
    assert (reads.count, reads.unmapped, reads.sector_min, reads.sector_max) == (12, 4, 20000, 40003)
    assert reads.sectors == ((20000, 20003), (30000, 30003))
    assert (writes.count, writes.unmapped, writes.sectors, writes.sector_min, writes.sector_max) == \
        (5, 5, (), 50000, 50004)
    assert found.untracked == {"block_rq_error": 7}
    assert found.total("block_rq_error") == 24 + sum(x.count for x in found.items if x.dev_num not in (a.dev_num, b.dev_num))
