"""A partitioned loop device with mounted ext4 and xfs, for device-identity
tests (``loop_disk`` fixture in conftest)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness import services

MiB = 1 << 20


def run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class PartitionedLoop:
    image: Path
    disk: str  # /dev/loopN
    ext4_part: str  # /dev/loopNp1
    xfs_part: str  # /dev/loopNp2
    ext4_mount: Path
    xfs_mount: Path

    @property
    def name(self) -> str:
        return os.path.basename(self.disk)


@contextlib.contextmanager
def partitioned_loop(workdir: Path):
    """A loop device on a GPT image with ext4 (p1) and xfs (p2), both mounted.

    The test kernel has no partition-table parsers, so partitions are added
    with BLKPG (`partx --add`) after util-linux read the table; udev is then
    asked to process them (`trigger --settle` waits for that, no sleeping)."""
    services.ensure_udevd()
    image = workdir / "disk.img"
    with open(image, "wb") as f:
        f.truncate(400 * MiB)  # xfs needs >= 300 MiB
    subprocess.run(["sfdisk", "-q", str(image)], input="label: gpt\n,64M\n,\n", text=True, check=True)
    disk = run("losetup", "-f", "--show", "-P", str(image))
    mounts: list[Path] = []
    try:
        run("partx", "--add", disk)
        p1, p2 = f"{disk}p1", f"{disk}p2"
        # `udevadm settle` alone can return before udevd has even received
        # the partitions' add uevents (then mkfs raced udev's probing, the
        # flaky mkfs seen in earlier runs): wait for both to be initialized.
        run("udevadm", "wait", "--settle", "--timeout=30", p1, p2)
        run("mkfs.ext4", "-q", p1)
        run("mkfs.xfs", "-q", p2)
        run("udevadm", "trigger", "--action=change", "--settle", disk, p1, p2)
        for part, label in ((p1, "ext4"), (p2, "xfs")):
            target = workdir / f"mnt-{label}"
            target.mkdir()
            run("mount", part, str(target))
            mounts.append(target)
        yield PartitionedLoop(image, disk, p1, p2, mounts[0], mounts[1])
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", str(target)], check=False)
        subprocess.run(["losetup", "-d", disk], check=False)


def fs_uuid(dev: str) -> str:
    # blkid from the test (not peripety) gives the expected value independently
    return run("blkid", "-s", "UUID", "-o", "value", dev)
