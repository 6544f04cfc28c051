"""Resolver on recorded-layout sysfs trees (hardware absent from the test VM).

See tests/fixtures/sysfs/*/README.md for where each tree comes from. No udev
data exists for them, so these exercise the sysfs fallback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from peripety.devices import list_devices, resolve
from peripety.errors import DeviceNotFound

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"


def fixture_resolve(case: str, key: str, **kwargs):
    root = FIXTURES / case
    return resolve(key, sysfs_root=str(root), udev=False, mountinfo=str(root / "mountinfo"), **kwargs)


def fixture_list(case: str):
    root = FIXTURES / case
    return list_devices(sysfs_root=str(root), udev=False, mountinfo=str(root / "mountinfo"))


@pytest.mark.parametrize("key", ["sda", "8:0", "0:0:0:0", "/dev/sda", "naa.5000c500a1b2c3d7"])
def test_scsi_disk_has_naa_wwid_whatever_the_key(key):
    info = fixture_resolve("scsi_sas", key)
    assert info.wwid == "naa.5000c500a1b2c3d7"
    assert info.blk_type == "SCSI"
    assert info.blk_path == "/dev/sda"
    assert info.dev_num == "8:0"
    assert info.diskseq == 3


def test_sas_transport():
    info = fixture_resolve("scsi_sas", "sda")
    assert info.transport_id == "sas:0x5000c500a1b2c3d5"
    assert info.transport["hctl"] == "0:0:0:0"
    assert info.transport["type"] == "SAS"


@pytest.mark.parametrize("key", ["sda1", "8:1", "/dev/sda1", "/srv/sas"])
def test_partition_wwid_owner_and_mount_point(key):
    info = fixture_resolve("scsi_sas", key)
    assert info.wwid == "naa.5000c500a1b2c3d7-part1"
    assert info.blk_type == "Partition"
    assert info.mount_point == "/srv/sas"
    assert info.owners_wwids == ["naa.5000c500a1b2c3d7"]
    assert info.owners_paths == ["/dev/sda"]
    assert info.owners_transport_ids == ["sas:0x5000c500a1b2c3d5"]
    # no udev database here: the FS UUID cannot be known, and says so
    assert info.uuid is None and "uuid" in info.missing


def test_lv_on_multipath_lists_every_device_below_flattened():
    info = fixture_resolve("fc_mpath_lvm", "/dev/mapper/vg0-lv0")
    assert info.blk_type == "Device Mapper LVM"
    assert info.wwid.startswith("LVM-Xm3VfOYn")
    assert info.preferred_blk_path == "/dev/mapper/vg0-lv0"
    assert info.blk_path == "/dev/dm-1"
    assert info.mount_point == "/srv/data"
    assert info.owners_types == ["Device Mapper Multipath", "SCSI", "SCSI"]
    assert info.owners_paths == ["/dev/mapper/mpatha", "/dev/sdb", "/dev/sdc"]
    assert info.owners_wwids == [
        "mpath-3600a098038303053453f463045727a4b",
        "naa.600a098038303053453f463045727a4b",
        "naa.600a098038303053453f463045727a4b",
    ]
    assert info.owners_transport_ids[1:] == [
        "fc:0x10000090fa1b2c3d-0x500a09818e1a2b3c",
        "fc:0x10000090fa1b2c3e-0x500a09828e1a2b3c",
    ]


@pytest.mark.parametrize("key", ["mpatha", "/dev/mapper/mpatha", "dm-0", "253:0"])
def test_multipath_map(key):
    info = fixture_resolve("fc_mpath_lvm", key)
    assert info.blk_type == "Device Mapper Multipath"
    assert info.wwid == "mpath-3600a098038303053453f463045727a4b"
    assert info.owners_paths == ["/dev/sdb", "/dev/sdc"]


def test_fc_path_transport_detail():
    info = fixture_resolve("fc_mpath_lvm", "6:0:0:1")
    assert info.blk_path == "/dev/sdc"
    assert info.transport_id == "fc:0x10000090fa1b2c3e-0x500a09828e1a2b3c"
    assert info.transport["type"] == "FC"
    assert info.transport["host_port_state"] == "Online"
    assert info.transport["host_speed"] == "16 Gbit"
    assert info.transport["rport"] == "rport-6:0-0"
    assert info.transport["target_port_id"] == "0x060200"


def test_multipath_paths_are_folded_under_their_map_in_listing():
    paths = [i.blk_path for i in fixture_list("fc_mpath_lvm")]
    assert paths == ["/dev/dm-0", "/dev/dm-1"]


def test_iscsi_transport():
    info = fixture_resolve("iscsi", "3:0:0:0")
    assert info.wwid == "naa.6001405f2a1b3c4d5e6f708192a3b4c5"
    assert info.transport_id == (
        "iscsi:iqn.2003-01.org.linux-iscsi.storage1.x8664:sn.5f3b2a1c9d0e,192.168.122.10:3260"
    )
    assert info.transport["tpgt"] == "1"
    assert info.transport["session_state"] == "LOGGED_IN"


@pytest.mark.parametrize("key", ["nvme0n1", "259:0", "nvme0"])
def test_nvme_namespace(key):
    info = fixture_resolve("nvme_pcie", key)
    assert info.blk_type == "NVMe"
    assert info.wwid == "eui.0025385b71b0c1f2"
    assert info.transport_id == "nvme:pcie:0000:3d:00.0"
    assert info.transport["nsid"] == "1"
    assert info.transport["model"] == "Samsung SSD 970 EVO Plus 1TB"


def test_nvme_controller_with_wrong_nsid_is_not_found():
    with pytest.raises(DeviceNotFound) as err:
        fixture_resolve("nvme_pcie", "nvme0", nsid=2)
    assert "nvme0" in str(err.value)


def test_nvme_partition():
    info = fixture_resolve("nvme_pcie", "nvme0n1p1")
    assert info.wwid == "eui.0025385b71b0c1f2-part1"
    assert info.owners_wwids == ["eui.0025385b71b0c1f2"]


def test_md_raid1_wwid_and_members():
    info = fixture_resolve("md_raid1", "/srv/raid")
    assert info.blk_type == "MD RAID"
    assert info.wwid == "md-uuid-3c6e0b7c:0b59a0c1:5bd41f2a:8e7c9d01"
    assert info.owners_paths == ["/dev/sdb1", "/dev/sdb", "/dev/sdc1", "/dev/sdc"]
    # the array name (/dev/md/<name>) is only known to udev
    assert info.preferred_blk_path == "/dev/md0"
    assert "preferred_blk_path" in info.missing


def test_t10_wwid_is_folded_like_the_original():
    info = fixture_resolve("md_raid1", "sdb")
    assert info.wwid == "t10.ATA-WDC-WD10EZEX-08WN4A0-WD-WCC6Y1ABCDEF"


@pytest.mark.parametrize("key", ["sdz", "9:9", "7:0:0:0", "/dev/nonexistent", "no-such-wwid", ""])
def test_unknown_keys_raise_device_not_found_naming_the_key(key):
    with pytest.raises(DeviceNotFound) as err:
        fixture_resolve("scsi_sas", key)
    assert err.value.key == key
