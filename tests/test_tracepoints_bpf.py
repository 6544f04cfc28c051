"""bpf/scsi_trace.c on the real kernel: real failed requests on a faulty
loop device must all arrive as hits, successful I/O must produce none.

The program is loaded with a sample budget no test reaches, so every
failure also goes out as a sample (tests/test_tracepoints_maps.py tests the
budget and the maps under storms)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peripety.tracepoints import TracepointSource, plan_attach
from peripety.tracepoints.loader import Tuning
from tests.harness.faulty import FaultyDisk, MiB
from tests.harness.perfcount import TracepointCounter

pytestmark = [pytest.mark.root, pytest.mark.bpf]


@pytest.fixture(scope="module")
def source():
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
    # One compile for the whole file: bcc compiles cost CPU.
    with TracepointSource.open("on", plan_attach("on"), Tuning(sample_budget=10**6)) as src:
        yield src


@pytest.fixture
def disk():
    with FaultyDisk(size=32 * MiB) as faulty:
        yield faulty


def _hits_for(source, dev_num, until, timeout=10.0):
    """Drain hits for ``dev_num`` until ``until(hits)`` holds, waiting on the
    ring buffer's fd (other tests' devices may add hits of their own)."""
    hits = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(source, selectors.EVENT_READ)
        while True:
            hits += [h for h in source.read() if h.dev_num == dev_num]
            left = deadline - time.monotonic()
            if until(hits) or left <= 0:
                return hits
            selector.select(left)


def test_burst_of_failing_direct_reads_is_counted_completely(source, disk):
    first, count = 4096, 48
    lost_before = source.lost()
    disk.fail_sectors(first, count, "read")
    source.flush()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    results = disk.read_sectors(first, count)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert [r.error for r in results] == [5] * count  # the harness really failed them

    hits = _hits_for(source, disk.dev_num, lambda h: len(h) >= count)
    assert sorted(h.sector for h in hits) == list(range(first, first + count))
    for hit in hits:
        assert hit.kind == "block_rq_error" and hit.tracepoint == "block:block_rq_error"
        assert (hit.errno, hit.errno_name, hit.blk_status) == (5, "EIO", "I/O")
        assert hit.nr_sector == 1 and hit.op == "READ" and hit.rwbs.startswith("R")
        assert hit.kdev == disk.dev_num
        # The probe's clock is CLOCK_MONOTONIC: each hit lies inside the
        # window in which this process issued the reads.
        assert before <= hit.kernel_usec <= after
    assert source.lost() == lost_before == 0
    # The maps counted the same failures, with the same sectors.
    counted = [a for a in source.flush().items if a.dev_num == disk.dev_num]
    assert [(a.count, a.sectors, a.op, a.errno) for a in counted] == [(count, ((first, first + count - 1),), "READ", 5)]
    assert before <= counted[0].first_usec <= counted[0].last_usec <= after


def test_successful_io_produces_no_hits(source, disk):
    assert all(r.error == 0 for r in disk.read_sectors(0, 64, sectors_per_request=8))
    assert all(r.error == 0 for r in disk.write_sectors(512, 16))
    # A sentinel failure after the good I/O: once its hit is in, any hit the
    # good requests made would be in too (completions are in order here:
    # each O_DIRECT request completed before the next was issued).
    sentinel = 20000
    disk.fail_sectors(sentinel, 1, "read")
    assert disk.read_sectors(sentinel, 1)[0].error == 5
    hits = _hits_for(source, disk.dev_num, lambda h: any(x.sector == sentinel for x in h))
    assert [(h.sector, h.errno) for h in hits] == [(sentinel, 5)]


def test_probes_leave_perf_users_every_hit(source, disk):
    """A TRACEPOINT program's return value also gates the perf events on its
    tracepoint (perf_trace_run_bpf_submit in kernel/events/core.c: 0 drops
    the hit). With peripety's probes attached, a perf user (here a counting
    perf event, as ``perf stat -e block:block_rq_error``) must still see every
    failure; before the probes returned PRPT_PERF_KEEP it saw none."""
    event = "block_rq_error" if Path("/sys/kernel/tracing/events/block/block_rq_error").is_dir() else "block_rq_complete"
    major, minor = (int(x) for x in disk.dev_num.split(":"))
    first, count = 8192, 16
    disk.fail_sectors(first, count, "read")
    source.flush()
    with TracepointCounter(Path("/sys/kernel/tracing/events/block") / event, f"dev == {major << 20 | minor}") as perf:
        results = disk.read_sectors(first, count)
        assert [r.error for r in results] == [5] * count
        # The probes ran for every failure...
        assert len(_hits_for(source, disk.dev_num, lambda h: len(h) >= count)) == count
        # ...and perf counted every one of them too.
        assert perf.read() == count


def test_kernel_count_and_maps_agree_once_both_are_final(source, disk):
    """The source's own kernel count (perfcount.KernelCounts, every device)
    against its maps: after the failures end and a flush read both map
    generations, kernel count == maps + the shortfall reported, whatever
    the shortfall is (failures no probe ran for: none on a stock kernel)."""
    kind = "block_rq_error"  # the kind of both block probes (block_rq_error, block_rq_complete)
    assert kind in source.kernel_counts.counters
    first, count = 12288, 64
    disk.fail_sectors(first, count, "read")
    before = source.kernel_counts.read()[kind]
    assert [r.error for r in disk.read_sectors(first, count)] == [5] * count
    assert source.kernel_counts.read()[kind] - before == count
    # take this test's samples out of the ring (the next test reads it)
    assert len(_hits_for(source, disk.dev_num, lambda h: len(h) >= count)) == count
    found = source.flush()
    assert sum(a.count for a in found.items if a.dev_num == disk.dev_num) + found.unprobed.get(kind, 0) >= count
    shortfall = source.maps.shortfall
    assert source.kernel_counts.read()[kind] == shortfall.maps[kind] + shortfall.reported.get(kind, 0)


def test_failing_write_is_reported_as_write(source, disk):
    disk.fail_sectors(8192, 8, "write")
    assert disk.write_sectors(8192, 8, sectors_per_request=8)[0].error == 5
    hits = _hits_for(source, disk.dev_num, lambda h: len(h) >= 1)
    assert [(h.sector, h.nr_sector, h.op) for h in hits] == [(8192, 8, "WRITE")]


def test_ext4_metadata_error_is_a_hit(source, disk, tmp_path):
    disk.mkfs("ext4", "-b", "4096")
    mnt = disk.mount(tmp_path / "mnt")
    (mnt / "f").write_text("x")
    disk.umount(mnt)
    # Fresh mount (nothing of "f" cached), then fail every read past the
    # superblock and drop the device's clean buffers: looking "f" up has to
    # read the directory or inode table from the disk, and ext4 reports that
    # failure through ext4_error.
    disk.mount(mnt)
    disk.fail(64 * 1024, disk.size - 64 * 1024, "read")
    subprocess.run(["blockdev", "--flushbufs", disk.loopdev], check=True)
    with pytest.raises(OSError):
        os.stat(mnt / "f")
    hits = _hits_for(source, disk.dev_num, lambda h: any(x.kind == "ext4_error" for x in h))
    ext4 = [h for h in hits if h.kind == "ext4_error"]
    assert ext4, [h.kind for h in hits]
    assert ext4[0].fs.fs == "ext4" and ext4[0].fs.function and ext4[0].fs.line > 0
    assert any(h.kind == "block_rq_error" and h.errno == 5 for h in hits)


_COMPILE_WITH_RECORDED_TRACEFS = """
from peripety.tracepoints import plan_attach
from peripety.tracepoints.loader import load
from peripety.errors import BpfUnavailable
plan = plan_attach("on")
print("DEFINES", " ".join(plan.defines))
try:
    load(plan)
