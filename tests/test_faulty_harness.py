"""The faulty-disk harness makes the kernel see real, controllable I/O errors."""

from __future__ import annotations

import errno
import mmap
import os
import re
from pathlib import Path

import pytest

from tests.harness.faulty import FaultCounters, FaultRange, FaultyDisk, MiB
from tests.harness.kmsg_tail import record_text

pytestmark = pytest.mark.root

SECTOR = 512


def _loop_backing_files() -> list[str]:
    return [f.read_text().strip() for f in Path("/sys/block").glob("loop*/loop/backing_file")]


def test_device_identity(faulty_disk):
    name = faulty_disk.name
    assert faulty_disk.loopdev == f"/dev/{name}"
    assert re.fullmatch(r"loop\d+", name)
    major, minor = faulty_disk.dev_num.split(":")
    assert major == "7" and minor == name.removeprefix("loop")
    backing = open(f"/sys/block/{name}/loop/backing_file").read().strip()
    assert backing.endswith("/fuse/disk")
    assert int(open(f"/sys/block/{name}/size").read()) * SECTOR == faulty_disk.size


def test_read_in_failing_range_gets_eio_outside_succeeds(faulty_disk, kmsg_tail):
    # Few failing requests: the kernel rate-limits these lines (10 per 5 s, all devices).
    faulty_disk.fail_sectors(2048, 2, "read")
    results = faulty_disk.read_sectors(2045, 6)
    failed = [r.sector for r in results if r.error]
    assert failed == [2048, 2049]
    assert {r.error for r in results if r.error} == {errno.EIO}

    record = kmsg_tail.wait_for(rf"I/O error, dev {faulty_disk.name}, sector 204[89]")
    assert record.split(",", 1)[0] == "3"  # kernel facility, level err
    assert "op 0x0:(READ)" in record_text(record)


def test_heal_makes_reads_succeed_again(faulty_disk):
    faulty_disk.fail_sectors(100, 1)
    assert faulty_disk.read_sectors(100, 1)[0].error == errno.EIO
    faulty_disk.heal()
    assert faulty_disk.read_sectors(100, 1)[0].error == 0
    assert faulty_disk.counters().ranges == ()


def test_write_only_fault_leaves_reads_alone(faulty_disk, kmsg_tail):
    faulty_disk.fail_sectors(4096, 8, "write")
    assert faulty_disk.read_sectors(4096, 8, sectors_per_request=8)[0].error == 0
    assert faulty_disk.write_sectors(4096, 8, sectors_per_request=8)[0].error == errno.EIO
    kmsg_tail.wait_for(rf"I/O error, dev {faulty_disk.name}, sector 4096 op 0x1:\(WRITE\)")


def test_data_written_persists_in_backing_file(faulty_disk):
    fd = os.open(faulty_disk.loopdev, os.O_WRONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 4096)
    buf.write(b"peripety" * 512)
    try:
        os.pwritev(fd, [buf], 1 * MiB)
        os.fsync(fd)
    finally:
        os.close(fd)
        buf.close()
    with open(faulty_disk.image, "rb") as image:
        image.seek(1 * MiB)
        assert image.read(16) == b"peripetyperipety"


def test_counters_count_served_and_failed_requests(faulty_disk):
    before = faulty_disk.counters()
    faulty_disk.fail_sectors(50, 1, "read")
    faulty_disk.read_sectors(48, 4)
    after = faulty_disk.counters()
    assert after.reads - before.reads == 4
    assert after.failed_reads - before.failed_reads == 1
    assert after.failed_writes == before.failed_writes
    assert after.ranges == (FaultRange(50 * SECTOR, SECTOR, "read"),)


def test_counters_parse_ctl_text():
    text = "reads 7\nwrites 2\nfailed_reads 1\nfailed_writes 0\nfail 512 1024 write\n"
    assert FaultCounters.parse(text) == FaultCounters(7, 2, 1, 0, (FaultRange(512, 1024, "write"),))


def test_bad_control_command_is_refused(faulty_disk):
    with pytest.raises(ValueError):
        faulty_disk.fail(0, 512, "sometimes")
    with pytest.raises(OSError) as err:
        faulty_disk._control("fail nowhere")
    assert err.value.errno == errno.EINVAL


def test_ext4_on_faulty_disk_reports_fs_errors(faulty_disk, tmp_path, kmsg_tail):
    faulty_disk.mkfs("ext4")
    mnt = faulty_disk.mount(tmp_path / "mnt", "errors=remount-ro")
    kmsg_tail.wait_for(rf"EXT4-fs \({faulty_disk.name}\): mounted filesystem")
    faulty_disk.fail(0, faulty_disk.size, "write")
    (mnt / "victim").write_bytes(b"x" * 65536)
    with pytest.raises(OSError):
        fd = os.open(mnt / "victim", os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    kmsg_tail.wait_for(rf"EXT4-fs warning \(device {faulty_disk.name}\): ext4_end_bio")
    assert faulty_disk.counters().failed_writes > 0


def test_teardown_leaves_no_mount_or_loop_device(tmp_path):
    with FaultyDisk(size=64 * MiB, workdir=tmp_path) as disk:
        workdir = disk.workdir
        disk.mkfs("ext4")
        disk.mount(tmp_path / "mnt")
        disk.fail(0, disk.size, "rw")  # close() must heal before unmounting
    mounts = open("/proc/self/mountinfo").read()
    assert str(workdir) not in mounts and str(tmp_path / "mnt") not in mounts
    assert not [f for f in _loop_backing_files() if f.startswith(str(workdir))]
    assert not workdir.exists()
