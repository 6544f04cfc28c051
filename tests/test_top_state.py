"""``prpt top``'s live-state readers on the recorded sysfs trees (md,
multipath, SCSI) and on this machine's own /proc; no disk is opened."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from peripety.top.state import (
    DiskCounters,
    StateSampler,
    io_rate,
    read_diskstats,
    read_ioerr_cnt,
    read_md,
    read_mounts,
    read_multipath,
)

SYSFS = Path(__file__).parent / "fixtures" / "sysfs"

# /proc/diskstats lines in the kernel's format (Documentation/admin-guide/iostats.rst):
# major minor name, then reads, reads merged, sectors read, ms reading, writes, writes merged,
# sectors written, ms writing, in flight, ms doing I/O, weighted ms, (discard and flush fields).
DISKSTATS_BEFORE = """\
   8      16 sdb 1000 0 8000 500 2000 0 16000 1500 0 900 2000 0 0 0 0 0 0
   8      32 sdc 10 0 80 5 0 0 0 0 0 5 5 0 0 0 0 0 0
   9       0 md0 50 0 400 0 0 0 0 0 0 0 0 0 0 0 0
"""
DISKSTATS_AFTER = """\
   8      16 sdb 1100 0 8800 700 2300 0 18400 2300 2 1400 3000 0 0 0 0 0 0
   8      32 sdc 10 0 80 5 0 0 0 0 0 5 5 0 0 0 0 0 0
   9       0 md0 60 0 480 0 0 0 0 0 0 0 0 0 0 0 0
