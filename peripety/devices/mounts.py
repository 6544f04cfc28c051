"""Mount points from ``/proc/self/mountinfo``, matched by ``major:minor``.

mountinfo's third field is the device number the filesystem sits on, so a
device is found whatever ``/dev`` path (or symlink) was used to mount it.
btrfs (and other multi-device filesystems) report an anonymous ``0:N``
number instead; for those the source path is stat'ed (a ``/dev`` inode, no
disk I/O) to learn the block device.
"""

from __future__ import annotations

import logging
import os
import select
import stat
from dataclasses import dataclass

log = logging.getLogger("peripety.devices.mounts")


@dataclass(frozen=True)
class Mount:
    dev_num: str
    mount_point: str
    fstype: str
    source: str

    def block_dev_num(self) -> str | None:
        """The block device under this mount, seeing through ``0:N``."""
        if not self.dev_num.startswith("0:"):
            return self.dev_num
        if not self.source.startswith("/dev/"):
            return None
        try:
            st = os.stat(self.source)
        except OSError:
            return None
        if not stat.S_ISBLK(st.st_mode):
            return None
        return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts(path: str = "/proc/self/mountinfo") -> list[Mount]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        log.warning("cannot read %s, mount points unknown: %s", path, exc)
        return []
    mounts = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(fields[2], _unescape(fields[4]), tail[0], _unescape(tail[1])))
    return mounts


def mount_point_of(dev_num: str, mounts: list[Mount]) -> str | None:
    """First mount point (in mount order) of the filesystem on ``dev_num``."""
    for m in mounts:
        if m.dev_num == dev_num:
            return m.mount_point
    for m in mounts:
        if m.dev_num.startswith("0:") and m.block_dev_num() == dev_num:
            return m.mount_point
    return None


def dev_num_mounted_at(path: str, mounts: list[Mount]) -> str | None:
    """Block device of the filesystem mounted exactly at ``path`` (last mount wins,
    as it is the one visible there)."""
    want = os.path.realpath(path)
    for m in reversed(mounts):
        if m.mount_point == want:
            return m.block_dev_num()
    return None


def is_mount_point(path: str, mounts: list[Mount]) -> bool:
    want = os.path.realpath(path)
    return any(m.mount_point == want for m in mounts)


class MountTable:
    """The mount table, re-read only when it changed.

    The kernel flags ``/proc/self/mountinfo`` with POLLPRI on every mount or
    unmount, so asking "did it change?" is one poll(2) with no timeout
    instead of parsing the table for every event.
    """

    def __init__(self, path: str = "/proc/self/mountinfo"):
        self.path = path
        self._mounts: list[Mount] | None = None
        self.generation = 0
        """Counts re-reads: what was derived from the table at one
        generation holds until it changes."""
        self._poll = None
        try:
            self._file = open(path, "rb")
            self._poll = select.poll()
            self._poll.register(self._file, select.POLLPRI | select.POLLERR)
        except OSError as exc:
            log.debug("%s cannot be watched (%s): re-reading it every time", path, exc)
            self._file = None

    def current(self) -> list[Mount]:
        if self._mounts is None or self._poll is None or self._poll.poll(0):
            if self._file is not None:
                # reading to EOF re-arms the change notification
                self._file.seek(0)
                self._file.read()
            self._mounts = read_mounts(self.path)
            self.generation += 1
        return self._mounts

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._poll = None, None