except BpfUnavailable as exc:
    print("RESULT", exc)
"""


def test_scsi_and_nvme_probes_compile_against_recorded_formats():
    """bcc builds each probe's ``args`` struct from the tracefs format file.
    In a private mount namespace the recorded SCSI/NVMe tracefs tree stands
    in for the real one: compiling must succeed, and only attaching (no such
    event in this kernel) may fail."""
    tree = Path(__file__).parent / "fixtures" / "tracepoints" / "tracefs-scsi-nvme"
    script = f"mount --bind {tree} /sys/kernel/tracing && exec {sys.executable} -c '{_COMPILE_WITH_RECORDED_TRACEFS}'"
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    out = done.stdout
    for define in ("PRPT_SCSI_DISPATCH_CMD_ERROR", "PRPT_SCSI_DISPATCH_CMD_DONE_SENSE",
                   "PRPT_SCSI_DISPATCH_CMD_TIMEOUT_SENSE", "PRPT_SCSI_EH_WAKEUP", "PRPT_NVME_COMPLETE_RQ"):
        assert define in out, out + done.stderr
    assert "Failed to compile" not in out, out
    assert "Failed to attach BPF program" in out, out + done.stderr


_VERIFY_WITH_RECORDED_TRACEFS = """
import bcc
from peripety.tracepoints import plan_attach
from peripety.tracepoints.loader import compile_flags, source_path
plan = plan_attach("on")
bcc.BPF._trace_autoload = lambda self: None  # load (verify) each program, attach none
bpf = bcc.BPF(src_file=str(source_path()).encode(), cflags=compile_flags(plan))
for probe in plan.probes:
    name = "tracepoint__" + probe.spec.tracepoint.replace(":", "__")
    try:
        bpf.load_func(name.encode(), bcc.BPF.TRACEPOINT)
        print("VERIFIED", probe.spec.tracepoint)
    except Exception as exc:
        print("REJECTED", probe.spec.tracepoint, exc)
"""


def test_scsi_and_nvme_probes_pass_this_kernels_verifier():
    """The SCSI/NVMe programs (built against the recorded formats) go through
    this kernel's verifier: tracepoint programs are verified against the
    context size, not the event, so only attaching needs the real event.
    (The real events' field offsets are checked in the qemu lab.)"""
    tree = Path(__file__).parent / "fixtures" / "tracepoints" / "tracefs-scsi-nvme"
    script = f"mount --bind {tree} /sys/kernel/tracing && exec {sys.executable} -c '{_VERIFY_WITH_RECORDED_TRACEFS}'"
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent)
    verified = sorted(line.split()[1] for line in done.stdout.splitlines() if line.startswith("VERIFIED"))
    assert verified == sorted([
        "block:block_rq_error", "nvme:nvme_complete_rq", "scsi:scsi_dispatch_cmd_done",
        "scsi:scsi_dispatch_cmd_error", "scsi:scsi_dispatch_cmd_timeout", "scsi:scsi_eh_wakeup",
    ]), done.stdout + done.stderr[-3000:]
