"""End to end: the real peripetyd on real failures, read back with prpt and journalctl.

Every error here is genuine: a loop device over tests/faultyfs (FUSE returning
EIO for chosen byte ranges), ext4 and xfs on it, journald and udevd running.
The kernel rate-limits block error lines (10 per 5 s across all devices), so
triggers are repeated on fresh sectors until the event shows up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from peripety.devices import resolve
from tests.harness import services
from tests.harness.daemon import DaemonProcess, Retrigger, since_now, wait_for_events
from tests.harness.faulty import MiB, ext4_journal_extent

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]


@pytest.fixture
def daemon(tmp_path):
    proc = DaemonProcess(tmp_path / "daemon").start()
    yield proc
    proc.stop()


def journalctl(*matches: str) -> list[dict]:
    out = subprocess.run(["journalctl", "--no-pager", "-o", "json", *matches],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_retrying(args, predicate, trigger, timeout=40.0, what="events"):
    deadline = time.monotonic() + timeout
    while True:
        trigger()
        try:
            return wait_for_events(args, predicate, timeout=min(6.0, max(0.5, deadline - time.monotonic())), what=what)
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


def test_raw_read_error_is_stored_with_device_identity(daemon, faulty_disk):
    t0 = since_now()
    expected = resolve(faulty_disk.loopdev)
    trigger = Retrigger(faulty_disk)
    events = wait_retrying(
        ("--since", t0, "--blk", faulty_disk.loopdev, "--event-type", "BLK_IO_ERROR"),
        lambda evs: any(e["extension"].get("sector") in map(str, trigger.sectors) for e in evs),
        trigger,
        what="BLK_IO_ERROR",
    )
    event = next(e for e in events if e["extension"].get("sector") in map(str, trigger.sectors))
    assert event["kdev"] == faulty_disk.name
    assert event["dev_num"] == faulty_disk.dev_num
    assert event["sub_system"] == "block"
    assert event["severity"] == "Error"
    assert event["sources"] == ["kmsg"]
    assert event["extension"]["op"] == "READ"
    assert event["raw_msg"].startswith(f"I/O error, dev {faulty_disk.name}, sector ")
    assert event["cur_blk_info"]["wwid"] == expected.wwid
    assert event["cur_blk_info"]["blk_type"] == "Loop"
    # readable without peripety: the journald fields are a public contract
    entries = journalctl("IS_PERIPETY=TRUE", "EVENT_TYPE=BLK_IO_ERROR", f"EVENT_ID={event['event_id']}")
    assert len(entries) == 1
    entry = entries[0]
    assert entry["KDEV"] == faulty_disk.name
    assert entry["DEV_WWID"] == expected.wwid
    assert entry["DEV_NUM"] == faulty_disk.dev_num
    assert entry["SYSLOG_IDENTIFIER"] == "peripetyd"
    assert entry["PRIORITY"] == "3"
    assert len(entry["MESSAGE_ID"]) == 32
    assert json.loads(entry["JSON"])["event_id"] == event["event_id"]


def test_ext4_write_failure_cascade_points_at_the_block_error(daemon, faulty_disk_factory, tmp_path):
    disk = faulty_disk_factory(size=128 * MiB)
    disk.mkfs("ext4")
    mnt = disk.mount(tmp_path / "mnt", "errors=remount-ro")
    t0 = since_now()
    journal_start, journal_len = ext4_journal_extent(disk.loopdev)
    disk.fail(journal_start, journal_len, "write")
    fd = os.open(mnt / "victim", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"x" * 262144)
        with pytest.raises(OSError):
            os.fsync(fd)
            os.mkdir(mnt / "after-fault")  # if fsync got lucky, this hits the aborted journal
    finally:
        os.close(fd)

    def cascade_complete(evs):
        types = {e["event_type"] for e in evs}
        return {"FS_JOURNAL_ABORTED", "FS_REMOUNT_READ_ONLY"} <= types

    events = wait_for_events(("--since", t0, "--blk", disk.loopdev), cascade_complete, what="ext4 cascade")
    by_type = {}
    for e in events:
        by_type.setdefault(e["event_type"], []).append(e)
    remount = by_type["FS_REMOUNT_READ_ONLY"][0]
    assert remount["sub_system"] == "ext4"
    assert remount["kdev"] == disk.name
    assert remount["cur_blk_info"]["mount_point"] == str(mnt)
    assert remount["extension"]["mount_point"] == str(mnt)
    assert remount["severity"] == "Critical"
    # The first device-level error is the root cause of the filesystem events.
    block_errors = by_type.get("BLK_IO_ERROR", [])
    assert block_errors, f"no BLK_IO_ERROR among {sorted(by_type)}"
    root = block_errors[0]["event_id"]
    for fs_type in ("FS_JOURNAL_ABORTED", "FS_REMOUNT_READ_ONLY"):
        assert all(e["root_cause_event_id"] == root for e in by_type[fs_type]), fs_type
    found = journalctl("IS_PERIPETY=TRUE", "EVENT_TYPE=FS_REMOUNT_READ_ONLY", f"KDEV={disk.name}",
                       f"ROOT_CAUSE_EVENT_ID={root}")
    assert [json.loads(e["JSON"])["event_id"] for e in found] == [remount["event_id"]]
    disk.heal()


def test_xfs_metadata_error_is_an_event(daemon, faulty_disk_factory, tmp_path):
    disk = faulty_disk_factory(size=320 * MiB)
    disk.mkfs("xfs")
    mnt = disk.mount(tmp_path / "mnt")
    for i in range(8):
        (mnt / f"f{i}").write_bytes(b"y" * 4096)
    disk.umount(mnt)
    t0 = since_now()
    mnt = disk.mount(tmp_path / "mnt")
    # Every read fails once mounted: listing needs inode clusters from disk.
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=True)
    disk.fail(0, disk.size, "read")
    for i in range(8):
        try:
            os.stat(mnt / f"f{i}")
        except OSError:
            pass
    events = wait_for_events(
        ("--since", t0, "--blk", disk.loopdev, "--sub-system", "xfs"),
        lambda evs: any(e["event_type"] in ("FS_IO_ERROR", "FS_SHUTDOWN", "FS_CORRUPTION") for e in evs),
        what="xfs error",
    )
    errors = [e for e in events if e["event_type"] in ("FS_IO_ERROR", "FS_SHUTDOWN", "FS_CORRUPTION")]
    assert all(e["kdev"] == disk.name for e in events)
    assert errors[0]["cur_blk_info"]["mount_point"] == str(mnt)
    assert errors[0]["extension"]["mount_point"] == str(mnt)
    disk.heal()


def test_lines_spoofed_by_user_space_yield_no_event(daemon, faulty_disk):
    t0 = since_now()
    name = faulty_disk.name
    spoof = f"I/O error, dev {name}, sector 77777 op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2"
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(f"<3>{spoof}\n")  # arrives with facility LOG_USER
    subprocess.run(["logger", "-t", "kernel", "-p", "kern.err", spoof], check=True)
    # A real error afterwards: once it is stored, the spoofs were processed too.
    trigger = Retrigger(faulty_disk, first=4096)
    events = wait_retrying(
        ("--since", t0, "--blk", faulty_disk.loopdev),
        lambda evs: any(e["extension"].get("sector") in map(str, trigger.sectors) for e in evs),
        trigger,
    )
    assert not [e for e in events if e["extension"].get("sector") == "77777"]


def test_kill_9_and_restart_loses_and_duplicates_nothing(tmp_path, faulty_disk_factory):
    disk = faulty_disk_factory(size=128 * MiB)
    disk.mkfs("ext4")
    workdir = tmp_path / "d"
    daemon = DaemonProcess(workdir).start()
    restarted = None
    try:
        t0 = since_now()
        disk.umount(disk.mount(tmp_path / "m1"))
        wait_for_events(("--since", t0, "--blk", disk.loopdev, "--event-type", "FS_MOUNTED"),
                        lambda evs: len(evs) == 1, what="first mount")
        # Events the kernel logs while the daemon is frozen and then killed are
        # read after the restart, from the saved position.
        daemon.signal(signal.SIGSTOP)
        for i in range(3):
            disk.umount(disk.mount(tmp_path / f"m{i + 2}"))
        daemon.kill()
        restarted = DaemonProcess(workdir).start()
        disk.umount(disk.mount(tmp_path / "m5"))
        # Sentinel: a read-only mount logged after everything else. Once its
        # event is stored, every record before it was processed, so a
        # duplicate of the first five would be in the store by then.
        disk.umount(disk.mount(tmp_path / "m6", options="ro"))
        events = wait_for_events(("--since", t0, "--blk", disk.loopdev, "--event-type", "FS_MOUNTED"),
                                 lambda evs: any(e["extension"].get("access") == "ro" for e in evs),
                                 what="the sentinel (read-only) mount")
        mounts = [e for e in events if e["extension"].get("access") != "ro"]
        assert len(mounts) == 5
        assert len({e["event_id"] for e in mounts}) == 5
        assert len(events) == 5 + 1
    finally:
        daemon.stop()
        if restarted is not None:
            restarted.stop()


def test_journald_down_loses_nothing(tmp_path, faulty_disk_factory):
    disk = faulty_disk_factory(size=128 * MiB)
    disk.mkfs("ext4")
    daemon = DaemonProcess(tmp_path / "d").start()
    t0 = since_now()
    try:
        services.stop_journald()
        for i in range(3):
            disk.umount(disk.mount(tmp_path / f"m{i}"))
        spool = daemon.state_dir / "spool" / "events.jsonl"
        _wait_until(lambda: spool.exists() and spool.read_text().count('"FS_MOUNTED"') >= 3,
                    "the three events spooled while journald is down")
        _wait_until(lambda: _status(daemon)["spool_depth"] >= 3, "the status file showing the spool")
        status = _status(daemon)
        assert status["store"] == "journal" and status["store_ok"] is False
        assert "journald" in status["store_error"]
        services.ensure_journald()
        events = wait_for_events(
            ("--since", t0, "--blk", disk.loopdev, "--event-type", "FS_MOUNTED"),
            lambda evs: len(evs) >= 3, what="spooled mounts", timeout=30,
        )
        assert len(events) == 3
        assert "spooling events" in daemon.log_text()
        _wait_until(lambda: _status(daemon)["store_ok"], "the status file showing the store back")
        assert (_status(daemon)["store_error"], _status(daemon)["spool_depth"]) == (None, 0)
    finally:
        services.ensure_journald()
        daemon.stop()


def _status(daemon) -> dict:
    return json.loads(daemon.status_file.read_text())


def _wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
