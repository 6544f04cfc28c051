"""Resolver on real devices: partitioned loop devices with mounted ext4 and
xfs, and this machine's virtio disk, with a real udevd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peripety.devices import list_devices, resolve
from peripety.errors import DeviceNotFound
from tests.harness import services
from tests.harness.partitioned import fs_uuid, run

@pytest.mark.root
def test_partition_same_wwid_for_every_key(loop_disk):
    p1 = loop_disk.ext4_part
    st = os.stat(p1)
    keys = [
        p1,
        os.path.basename(p1),
        f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}",
        fs_uuid(p1),
        f"/dev/disk/by-uuid/{fs_uuid(p1)}",
        str(loop_disk.ext4_mount),
    ]
    infos = [resolve(k) for k in keys]
    disk = resolve(loop_disk.disk)
    assert disk.wwid.startswith("loop:")
    for key, info in zip(keys, infos):
        assert info.wwid == disk.wwid + "-part1", key
        assert info.blk_type == "Partition"
        assert info.blk_path == p1
        assert info.uuid == fs_uuid(p1)
        assert info.mount_point == str(loop_disk.ext4_mount)
        assert info.owners_paths[0] == loop_disk.disk
        assert info.owners_wwids[0] == disk.wwid
        assert info.missing == []


@pytest.mark.root
def test_xfs_partition_and_its_mount_point(loop_disk):
    info = resolve(str(loop_disk.xfs_mount))
    assert info.blk_path == loop_disk.xfs_part
    assert info.uuid == fs_uuid(loop_disk.xfs_part)
    assert info.wwid.endswith("-part2")
    assert info.diskseq == int(Path(f"/sys/block/{loop_disk.name}/diskseq").read_text())


@pytest.mark.root
def test_loop_wwid_is_the_backing_file_identity(loop_disk):
    info = resolve(loop_disk.name)
    st = os.stat(loop_disk.image)
    assert info.blk_type == "Loop"
    assert info.wwid == f"loop:{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino}:{loop_disk.image}"
    assert info.transport["backing_file"] == str(loop_disk.image)
    # the image sits on a block-device filesystem: that device is below the loop
    below = resolve(f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}") if os.major(st.st_dev) else None
    if below is not None:
        assert info.owners_wwids[0] == below.wwid
    # the same file re-attached elsewhere has the same identity
    second = run("losetup", "-f", "--show", "-r", str(loop_disk.image))
    try:
        assert resolve(second).wwid == info.wwid
    finally:
        run("losetup", "-d", second)


@pytest.mark.root
def test_listing_contains_partitions_and_disk(loop_disk):
    paths = {i.blk_path: i for i in list_devices()}
    assert {loop_disk.disk, loop_disk.ext4_part, loop_disk.xfs_part} <= set(paths)
    assert paths[loop_disk.xfs_part].mount_point == str(loop_disk.xfs_mount)


@pytest.mark.root
def test_virtio_disk():
    services.ensure_udevd()
    if not os.path.exists("/sys/block/vda"):
        pytest.fail("this test expects the VM's virtio disk vda")
    serial = Path("/sys/block/vda/serial").read_text().strip()
    info = resolve("vda")
    assert info.blk_type == "Virtio"
    assert info.wwid == (f"virtio-{serial}" if serial else info.wwid)
    assert info.wwid.startswith("virtio-")
    assert resolve("/dev/vda").wwid == info.wwid
    assert resolve(Path("/sys/block/vda/dev").read_text().strip()).wwid == info.wwid
    # without udev the answer is the same identity, and says what is missing
    no_udev = resolve("vda", udev=False)
    assert no_udev.wwid == info.wwid
    assert "uuid" in no_udev.missing


@pytest.mark.root
def test_directory_that_is_not_a_mount_point(tmp_path):
    with pytest.raises(DeviceNotFound) as err:
        resolve(str(tmp_path))
    assert "not a mount point" in str(err.value)
    with pytest.raises(DeviceNotFound):
        resolve("/proc")  # a mount point, but no block device under it
