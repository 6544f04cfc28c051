"""Live device state for ``prpt top``, read from procfs and sysfs only.

Nothing here opens a block device: every figure comes from files the kernel
keeps in memory, so a hung or failing disk cannot hang ``top``.

What is read, and why it means what top shows:

- ``/proc/diskstats``: per-device completed reads/writes, sectors and the
  milliseconds spent on them. Two samples give IOPS, throughput, the mean
  latency per completed I/O (``await`` as iostat computes it) and the busy
  share of the interval (``io_ticks``).
- ``/sys/block/<dev>/device/ioerr_cnt`` (SCSI disks): the count of commands
  that completed with an error; top shows its growth between samples.
- ``/sys/block/mdN/md/``: ``level``, ``raid_disks``, ``degraded`` (missing
  members), ``array_state``, ``sync_action`` (idle, resync, recover, check,
  repair, reshape) and ``sync_completed`` ("done / total" sectors) for the
  percent.
- multipath maps: a ``dm-N`` whose ``dm/uuid`` starts with ``mpath-``; its
  paths are ``slaves/*`` and a path counts as up when its SCSI
  ``device/state`` is ``running``. That is the SCSI midlayer's view (offline,
  blocked, transport-offline paths are down); a path multipathd failed for a
  checker reason while the device stays ``running`` is only visible in its
  events (DM_MPATH_PATH_FAILED), as no sysfs file carries dm-mpath's own
  path state.
- filesystems: ``/proc/self/mountinfo``: ``ro`` in the mount or super
  options, or ext4's ``emergency_ro`` (errors=remount-ro on Linux 6.15+,
  which no longer sets the mount read-only), means read-only now; ext4's
  ``shutdown`` option means shut down. On 6.6-6.14 an ext4 error remount
  shows in neither, so the model also counts an FS_REMOUNT_READ_ONLY event
  newer than the device's last mount;
  ``/sys/fs/ext4/<dev>/errors_count`` where ext4 has recorded errors. XFS has
  no sysfs flag for a shut-down filesystem; top shows "shutdown" from an
  FS_SHUTDOWN event newer than the device's last FS_MOUNTED event instead.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

SECTOR_BYTES = 512


# -- /proc/diskstats ---------------------------------------------------------------


@dataclass(frozen=True)
class DiskCounters:
    reads: int
    read_sectors: int
    read_ms: int
    writes: int
    write_sectors: int
    write_ms: int
    in_flight: int
    io_ticks_ms: int


def read_diskstats(proc_root: str | os.PathLike = "/proc") -> dict[str, DiskCounters]:
    """Counters per kernel device name; an unreadable file gives {}."""
    try:
        text = (Path(proc_root) / "diskstats").read_text()
    except OSError:
        return {}
    stats: dict[str, DiskCounters] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 14:
            continue
        try:
            n = [int(v) for v in fields[3:14]]
        except ValueError:
            continue
        stats[fields[2]] = DiskCounters(n[0], n[2], n[3], n[4], n[6], n[7], n[8], n[9])
    return stats


@dataclass(frozen=True)
class IoRate:
    read_iops: float
    write_iops: float
    read_bps: float
    write_bps: float
    await_ms: float | None
    """Mean milliseconds per completed I/O in the interval; None when none completed."""
    util: float
    """Share of the interval with I/O in flight, 0..1."""

    @property
    def iops(self) -> float:
        return self.read_iops + self.write_iops

    @property
    def bps(self) -> float:
        return self.read_bps + self.write_bps


def io_rate(before: DiskCounters, after: DiskCounters, seconds: float) -> IoRate:
    seconds = max(seconds, 1e-3)
    reads = max(0, after.reads - before.reads)
    writes = max(0, after.writes - before.writes)
    ms = max(0, after.read_ms - before.read_ms) + max(0, after.write_ms - before.write_ms)
    done = reads + writes
    return IoRate(
        read_iops=reads / seconds,
        write_iops=writes / seconds,
        read_bps=max(0, after.read_sectors - before.read_sectors) * SECTOR_BYTES / seconds,
        write_bps=max(0, after.write_sectors - before.write_sectors) * SECTOR_BYTES / seconds,
        await_ms=ms / done if done else None,
        util=min(1.0, max(0, after.io_ticks_ms - before.io_ticks_ms) / (seconds * 1000)),
    )


# -- sysfs ------------------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def read_ioerr_cnt(name: str, sysfs_root: str | os.PathLike = "/sys") -> int | None:
    """The SCSI error count of ``name`` (printed in hex), None when not SCSI."""
    text = _read(Path(sysfs_root) / "block" / name / "device" / "ioerr_cnt")
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


@dataclass(frozen=True)
class MdState:
    level: str
    raid_disks: int | None
    degraded: int
    array_state: str
    sync_action: str
    sync_percent: float | None
    """Progress of the running resync/recovery/check; None when idle."""

    def summary(self) -> str:
        parts = []
        if self.degraded:
            total = f"/{self.raid_disks}" if self.raid_disks else ""
            parts.append(f"degraded {self.degraded}{total}")
        if self.sync_action not in ("", "idle", "frozen"):
            percent = f" {self.sync_percent:.0f}%" if self.sync_percent is not None else ""
            parts.append(f"{self.sync_action}{percent}")
        if self.array_state and self.array_state not in ("clean", "active", "active-idle", "write-pending"):
            parts.append(self.array_state)
        return " ".join(parts) or self.level


def read_md(name: str, sysfs_root: str | os.PathLike = "/sys") -> MdState | None:
    md = Path(sysfs_root) / "block" / name / "md"
    level = _read(md / "level")
    if level is None:
        return None
    disks = _read(md / "raid_disks")
    degraded = _read(md / "degraded")
    completed = _read(md / "sync_completed") or "none"
    percent = None
    if "/" in completed:
        done, _, total = completed.partition("/")
        try:
            percent = 100.0 * int(done) / int(total) if int(total) else None
        except ValueError:
            percent = None
    return MdState(
        level=level,
        raid_disks=int(disks) if disks and disks.isdigit() else None,
        degraded=int(degraded) if degraded and degraded.isdigit() else 0,
        array_state=_read(md / "array_state") or "",
        sync_action=_read(md / "sync_action") or "",
        sync_percent=percent,
    )


@dataclass(frozen=True)
class MultipathState:
    map_name: str
    paths: dict[str, str]
    """path kernel name -> its SCSI device state (running, offline, ...)."""

    @property
    def up(self) -> int:
        return sum(1 for state in self.paths.values() if state == "running")

    def summary(self) -> str:
        return f"paths {self.up}/{len(self.paths)}"


def read_multipath(name: str, sysfs_root: str | os.PathLike = "/sys") -> MultipathState | None:
    block = Path(sysfs_root) / "block"
    uuid = _read(block / name / "dm" / "uuid")
    if not uuid or not uuid.startswith("mpath-"):
        return None
    try:
        slaves = sorted(os.listdir(block / name / "slaves"))
    except OSError:
        slaves = []
    paths = {path: _read(block / path / "device" / "state") or "unknown" for path in slaves}
    return MultipathState(_read(block / name / "dm" / "name") or name, paths)


# -- filesystems ------------------------------------------------------------------


@dataclass(frozen=True)
class MountState:
    dev_num: str
    mount_point: str
    fs_type: str
    read_only: bool
    source: str
    shut_down: bool = False


def _unescape(field_text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field_text.encode().decode("unicode_escape") if "\\" in field_text else field_text


def read_mounts(mountinfo: str | os.PathLike = "/proc/self/mountinfo") -> dict[str, MountState]:
    """The first mount of each major:minor (bind mounts repeat it)."""
    try:
        text = Path(mountinfo).read_text()
    except OSError:
        return {}
    mounts: dict[str, MountState] = {}
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 6 or len(rest) < 3:
            continue
        options = set(fields[5].split(",")) | set(rest[2].split(","))
        dev_num = fields[2]
        if dev_num not in mounts:
            read_only = bool(options & {"ro", "emergency_ro"})
            mounts[dev_num] = MountState(dev_num, _unescape(fields[4]), rest[0], read_only, _unescape(rest[1]),
                                         shut_down="shutdown" in options)
    return mounts


def read_ext4_errors(name: str, sysfs_root: str | os.PathLike = "/sys") -> int | None:
    text = _read(Path(sysfs_root) / "fs" / "ext4" / name / "errors_count")
    return int(text) if text and text.isdigit() else None


def read_dev_num(name: str, sysfs_root: str | os.PathLike = "/sys") -> str | None:
    return _read(Path(sysfs_root) / "block" / name / "dev") or _read(Path(sysfs_root) / "class" / "block" / name / "dev")


# -- one device's state -----------------------------------------------------------


@dataclass
class DeviceState:
    name: str
    io: IoRate | None = None
    ioerr_delta: int | None = None
    ioerr_cnt: int | None = None
    md: MdState | None = None
    multipath: MultipathState | None = None
    mount: MountState | None = None
    ext4_errors: int | None = None

    def summary(self) -> str:
        """The short state word(s) top shows: empty when nothing is wrong or notable."""
        parts = []
        if self.md is not None:
            parts.append(self.md.summary())
        if self.multipath is not None:
            parts.append(self.multipath.summary())
        if self.mount is not None and self.mount.read_only:
            parts.append("ro")
        if self.mount is not None and self.mount.shut_down:
            parts.append("shutdown")
        if self.ext4_errors:
            parts.append(f"fserr {self.ext4_errors}")
        return " ".join(parts)

    @property
    def alarming(self) -> bool:
        """Something an admin must look at now (colours the state red)."""
        return bool(
            (self.md is not None and (self.md.degraded or self.md.array_state in ("inactive", "readonly", "broken")))
            or (self.multipath is not None and self.multipath.up < len(self.multipath.paths))
            or (self.mount is not None and (self.mount.read_only or self.mount.shut_down))
            or self.ext4_errors
            or self.ioerr_delta
        )

    @property
    def notable(self) -> bool:
        """Worth a row even without events: I/O, an array, a map, a problem."""
        return bool(self.alarming or self.md is not None or self.multipath is not None
                    or (self.io is not None and self.io.iops > 0))

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.io is not None:
            data["io"]["iops"] = self.io.iops
        if self.multipath is not None:
            data["multipath"]["up"] = self.multipath.up
            data["multipath"]["total"] = len(self.multipath.paths)
        data["summary"] = self.summary()
        return data


@dataclass
class StateSampler:
    """Samples every block device's state; rates come from the previous sample.

    ``sysfs_root``/``proc_root``/``mountinfo`` point at recorded trees in tests.
    """

    sysfs_root: str = "/sys"
    proc_root: str = "/proc"
    mountinfo: str | None = None
    _last: dict[str, DiskCounters] = field(default_factory=dict)
    _last_time: float | None = None
    _last_ioerr: dict[str, int] = field(default_factory=dict)

    def sample(self, monotonic: float) -> dict[str, DeviceState]:
        counters = read_diskstats(self.proc_root)
        mounts = read_mounts(self.mountinfo or Path(self.proc_root) / "self" / "mountinfo")
        names = set(counters) | set(self._block_names())
        seconds = monotonic - self._last_time if self._last_time is not None else None
        states: dict[str, DeviceState] = {}
        for name in sorted(names):
            state = DeviceState(name)
            before, after = self._last.get(name), counters.get(name)
            if seconds and before is not None and after is not None:
                state.io = io_rate(before, after, seconds)
            state.ioerr_cnt = read_ioerr_cnt(name, self.sysfs_root)
            if state.ioerr_cnt is not None and name in self._last_ioerr:
                state.ioerr_delta = max(0, state.ioerr_cnt - self._last_ioerr[name])
            if name.startswith("md"):
                state.md = read_md(name, self.sysfs_root)
            elif name.startswith("dm-"):
                state.multipath = read_multipath(name, self.sysfs_root)
            dev_num = read_dev_num(name, self.sysfs_root)
            if dev_num and dev_num in mounts:
                state.mount = mounts[dev_num]
                if mounts[dev_num].fs_type == "ext4":
                    state.ext4_errors = read_ext4_errors(name, self.sysfs_root)
            states[name] = state
        self._last, self._last_time = counters, monotonic
        self._last_ioerr = {n: s.ioerr_cnt for n, s in states.items() if s.ioerr_cnt is not None}
        return states

    def _block_names(self) -> list[str]:
        try:
            return os.listdir(Path(self.sysfs_root) / "block")
        except OSError:
            return []