"""


def copy_tree(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(SYSFS / name, target, symlinks=True)
    return target


def write_diskstats(proc: Path, text: str) -> None:
    proc.mkdir(exist_ok=True)
    (proc / "diskstats").write_text(text)


def test_io_rate_is_iostat_arithmetic():
    before = DiskCounters(1000, 8000, 500, 2000, 16000, 1500, 0, 900)
    after = DiskCounters(1100, 8800, 700, 2300, 18400, 2300, 2, 1400)
    rate = io_rate(before, after, 2.0)
    assert rate.read_iops == 50 and rate.write_iops == 150 and rate.iops == 200
    assert rate.read_bps == 800 * 512 / 2 and rate.write_bps == 2400 * 512 / 2
    assert rate.await_ms == pytest.approx((200 + 800) / 400)  # ms spent per completed I/O
    assert rate.util == pytest.approx(0.25)  # 500 ms busy in 2 s
    idle = io_rate(after, after, 1.0)
    assert idle.iops == 0 and idle.await_ms is None and idle.util == 0


def test_counters_going_backwards_never_give_negative_rates():
    before = DiskCounters(1000, 8000, 500, 2000, 16000, 1500, 0, 900)
    after = DiskCounters(5, 40, 1, 0, 0, 0, 0, 1)  # the device was replaced: counters restarted
    rate = io_rate(before, after, 1.0)
    assert rate.iops == 0 and rate.bps == 0 and rate.util == 0


def test_this_machines_diskstats_parse():
    stats = read_diskstats("/proc")
    assert stats, "/proc/diskstats gave no device"
    name, counters = next(iter(stats.items()))
    assert Path("/sys/class/block", name).exists()
    assert counters.reads >= 0 and counters.io_ticks_ms >= 0


def test_md_clean_array_on_the_fixture():
    md = read_md("md0", SYSFS / "md_raid1")
    assert (md.level, md.raid_disks, md.degraded, md.sync_action, md.sync_percent) == ("raid1", 2, 0, "idle", None)
    assert md.summary() == "raid1"


def test_md_degraded_and_recovering_with_percent(tmp_path):
    root = copy_tree("md_raid1", tmp_path)
    md_dir = root / "devices/virtual/block/md0/md"
    (md_dir / "degraded").write_text("1\n")
    (md_dir / "sync_action").write_text("recover\n")
    (md_dir / "sync_completed").write_text("524288 / 2097152\n")
    md = read_md("md0", root)
    assert md.degraded == 1 and md.sync_percent == pytest.approx(25.0)
    assert md.summary() == "degraded 1/2 recover 25%"
    state = StateSampler(str(root), str(tmp_path / "proc"), str(root / "mountinfo")).sample(0.0)["md0"]
    assert state.alarming and state.summary() == "degraded 1/2 recover 25%"
    assert state.mount is not None and state.mount.mount_point == "/srv/raid" and not state.mount.read_only


def test_not_an_md_array():
    assert read_md("sdb", SYSFS / "md_raid1") is None


def test_multipath_paths_up_from_each_path_scsi_state(tmp_path):
    mp = read_multipath("dm-0", SYSFS / "fc_mpath_lvm")
    assert mp.map_name == "mpatha" and mp.paths == {"sdb": "running", "sdc": "running"}
    assert mp.summary() == "paths 2/2"
    assert read_multipath("dm-1", SYSFS / "fc_mpath_lvm") is None  # the LV on it is no multipath map

    root = copy_tree("fc_mpath_lvm", tmp_path)
    (root / "block/sdc/device/state").write_text("offline\n")
    state = StateSampler(str(root), str(tmp_path / "proc"), str(root / "mountinfo")).sample(0.0)["dm-0"]
    assert state.multipath.summary() == "paths 1/2" and state.alarming


def test_ioerr_cnt_is_hex_and_its_growth_is_shown(tmp_path):
    assert read_ioerr_cnt("sda", SYSFS / "scsi_sas") == 0
    assert read_ioerr_cnt("sda", SYSFS / "md_raid1") is None  # no such attribute there: not shown
    root = copy_tree("scsi_sas", tmp_path)
    counter = (root / "block/sda/device").resolve() / "ioerr_cnt"
    sampler = StateSampler(str(root), str(tmp_path / "proc"), str(root / "mountinfo"))
    first = sampler.sample(0.0)["sda"]
    assert first.ioerr_cnt == 0 and first.ioerr_delta is None  # no earlier sample
    counter.write_text("0x1a\n")
    second = sampler.sample(1.0)["sda"]
    assert second.ioerr_cnt == 26 and second.ioerr_delta == 26 and second.alarming
    third = sampler.sample(2.0)["sda"]
    assert third.ioerr_delta == 0 and not third.alarming


def test_sampler_rates_between_two_samples_on_a_fixture(tmp_path):
    root = SYSFS / "md_raid1"
    proc = tmp_path / "proc"
    write_diskstats(proc, DISKSTATS_BEFORE)
    sampler = StateSampler(str(root), str(proc), str(root / "mountinfo"))
    assert sampler.sample(10.0)["sdb"].io is None  # one sample has no rate
    write_diskstats(proc, DISKSTATS_AFTER)
    states = sampler.sample(12.0)
    assert states["sdb"].io.iops == 200 and states["sdb"].notable
    assert states["sdc"].io.iops == 0 and not states["sdc"].notable
    assert states["md0"].io.read_iops == 5 and states["md0"].md.level == "raid1"


def test_mountinfo_read_only_from_mount_or_super_options(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "27 1 8:1 / /srv/a ro,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "28 1 8:2 / /srv/b rw,relatime shared:2 - ext4 /dev/sda2 ro,errors=remount-ro\n"
        "29 1 8:3 / /srv/with\\040space rw,relatime - xfs /dev/sda3 rw,attr2\n"
        "30 1 8:3 /sub /bind rw - xfs /dev/sda3 rw,attr2\n"
        # Recorded on Linux 6.18 after an ext4 error under errors=remount-ro:
        "43 27 7:0 / /tmp/cli-admin-ro rw,relatime - ext4 /dev/loop0 rw,errors=remount-ro,emergency_ro\n"
        "44 27 7:1 / /srv/c rw,relatime - ext4 /dev/loop1 rw,shutdown\n"
    )
    mounts = read_mounts(mountinfo)
    assert mounts["7:0"].read_only and not mounts["7:0"].shut_down
    assert mounts["7:1"].shut_down and not mounts["7:1"].read_only
    assert mounts["8:1"].read_only and mounts["8:2"].read_only and not mounts["8:3"].read_only
    assert mounts["8:3"].mount_point == "/srv/with space"  # the first mount, not the bind mount
    assert read_mounts(SYSFS / "fc_mpath_lvm" / "mountinfo")["253:1"].fs_type == "xfs"
