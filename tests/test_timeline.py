"""DeviceTimeline: which device a name meant at a kernel time.

Real udev events on loop devices (re-attached under the same name, partitions
removed), plus the ordering rules on recorded-layout sysfs (late remove,
expiry) fed as uevents."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from peripety.devices import DeviceTimeline, Resolver, resolve
from tests.harness.partitioned import run
from peripety.devices.timeline import Uevent, monotonic_usec
from peripety.sources.udev import UdevSource
from tests.harness import services

MiB = 1 << 20
FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"


def wait_for(timeline: DeviceTimeline, condition, timeout: float = 30.0) -> None:
    """Feed uevents to the timeline, as the daemon's loop does, until
    ``condition()`` holds (no sleeping: block on the udev source's fd with a
    deadline)."""
    udev = timeline.udev
    deadline = time.monotonic() + timeout
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("timeline did not see the expected uevents in time")
        select.select([udev], [], [], remaining)
        timeline.apply_all(udev.read())


def image(path: Path, size: int = 16 * MiB) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


class FedTimeline(DeviceTimeline):
    """The timeline with the udev source that feeds it (the daemon keeps
    the two side by side; the test keeps them together)."""

    udev: UdevSource


@pytest.fixture
def timeline():
    services.ensure_udevd()
    udev = UdevSource.open()  # first, as the daemon does: nothing falls between
    timeline = FedTimeline.from_system()
    timeline.udev = udev
    timeline.apply_all(udev.read())
    yield timeline
    udev.close()
    timeline.close()


def reattach(disk: str, backing) -> None:
    """losetup DISK FILE right after a detach: the detach completes only once
    udev's probe of the old attachment closes the device (EBUSY until then)."""
    for _ in range(50):
        subprocess.run(["udevadm", "settle"], check=True)
        if subprocess.run(["losetup", disk, str(backing)], capture_output=True).returncode == 0:
            return
    raise AssertionError(f"could not attach {backing} to {disk}")


@pytest.mark.root
def test_reattached_loop_is_told_apart_by_time(timeline, tmp_path):
    first, second = image(tmp_path / "first.img"), image(tmp_path / "second.img")
    disk = run("losetup", "-f", "--show", str(first))
    name = os.path.basename(disk)
    try:
        first_wwid = resolve(name).wwid
        wait_for(timeline, lambda: getattr(timeline.at(name), "wwid", None) == first_wwid)
        before = monotonic_usec()

        run("losetup", "-d", disk)
        reattach(disk, second)  # same name, another file
        second_wwid = resolve(name).wwid
        assert second_wwid != first_wwid
        wait_for(timeline, lambda: timeline.at(name).wwid == second_wwid)
        after = monotonic_usec()

        assert timeline.at(name, before).wwid == first_wwid
        assert timeline.at(name, after).wwid == second_wwid
        dev_num = resolve(name).dev_num
        assert timeline.at(dev_num, before).wwid == first_wwid
        assert timeline.at(dev_num, after).wwid == second_wwid
        assert timeline.at(f"/dev/{name}", before).wwid == first_wwid
        # a WWID of the old attachment still finds its history
        assert timeline.at(first_wwid, before).blk_path == disk
    finally:
        subprocess.run(["losetup", "-d", disk], check=False)


@pytest.mark.root
def test_removed_partition_is_remembered(timeline, tmp_path):
    img = image(tmp_path / "parts.img", 32 * MiB)
    subprocess.run(["sfdisk", "-q", str(img)], input="label: gpt\n,8M\n,\n", text=True, check=True)
    disk = run("losetup", "-f", "--show", "-P", str(img))
    part = os.path.basename(disk) + "p1"
    try:
        run("partx", "--add", disk)
        wait_for(timeline, lambda: timeline.at(part) is not None)
        info = timeline.at(part)
        assert info.wwid == resolve(disk).wwid + "-part1"
        during = monotonic_usec()

        run("partx", "--delete", disk)
        wait_for(timeline, lambda: timeline.at(part) is None)
        after = monotonic_usec()
        assert timeline.at(part, during).wwid == info.wwid
        assert timeline.at(part, after) is None
    finally:
        subprocess.run(["losetup", "-d", disk], check=False)


@pytest.mark.root
def test_timeline_fileno_is_pollable(timeline):
    assert isinstance(timeline.udev.fileno(), int)
    assert timeline.apply_all(timeline.udev.read()) >= 0


# -- ordering rules, on a recorded sysfs (no monitor) --------------------------
@pytest.fixture
def fixture_timeline():
    """Make timelines over the recorded SAS sysfs tree; closed afterwards."""
    root = FIXTURES / "scsi_sas"
    made: list[DeviceTimeline] = []

    def make(**limits) -> DeviceTimeline:
        made.append(DeviceTimeline(Resolver(str(root), udev=False, mountinfo=str(root / "mountinfo")), **limits))
        return made[-1]

    yield make
    for timeline in made:
        timeline.close()


def uevent(action: str, diskseq: int, initialized: int, received: int, seqnum: int) -> Uevent:
    props = {"DISKSEQ": str(diskseq), "USEC_INITIALIZED": str(initialized), "DEVNAME": "/dev/sda"}
    return Uevent(action, "sda", "8:0", props, seqnum, received)


def test_late_remove_is_clamped_to_the_next_add(fixture_timeline):
    tl = fixture_timeline()
    tl.apply(uevent("add", 3, initialized=1_000, received=1_000, seqnum=10))
    # the daemon was busy: remove and the next add are read together, late
    tl.apply(uevent("remove", 3, initialized=1_000, received=9_000, seqnum=11))
    tl.apply(uevent("add", 4, initialized=7_000, received=9_001, seqnum=12))
    assert tl.at("sda", 999) is None
    assert tl.at("sda", 1_000).diskseq == 3
    assert tl.at("sda", 6_999).diskseq == 3
    assert tl.at("8:0", 7_000).diskseq == 4
    assert [e.end_usec for e in tl.entries("sda")] == [7_000, None]


def test_change_with_same_identity_keeps_one_entry(fixture_timeline):
    tl = fixture_timeline()
    tl.apply(uevent("add", 3, initialized=1_000, received=1_000, seqnum=1))
    tl.apply(uevent("change", 3, initialized=1_000, received=5_000, seqnum=2))
    assert len(tl.entries("sda")) == 1
    tl.apply(uevent("change", 5, initialized=1_000, received=6_000, seqnum=3))  # new media
    assert [(e.info.diskseq, e.end_usec) for e in tl.entries("sda")] == [(3, 6_000), (5, None)]


def test_removed_entries_expire_by_count_and_age(fixture_timeline):
    tl = fixture_timeline(max_removed=2, max_age_usec=1_000_000)
    t = 0
    for seq in range(5):
        tl.apply(uevent("add", 10 + seq, initialized=t + 1, received=t + 1, seqnum=2 * seq))
        tl.apply(uevent("remove", 10 + seq, initialized=t + 1, received=t + 2, seqnum=2 * seq + 1))
        t += 10
    assert [e.info.diskseq for e in tl.entries("sda")] == [13, 14]
    tl.apply(uevent("add", 20, initialized=5_000_000, received=5_000_000, seqnum=20))
    tl.apply(uevent("remove", 20, initialized=5_000_000, received=5_000_001, seqnum=21))
    assert [e.info.diskseq for e in tl.entries("sda")] == [20]
