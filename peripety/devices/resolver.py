"""One resolver for every way a kernel line or a user names a block device.

Keys: ``major:minor``; kernel names (``sda1``, ``dm-0``, ``loop3``,
``nvme0n1``); ``/dev`` paths and symlinks; mount points; SCSI
``host:channel:target:lun``; an NVMe controller (``nvme0``, with ``nsid``
when it has several namespaces); a dm name (``mpatha``); a FS UUID; a WWID
as peripety prints it.

Data comes from sysfs attributes and the udev database only: resolving never
opens a block device (the FS UUID is udev's ``ID_FS_UUID``, not a blkid
probe). Where udev has no record the sysfs answer is used and the fields that
could not be determined are named in ``BlkInfo.missing``.

WWIDs (stable across reboots and renames; the same LUN through any path):

============================  =================================================
SCSI                          sysfs ``device/wwid`` (VPD 0x83: ``naa.``,
                              ``eui.``, ``t10.``), blanks folded to ``-`` and
                              trailing NULs dropped, as the original peripety
NVMe                          namespace ``wwid`` (``eui.``/``nguid.``/``uuid.``/
                              ``nvme.``)
Device Mapper (any)           ``dm/uuid`` (``mpath-…``, ``LVM-…``, ``CRYPT-…``);
                              ``dm-name-<name>`` when the map has no uuid
MD RAID                       ``md-uuid-`` + array uuid in mdadm's ``xxxxxxxx:…``
                              form (the ``/dev/disk/by-id`` link name)
Virtio                        ``virtio-<serial>``; without a serial
                              ``virtio-path-<ID_PATH>`` (or the PCI address from
                              sysfs): stable while the disk stays in its slot
Loop                          ``loop:<maj>:<min>:<inode>:<path>`` of the backing
                              file, so re-attaching to another file changes it
                              and re-attaching the same file keeps it; the path
                              tells files apart where device numbers and inodes
                              are reused (FUSE, tmpfs mounted anew)
Partition                     parent's WWID + ``-part<N>``
============================  =================================================

Owners are the devices *below*, flattened depth-first: an LV lists its
multipath map then the map's SCSI paths; a partition lists its disk and the
disk's owners. A loop device lists the block device holding its backing file
(and that device's owners) when the file lives on a block-device filesystem:
that is where a loop device's I/O really goes, so an error there is the root
cause of errors on the loop device. Files on FUSE/tmpfs have no such owner.
"""

from __future__ import annotations

import logging
import os
import re
import stat

from ..errors import DeviceNotFound
from ..event import BlkInfo
from . import mounts as _mounts
from . import udevdb
from .sysfs import Sysfs
from .transport import nvme_transport, scsi_transport

log = logging.getLogger("peripety.devices.resolver")

_READ_DB = object()  # sentinel: read the udev database for this device

_DEV_NUM = re.compile(r"^\d+:\d+$")
_HCTL = re.compile(r"^\d+:\d+:\d+:\d+$")
# Kernel block device names: sdX, vdX, xvdX, hdX, loopN, dm-N, mdN, nvmeXnY[pZ],
# mmcblkN, zramN, nbdN, srN, with an optional partition suffix.
_KERNEL_NAME_SHAPE = re.compile(
    r"^(?:[shv]d[a-z]+|xvd[a-z]+|loop|dm-|md|nvme\d+n|mmcblk|zram|nbd|sr|rbd|pmem)\d*(?:p?\d+)?$"
)
_NVME_CONTROLLER = re.compile(r"^nvme\d+$")

# dm/uuid prefix -> blk_type; the prefix is set by the tool that made the map.
_DM_TYPES = (
    ("mpath-", "Device Mapper Multipath"),
    ("LVM-", "Device Mapper LVM"),
    ("CRYPT-", "Device Mapper Crypt"),
)
_DM_PARTITION = re.compile(r"^part\d+-")  # kpartx partitions of a map

