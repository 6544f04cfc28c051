"""Reading block-device facts from sysfs, rooted anywhere.

Every path goes through one ``Sysfs`` object so tests can point it at a
recorded tree (``tests/fixtures/sysfs/<case>``) instead of ``/sys``. Only
attribute files are read: nothing here opens a block device.
"""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger("peripety.devices.sysfs")

_NVME_NAMESPACE = re.compile(r"^nvme\d+n\d+$")


class Sysfs:
    """Block-device view of a sysfs tree rooted at ``root``."""

    def __init__(self, root: str = "/sys"):
        self.root = root

    # -- naming --------------------------------------------------------------
    def block_dir(self, name: str) -> str | None:
        """The device directory of block device ``name`` (disk or partition)."""
        for parent in ("class/block", "block"):
            path = os.path.join(self.root, parent, name)
            if os.path.isdir(path):
                return path
        return None

    def name_of_dev_num(self, dev_num: str) -> str | None:
        """``major:minor`` -> kernel name, through ``dev/block/M:m``."""
        return self._link_basename(os.path.join(self.root, "dev/block", dev_num))

    def name_of_hctl(self, hctl: str) -> str | None:
        """SCSI ``host:channel:target:lun`` -> the disk it carries, if any."""
        names = self._listdir(os.path.join(self.root, "bus/scsi/devices", hctl, "block"))
        return names[0] if names else None

    def all_block_names(self) -> list[str]:
        names = self._listdir(os.path.join(self.root, "class/block"))
        return names or self._listdir(os.path.join(self.root, "block"))

    def nvme_namespaces(self, controller: str) -> list[str]:
        """Namespace block devices under an NVMe controller (``nvme0``)."""
        ctrl = os.path.join(self.root, "class/nvme", controller)
        # nvme0c0n1-style entries are hidden multipath paths, not block devices users name
        return [n for n in self._listdir(ctrl) if _NVME_NAMESPACE.match(n)]

    # -- attributes ------------------------------------------------------------
    def attr(self, name: str, rel: str) -> str | None:
        """Text of ``<block dir of name>/<rel>``, stripped; None if unreadable."""
        base = self.block_dir(name)
        return read_text(os.path.join(base, rel)) if base else None

    def has(self, name: str, rel: str) -> bool:
        base = self.block_dir(name)
        return bool(base) and os.path.exists(os.path.join(base, rel))

    def link_basename(self, name: str, rel: str) -> str | None:
        base = self.block_dir(name)
        return self._link_basename(os.path.join(base, rel)) if base else None

    def target_name(self, name: str, rel: str) -> str | None:
        """Basename of what ``<block dir>/<rel>`` resolves to (``device`` -> ``nvme0``)."""
        base = self.block_dir(name)
        path = os.path.join(base, rel) if base else None
        return os.path.basename(os.path.realpath(path)) if path and os.path.exists(path) else None

    def entries(self, name: str, rel: str) -> list[str]:
        base = self.block_dir(name)
        return self._listdir(os.path.join(base, rel)) if base else []

    def real_path(self, name: str) -> str | None:
        """The device's place in ``devices/`` (tells the bus and transport)."""
        base = self.block_dir(name)
        return os.path.realpath(base) if base else None

    def parent_of_partition(self, name: str) -> str | None:
        real = self.real_path(name)
        return os.path.basename(os.path.dirname(real)) if real else None

    def logical_block_size(self, name: str) -> int | None:
        """Bytes per logical block of disk or partition ``name`` (a
        partition has no queue/: its disk's), or None when unknown."""
        text = self.attr(name, "queue/logical_block_size")
        if text is None:
            parent = self.parent_of_partition(name)
            text = self.attr(parent, "queue/logical_block_size") if parent else None
        return int(text) if text and text.isdigit() else None

    def class_attr(self, cls: str, instance: str, attr: str) -> str | None:
        """``<root>/class/<cls>/<instance>/<attr>`` (fc_host, iscsi_session, ...)."""
        return read_text(os.path.join(self.root, "class", cls, instance, attr))

    def class_instances(self, cls: str) -> list[str]:
        return self._listdir(os.path.join(self.root, "class", cls))

    # -- helpers -------------------------------------------------------------
    @staticmethod
    def _listdir(path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    @staticmethod
    def _link_basename(path: str) -> str | None:
        # readlink, not realpath: recorded fixtures may hold dangling links
        # (e.g. ``subsystem -> ../../bus/scsi``) and the name is all we need.
        try:
            return os.path.basename(os.readlink(path).rstrip("/"))
        except OSError:
            return None


def read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(65536)
    except OSError as exc:
        if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
            log.debug("cannot read %s: %s", path, exc)
        return None
    return data.decode("utf-8", "replace").strip()


def logical_block_size(name: str, root: str = "/sys") -> int | None:
    """``Sysfs(root).logical_block_size(name)``."""
    return Sysfs(root).logical_block_size(name)
