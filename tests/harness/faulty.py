"""A loop device that returns real I/O errors on demand.

``FaultyDisk`` serves a disk image through ``tests/faultyfs`` (a FUSE program
that fails chosen byte ranges with EIO) and attaches a loop device to it. The
kernel then sees genuine failed block requests: the block layer, the page
cache and file systems print exactly what they print for a dying disk.

    with FaultyDisk(size=128 * MiB) as disk:
        disk.mkfs("ext4")
        disk.mount(path)
        disk.fail(0, 1 * MiB, "write")
        ...

Teardown heals the disk first (so unmount can flush), then unmounts, detaches
the loop device and unmounts FUSE, falling back to lazy unmounts so a failed
test never leaves a stuck mount behind.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("peripety.tests.faulty")

MiB = 1024 * 1024
FAULTYFS_DIR = Path(__file__).resolve().parent.parent / "faultyfs"
FAULTYFS_SOURCE = FAULTYFS_DIR / "faultyfs.c"
FAULTYFS_BINARY = FAULTYFS_DIR / "faultyfs"

# mkfs commands per file system: quiet, and forced because the image may
# hold an older file system from a previous run.
MKFS_COMMANDS = {
    "ext4": ["mkfs.ext4", "-F", "-q"],
    "xfs": ["mkfs.xfs", "-f", "-q"],
    "btrfs": ["mkfs.btrfs", "-f", "-q"],
}
OPS = ("read", "write", "rw")


class HarnessError(RuntimeError):
    """The faulty disk could not be built, started or torn down."""


def build_faultyfs() -> Path:
    """Compile faultyfs when the binary is missing or older than its source."""
    binary, source = FAULTYFS_BINARY, FAULTYFS_SOURCE
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "fuse3"], capture_output=True, text=True
    )
    if flags.returncode != 0:
        raise HarnessError(f"pkg-config fuse3 failed ({flags.stderr.strip()}): install libfuse3-dev")
    tmp = binary.with_suffix(".tmp")
    cmd = ["gcc", "-Wall", "-O2", "-o", str(tmp), str(source), *flags.stdout.split()]
    built = subprocess.run(cmd, capture_output=True, text=True)
    if built.returncode != 0:
        raise HarnessError(f"{source}: compile failed:\n{built.stderr}")
    # Rename so a concurrent test never runs a half-written binary.
    tmp.replace(binary)
    return binary


@dataclass(frozen=True)
class FaultRange:
    start: int
    length: int
    op: str


@dataclass(frozen=True)
class FaultCounters:
    """What faultyfs saw: requests served and requests it failed."""

    reads: int
    writes: int
    failed_reads: int
    failed_writes: int
    ranges: tuple[FaultRange, ...]

    @classmethod
    def parse(cls, text: str) -> "FaultCounters":
        numbers: dict[str, int] = {}
        ranges = []
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["fail"]:
                ranges.append(FaultRange(int(words[1]), int(words[2]), words[3]))
            elif len(words) == 2:
                numbers[words[0]] = int(words[1])
        return cls(ranges=tuple(ranges), **numbers)


@dataclass(frozen=True)
class SectorIO:
    """Outcome of one O_DIRECT request: ``error`` is 0 or an errno."""

    sector: int
    sectors: int
    error: int


def direct_io(
    device: str,
    first_sector: int,
    count: int,
    *,
    write: bool = False,
    sectors_per_request: int = 1,
    sector_size: int = 512,
) -> list[SectorIO]:
    """Read (or write zeros to) ``count`` sectors with O_DIRECT, one request
    per ``sectors_per_request``, and return each request's errno.

    O_DIRECT keeps the page cache out: every request is a block request the
    driver answers, and a failure is reported to this request only.
    """
    request_bytes = sectors_per_request * sector_size
    # An anonymous mmap is page aligned, which O_DIRECT needs.
    buf = mmap.mmap(-1, max(request_bytes, mmap.PAGESIZE))
    view = memoryview(buf)[:request_bytes]
    flags = (os.O_WRONLY if write else os.O_RDONLY) | os.O_DIRECT | os.O_CLOEXEC
    fd = os.open(device, flags)
    results = []
    try:
        for sector in range(first_sector, first_sector + count, sectors_per_request):
            offset = sector * sector_size
            try:
                if write:
                    os.pwritev(fd, [view], offset)
                else:
                    os.preadv(fd, [view], offset)
                error = 0
            except OSError as err:
                error = err.errno
            results.append(SectorIO(sector, sectors_per_request, error))
    finally:
        os.close(fd)
        view.release()
        buf.close()
    return results


def _mounted(path: Path) -> bool:
    # Field 5 of mountinfo is the mount point (octal-escaped; ours has no spaces).
    with open("/proc/self/mountinfo") as table:
        return any(line.split()[4] == str(path) for line in table)


def _wait_mounted(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Wait until ``path`` is a mount point; mountinfo signals POLLPRI on change."""
    deadline = time.monotonic() + timeout
    with open("/proc/self/mountinfo") as table:
        poller = select.poll()
        poller.register(table, select.POLLPRI | select.POLLERR)
        while not _mounted(path):
            if proc.poll() is not None:
                raise HarnessError(f"faultyfs exited with {proc.returncode} before mounting {path}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"faultyfs did not mount {path} within {timeout}s")
            # Wake on a mount table change, or every 100 ms to notice a dead child.
            poller.poll(min(left, 0.1) * 1000)
            table.seek(0)
            table.read()


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _settle_udev() -> None:
    # udevd probes a new loop device (blkid reads); let it finish so those
    # reads neither hit a failing range nor hold the device open at teardown.
    running = subprocess.run(["pgrep", "-x", "systemd-udevd"], capture_output=True)
    if running.returncode == 0:
        subprocess.run(["udevadm", "settle", "--timeout=30"], check=False)


class FaultyDisk:
    """A loop device over a FUSE-served image whose byte ranges can fail."""

    def __init__(
        self,
        size: int = 128 * MiB,
        *,
        loop_direct_io: bool = True,
        loopdev: str | None = None,
        sector_size: int = 512,
        workdir: str | os.PathLike | None = None,
    ) -> None:
        if size <= 0 or size % sector_size:
            raise ValueError(f"size {size} must be a positive multiple of {sector_size}")
        self.size = size
        self.loop_direct_io = loop_direct_io
        self._wanted_loopdev = loopdev
        self.sector_size = sector_size
        self._workdir_arg = workdir
        self.workdir: Path | None = None
        self.loopdev: str | None = None
        self.name: str | None = None
        self.dev_num: str | None = None
        self.mounts: list[Path] = []
        self._proc: subprocess.Popen | None = None
        self._fuse_mnt: Path | None = None

    # -- life cycle -------------------------------------------------------
    def __enter__(self) -> "FaultyDisk":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def image(self) -> Path:
        """The backing file on the real disk (write here to corrupt data)."""
        return self.workdir / "backing.img"

    @property
    def ctl(self) -> Path:
        return self._fuse_mnt / "ctl"

    def start(self) -> None:
        binary = build_faultyfs()
        self.workdir = Path(tempfile.mkdtemp(prefix="peripety-faulty-", dir=self._workdir_arg))
        self._fuse_mnt = self.workdir / "fuse"
        self._fuse_mnt.mkdir()
        stderr = open(self.workdir / "faultyfs.log", "wb")
        self._proc = subprocess.Popen(
            [
                str(binary),
                f"--backing={self.image}",
                f"--size={self.size}",
                "-f",
                "-o", "allow_other,fsname=faultyfs,subtype=faultyfs",
                str(self._fuse_mnt),
            ],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
        stderr.close()
        _wait_mounted(self._fuse_mnt, self._proc, timeout=20)
        cmd = ["losetup", "--show", f"--sector-size={self.sector_size}"]
        if self.loop_direct_io:
            cmd.append("--direct-io=on")
        self.loopdev = self._attach(cmd)
        self.name = os.path.basename(self.loopdev)
        self.dev_num = Path(f"/sys/block/{self.name}/dev").read_text().strip()
        _settle_udev()
        log.info("faulty disk %s (%s) over %s", self.loopdev, self.dev_num, self.image)

    def _attach(self, cmd: list[str]) -> str:
        backing = str(self._fuse_mnt / "disk")
        if self._wanted_loopdev is None:
            return _run([*cmd, "-f", backing]).stdout.strip()
        # A name just detached stays busy until udev's probe of the old
        # attachment closes it: settle and try again, a bounded number of times.
        for _ in range(50):
            _settle_udev()
            done = subprocess.run([*cmd, self._wanted_loopdev, backing], capture_output=True, text=True)
            if done.returncode == 0:
                return done.stdout.strip()
        raise HarnessError(f"cannot attach {backing} to {self._wanted_loopdev}: {done.stderr.strip()}")

    def close(self) -> None:
        """Tear everything down, step by step, even after a failed step."""
        problems = []
        if self._fuse_mnt is not None and self._proc is not None and self._proc.poll() is None:
            try:
                self.heal()
            except OSError as err:
                problems.append(f"heal: {err}")
        for mnt in reversed(self.mounts):
            problems += self._unmount(mnt)
        self.mounts.clear()
        if self.loopdev:
            done = subprocess.run(["losetup", "-d", self.loopdev], capture_output=True, text=True)
            if done.returncode != 0:
                problems.append(f"losetup -d {self.loopdev}: {done.stderr.strip()}")
            _settle_udev()
            self.loopdev = None
        if self._fuse_mnt is not None and _mounted(self._fuse_mnt):
            problems += self._unmount_fuse()
        if self._proc is not None:
            problems += self._stop_process()
        if self.workdir is not None and not (self._fuse_mnt and _mounted(self._fuse_mnt)):
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        for problem in problems:
            log.warning("faulty disk teardown: %s", problem)

    def _unmount(self, mnt: Path) -> list[str]:
        done = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
        if done.returncode == 0:
            return []
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        return [f"umount {mnt}: {done.stderr.strip()} (lazily unmounted)"]

    def _unmount_fuse(self) -> list[str]:
        done = subprocess.run(["fusermount3", "-u", str(self._fuse_mnt)], capture_output=True, text=True)
        if done.returncode == 0:
            return []
        # The loop device may still hold the file for a moment after
        # losetup -d; a lazy unmount lets faultyfs exit when it lets go.
        subprocess.run(["fusermount3", "-u", "-z", str(self._fuse_mnt)], capture_output=True)
        return [f"fusermount3 -u {self._fuse_mnt}: {done.stderr.strip()} (lazily unmounted)"]

    def _stop_process(self) -> list[str]:
        try:
            self._proc.wait(timeout=10)
            return []
        except subprocess.TimeoutExpired:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
            return ["faultyfs did not exit after unmount; terminated"]
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
            return ["faultyfs ignored SIGTERM; killed"]

    # -- faults -----------------------------------------------------------
    def _control(self, command: str) -> None:
        fd = os.open(self.ctl, os.O_WRONLY)
        try:
            os.write(fd, command.encode() + b"\n")
        finally:
            os.close(fd)

    def fail(self, start: int, length: int, op: str = "rw") -> None:
        """Make ``op`` (read, write, rw) requests touching bytes
        [start, start+length) of the disk fail with EIO."""
        if op not in OPS:
            raise ValueError(f"op {op!r}: expected one of {', '.join(OPS)}")
        self._control(f"fail {int(start)} {int(length)} {op}")

    def fail_sectors(self, first: int, count: int, op: str = "rw") -> None:
        self.fail(first * self.sector_size, count * self.sector_size, op)

    def heal(self) -> None:
        self._control("heal")

    def counters(self) -> FaultCounters:
        return FaultCounters.parse(self.ctl.read_text())

    # -- file systems -----------------------------------------------------
    def mkfs(self, fstype: str, *extra: str) -> None:
        try:
            cmd = MKFS_COMMANDS[fstype]
        except KeyError:
            raise ValueError(f"no mkfs for {fstype!r}; known: {', '.join(MKFS_COMMANDS)}") from None
        _run([*cmd, *extra, self.loopdev])
        _settle_udev()

    def mount(self, path: str | os.PathLike, options: str | None = None) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        cmd = ["mount", self.loopdev, str(path)]
        if options:
            cmd[1:1] = ["-o", options]
        _run(cmd)
        self.mounts.append(path)
        return path

    def umount(self, path: str | os.PathLike) -> None:
        path = Path(path)
        _run(["umount", str(path)])
        self.mounts.remove(path)

    def read_sectors(self, first: int, count: int, **kw) -> list[SectorIO]:
        return direct_io(self.loopdev, first, count, sector_size=self.sector_size, **kw)

    def write_sectors(self, first: int, count: int, **kw) -> list[SectorIO]:
        return direct_io(self.loopdev, first, count, write=True, sector_size=self.sector_size, **kw)


def ext4_journal_extent(device: str) -> tuple[int, int]:
    """Byte (start, length) of the ext4 journal (inode 8) on ``device``."""
    header = subprocess.run(["dumpe2fs", "-h", device], capture_output=True, text=True).stdout
    block_size = int(re.search(r"^Block size:\s+(\d+)", header, re.M).group(1))
    stat = subprocess.run(["debugfs", "-R", "stat <8>", device], capture_output=True, text=True).stdout
    first, last = 10**12, 0
    for a, b in re.findall(r"\(\d+(?:-\d+)?\):(\d+)(?:-(\d+))?", stat):
        first, last = min(first, int(a)), max(last, int(b or a))
    return first * block_size, (last - first + 1) * block_size