# sysfs bus of a disk's `device` -> blk_type
# (a native-multipath NVMe namespace head hangs off its nvme-subsystem)
_BUS_TYPES = {"scsi": "SCSI", "virtio": "Virtio", "nvme": "NVMe", "nvme-subsystem": "NVMe"}


class Resolver:
    """Resolve device keys against one sysfs tree, ``/dev`` and udev."""

    def __init__(
        self,
        sysfs_root: str = "/sys",
        dev_root: str = "/dev",
        udev: bool = True,
        mountinfo: str = "/proc/self/mountinfo",
    ):
        self.sysfs = Sysfs(sysfs_root)
        self.dev_root = dev_root.rstrip("/") or "/"
        self.udev = udev
        # parsed again only after a mount or unmount, not per resolution
        self.mount_table = _mounts.MountTable(mountinfo)

    def close(self) -> None:
        self.mount_table.close()

    def __enter__(self) -> "Resolver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public --------------------------------------------------------------
    def resolve(self, key: str, nsid: int | None = None) -> BlkInfo:
        return self._describe(self.kernel_name(key, nsid))

    def describe(self, name: str, props: dict | None = None, *, use_props: bool = False) -> BlkInfo:
        """BlkInfo of kernel name ``name``. With ``use_props`` the given udev
        properties (e.g. from a uevent) are used instead of a database read."""
        return self._describe(name, props if use_props else _READ_DB)

    def list_devices(self) -> list[BlkInfo]:
        """Every block device; multipath paths are folded under their map."""
        names = [n for n in self.sysfs.all_block_names() if not self._is_multipath_path(n)]
        found = []
        for name in sorted(names, key=_natural):
            try:
                found.append(self._describe(name))
            except DeviceNotFound:
                continue  # removed while we listed
        return found

    def kernel_name(self, key: str, nsid: int | None = None) -> str:
        """The kernel name (``sdb``, ``dm-3``) a key designates, or DeviceNotFound."""
        key = str(key).strip()
        if not key:
            raise DeviceNotFound(key, "empty device name")
        if _DEV_NUM.match(key):
            return self._found(key, self.sysfs.name_of_dev_num(key))
        if _HCTL.match(key):
            return self._found(key, self.sysfs.name_of_hctl(key), "no SCSI disk at this address")
        if key.startswith("/"):
            return self._name_of_path(key)
        # kernel names hold '!' where /dev has '/' (cciss!c0d0)
        if self.sysfs.block_dir(key.replace("/", "!")):
            return key.replace("/", "!")
        if _NVME_CONTROLLER.match(key):
            return self._name_of_nvme_controller(key, nsid)
        dm_name = self._name_of_dm_name(key)
        if dm_name:
            return dm_name
        if _KERNEL_NAME_SHAPE.match(key):
            # sdq, loop90, nvme3n1: a kernel name not in sysfs is no device
            # now; no FS UUID or WWID looks like this, so skip the scans.
            raise DeviceNotFound(key)
        return self._found(key, self._name_of_fs_uuid(key) or self._name_of_wwid(key))

    # -- key -> kernel name ---------------------------------------------------
    @staticmethod
    def _found(key: str, name: str | None, reason: str = "no such block device") -> str:
        if not name:
            raise DeviceNotFound(key, reason)
        return name

    def _name_of_path(self, path: str) -> str:
        mounts = self.mount_table.current()
        if _mounts.is_mount_point(path, mounts):
            dev_num = _mounts.dev_num_mounted_at(path, mounts)
            if dev_num is None:
                raise DeviceNotFound(path, "mount point of a filesystem with no block device")
            return self._found(path, self.sysfs.name_of_dev_num(dev_num))
        if os.path.isdir(path):
            raise DeviceNotFound(path, "directory is not a mount point")
        try:
            st = os.stat(path)
        except OSError:
            # A recorded sysfs tree has no /dev to go with it: read the name.
            return self._found(path, self._name_of_dev_path(path))
        if not stat.S_ISBLK(st.st_mode):
            raise DeviceNotFound(path, "not a block device or mount point")
        dev_num = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        return self._found(path, self.sysfs.name_of_dev_num(dev_num))

    def _name_of_dev_path(self, path: str) -> str | None:
        prefix = self.dev_root + "/"
        if not path.startswith(prefix):
            return None
        rest = path[len(prefix):]
        if rest.startswith("mapper/"):
            return self._name_of_dm_name(rest[len("mapper/"):])
        name = rest.replace("/", "!")
        return name if self.sysfs.block_dir(name) else None

    def _name_of_nvme_controller(self, key: str, nsid: int | None) -> str:
        namespaces = self.sysfs.nvme_namespaces(key)
        if nsid is not None:
            for name in namespaces:
                if self.sysfs.attr(name, "nsid") == str(nsid):
                    return name
            raise DeviceNotFound(f"{key} nsid {nsid}", "no such NVMe namespace")
        if len(namespaces) == 1:
            return namespaces[0]
        if not namespaces:
            raise DeviceNotFound(key, "NVMe controller with no namespace block device")
        raise DeviceNotFound(key, f"NVMe controller has {len(namespaces)} namespaces: give the nsid")

    def _name_of_dm_name(self, dm_name: str) -> str | None:
        for name in self.sysfs.all_block_names():
            if name.startswith("dm-") and self.sysfs.attr(name, "dm/name") == dm_name:
                return name
        return None

    def _name_of_fs_uuid(self, fs_uuid: str) -> str | None:
        link = os.path.join(self.dev_root, "disk/by-uuid", fs_uuid)
        if os.path.exists(link):
            return self._name_of_path(link)
        if not self.udev:
            return None
        dev_nums = udevdb.dev_nums_with("ID_FS_UUID", fs_uuid)
        return self.sysfs.name_of_dev_num(dev_nums[0]) if dev_nums else None

    def _name_of_wwid(self, wwid: str) -> str | None:
        # Slow path (every device described): only for keys nothing else matched.
        for name in self.sysfs.all_block_names():
            try:
                if self._identity(name, None)[1] == wwid:
                    return name
            except DeviceNotFound:
                continue
        return None

    # -- kernel name -> BlkInfo ----------------------------------------------
    def _describe(self, name: str, props=_READ_DB, owners: bool = True) -> BlkInfo:
        dev_num = self.sysfs.attr(name, "dev")
        if not dev_num:
            raise DeviceNotFound(name)
        if props is _READ_DB:
            props = udevdb.properties(dev_num) if self.udev else None
        info = BlkInfo(dev_num=dev_num, blk_path=self._dev_path(name))
        if props is None:
            info.missing.append("uuid")  # FS UUID only comes from udev
        else:
            info.uuid = props.get("ID_FS_UUID") or None
        info.blk_type, info.wwid = self._identity(name, props)
        if not info.wwid:
            info.missing.append("wwid")
        info.diskseq = self._diskseq(name, props)
        info.preferred_blk_path = self._preferred_path(name, info, props)
        info.mount_point = _mounts.mount_point_of(dev_num, self.mount_table.current())
        info.transport_id, info.transport = self._transport(name, info.blk_type)
        if owners:
            for lower in self._owner_names(name, info.blk_type):
                try:
                    below = self._describe(lower, owners=False)
                except DeviceNotFound:
                    continue
                info.owners_wwids.append(below.wwid)
                info.owners_types.append(below.blk_type)
                info.owners_paths.append(below.preferred_blk_path)
                info.owners_transport_ids.append(below.transport_id)
        return info

    def _dev_path(self, name: str) -> str:
        return f"{self.dev_root}/{name.replace('!', '/')}"

    def _blk_type(self, name: str) -> str:
        sysfs = self.sysfs
        if sysfs.has(name, "partition"):
            return "Partition"
        if sysfs.has(name, "dm"):
            uuid = sysfs.attr(name, "dm/uuid") or ""
            if _DM_PARTITION.match(uuid):
                return "Partition"
            return next((t for p, t in _DM_TYPES if uuid.startswith(p)), "Device Mapper")
        if sysfs.has(name, "md"):
            return "MD RAID"
        if sysfs.has(name, "loop") or name.startswith("loop"):
            return "Loop"
        bus = sysfs.link_basename(name, "device/subsystem")
        if bus in _BUS_TYPES:
            return _BUS_TYPES[bus]
        if name.startswith("zram"):
            return "ZRAM"
        return "Other"

    def _identity(self, name: str, props: dict | None) -> tuple[str, str]:
        """(blk_type, wwid) of ``name``; wwid is "" when it cannot be known."""
        blk_type = self._blk_type(name)
        sysfs = self.sysfs
        if blk_type == "Partition" and sysfs.has(name, "partition"):
            parent = sysfs.parent_of_partition(name)
            parent_wwid = self._identity(parent, None)[1] if parent else ""
            number = sysfs.attr(name, "partition")
            return blk_type, f"{parent_wwid}-part{number}" if parent_wwid else ""
        if sysfs.has(name, "dm"):
            uuid = sysfs.attr(name, "dm/uuid")
            return blk_type, uuid or f"dm-name-{sysfs.attr(name, 'dm/name') or name}"
        reader = _WWID_READERS.get(blk_type)
        wwid = reader(self, name, props) if reader else ""
        if not wwid and props:
            # udev's own ids for devices peripety has no rule for (USB, ATA via libata ...)
            wwid = props.get("ID_WWN_WITH_EXTENSION") or props.get("ID_WWN") or props.get("ID_SERIAL") or ""
        return blk_type, wwid

    def _wwid_scsi(self, name: str, props) -> str:
        raw = self.sysfs.attr(name, "device/wwid")
        return pretty_wwid(raw) if raw else ""

    def _wwid_nvme(self, name: str, props) -> str:
        return pretty_wwid(self.sysfs.attr(name, "wwid") or "")

    def _wwid_md(self, name: str, props) -> str:
        uuid = self.sysfs.attr(name, "md/uuid") or (props or {}).get("MD_UUID") or ""
        hexdigits = re.sub(r"[^0-9a-fA-F]", "", uuid).lower()
        if len(hexdigits) != 32:
            return ""
        return "md-uuid-" + ":".join(hexdigits[i : i + 8] for i in range(0, 32, 8))

    def _wwid_virtio(self, name: str, props) -> str:
        serial = self.sysfs.attr(name, "serial")
        if serial:
            return "virtio-" + pretty_wwid(serial)
        id_path = (props or {}).get("ID_PATH")
        if not id_path:
            # the PCI function the virtio device hangs off: .../0000:00:02.0/virtio1/block/vda
            real = self.sysfs.real_path(name) or ""
            parts = real.split("/")
            id_path = "pci-" + parts[-4] if len(parts) >= 4 and re.match(r"^[0-9a-f]{4}:", parts[-4]) else ""
        return f"virtio-path-{id_path}" if id_path else ""

    def _wwid_loop(self, name: str, props) -> str:
        st = self._backing_stat(name)
        if st is None:
            return ""
        backing = self.sysfs.attr(name, "loop/backing_file")
        return f"loop:{os.major(st.st_dev)}:{os.minor(st.st_dev)}:{st.st_ino}:{backing}"

    def _backing_stat(self, name: str) -> os.stat_result | None:
        backing = self.sysfs.attr(name, "loop/backing_file")
        if not backing:
            return None  # not attached
        try:
            # stat asks the backing filesystem, never the loop device itself
            return os.stat(backing)
        except OSError as exc:
            log.debug("%s: backing file %s: %s", name, backing, exc)
            return None

    def _diskseq(self, name: str, props: dict | None) -> int | None:
        text = (props or {}).get("DISKSEQ") or self.sysfs.attr(name, "diskseq")
        if not text and self.sysfs.has(name, "partition"):
            # a partition shares its disk's media, hence its sequence number
            parent = self.sysfs.parent_of_partition(name)
            text = self.sysfs.attr(parent, "diskseq") if parent else None
        return int(text) if text and text.isdigit() else None

    def _preferred_path(self, name: str, info: BlkInfo, props: dict | None) -> str:
        if self.sysfs.has(name, "dm"):
            dm_name = self.sysfs.attr(name, "dm/name")
            if dm_name:
                return f"{self.dev_root}/mapper/{dm_name}"
        if info.blk_type == "MD RAID":
            md_name = (props or {}).get("MD_DEVNAME")
            if md_name:
                return f"{self.dev_root}/md/{md_name}"
            if props is None:
                info.missing.append("preferred_blk_path")  # the array name is only in udev
        return info.blk_path

    def _transport(self, name: str, blk_type: str) -> tuple[str, dict[str, str]]:
        if blk_type == "SCSI":
            return scsi_transport(self.sysfs, name)
        if blk_type == "NVMe":
            return nvme_transport(self.sysfs, name)
        if blk_type == "Loop":
            backing = self.sysfs.attr(name, "loop/backing_file")
            return "", {"backing_file": backing} if backing else {}
        return "", {}

    # -- owners ----------------------------------------------------------------
    def _lower_names(self, name: str, blk_type: str) -> list[str]:
        if self.sysfs.has(name, "partition"):
            parent = self.sysfs.parent_of_partition(name)
            return [parent] if parent else []
        if blk_type == "Loop":
            st = self._backing_stat(name)
            if st is None or os.major(st.st_dev) == 0:
                return []  # tmpfs/FUSE/overlay: no block device below
            lower = self.sysfs.name_of_dev_num(f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
            return [lower] if lower else []
        return self.sysfs.entries(name, "slaves")

    def _owner_names(self, name: str, blk_type: str) -> list[str]:
        ordered: list[str] = []
        seen = {name}

        def walk(current: str, current_type: str) -> None:
            for lower in self._lower_names(current, current_type):
                if lower in seen:
                    continue
                seen.add(lower)
                ordered.append(lower)
                walk(lower, self._blk_type(lower))

        walk(name, blk_type)
        return ordered

    def _is_multipath_path(self, name: str) -> bool:
        return any(
            (self.sysfs.attr(holder, "dm/uuid") or "").startswith("mpath-")
            for holder in self.sysfs.entries(name, "holders")
        )


_WWID_READERS = {
    "SCSI": Resolver._wwid_scsi,
    "NVMe": Resolver._wwid_nvme,
    "MD RAID": Resolver._wwid_md,
    "Virtio": Resolver._wwid_virtio,
    "Loop": Resolver._wwid_loop,
}


def pretty_wwid(raw: str) -> str:
    """The original peripety's WWID form: blanks folded to ``-``, no trailing NULs."""
    text = re.sub(r"[ \t]+", "-", raw.strip())
    return re.sub(r"(\\0|\x00)+$", "", text)


def _natural(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def resolve(
    key: str,
    *,
    sysfs_root: str = "/sys",
    dev_root: str = "/dev",
    udev: bool = True,
    mountinfo: str = "/proc/self/mountinfo",
    nsid: int | None = None,
) -> BlkInfo:
    """Describe the block device ``key`` names; raise DeviceNotFound(key)."""
    with Resolver(sysfs_root, dev_root, udev, mountinfo) as resolver:
        return resolver.resolve(key, nsid)


def list_devices(
    *,
    sysfs_root: str = "/sys",
    dev_root: str = "/dev",
    udev: bool = True,
    mountinfo: str = "/proc/self/mountinfo",
) -> list[BlkInfo]:
    """All block devices (multipath paths folded under their map's owners)."""
    with Resolver(sysfs_root, dev_root, udev, mountinfo) as resolver:
        return resolver.list_devices()
