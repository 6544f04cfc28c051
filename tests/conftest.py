"""Shared fixtures: real system services, a faulty disk, tracefs.

Nothing here is skipped for root: on the test machine these run for real.
Tests that use ``faulty_disk`` or ``tracefs`` must be marked ``root``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import services
from tests.harness.faulty import FaultyDisk
from tests.harness.kmsg_tail import KmsgTail
from tests.harness.partitioned import partitioned_loop

TRACEFS = Path("/sys/kernel/tracing")


@pytest.fixture(scope="session")
def journald():
    """A running systemd-journald (started once, left running for others)."""
    services.ensure_journald()


@pytest.fixture(scope="session")
def udevd():
    """A running systemd-udevd with a filled udev database for block devices."""
    services.ensure_udevd()


@pytest.fixture
def faulty_disk_factory(tmp_path):
    """Make ``FaultyDisk``s; each is torn down at the end of the test.

        disk = faulty_disk_factory(size=320 * MiB)   # xfs needs >= 300 MiB
    """
    disks: list[FaultyDisk] = []

    def make(**kwargs) -> FaultyDisk:
        kwargs.setdefault("workdir", tmp_path)
        disk = FaultyDisk(**kwargs)
        disks.append(disk)  # before start(): close() also cleans a half-started disk
        disk.__enter__()
        return disk

    yield make
    for disk in reversed(disks):
        disk.close()


@pytest.fixture
def faulty_disk(faulty_disk_factory) -> FaultyDisk:
    """One 128 MiB faulty loop device (no file system), healed at start."""
    return faulty_disk_factory()


@pytest.fixture
def kmsg_tail():
    """Kernel log records written from now on (raw /dev/kmsg records)."""
    with KmsgTail() as tail:
        yield tail


@pytest.fixture(scope="session")
def tracefs() -> Path:
    """/sys/kernel/tracing with tracefs mounted on it."""
    if not os.path.exists(TRACEFS / "events"):
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
    return TRACEFS


@pytest.fixture
def loop_disk(tmp_path):
    """A loop device on a GPT image: ext4 on p1, xfs on p2, both mounted."""
    with partitioned_loop(tmp_path) as disk:
        yield disk
