"""Failure counts kept by bpf/scsi_trace.c in mmapped arrays, read each tick.

The program counts every failure in the kernel, whatever the ring buffer
does: per (unit, kind, status, op) a count, first/last time and the lowest
and highest sector, and the failed sectors as bitmaps of 4096-sector
buckets. ``MapReader.collect()`` turns one retired epoch into plain
``Aggregate`` dataclasses; the samples in the ring buffer are only the
human-readable detail of the first few failures per unit and second.

No bpf() syscall
----------------
While this process is inside a bpf() map syscall on a CPU, the kernel runs
no tracepoint program there (bpf_prog_active): a failure completing on that
CPU meanwhile is not counted (newer kernels count the skip in the program's
``recursion_misses``, 6.1 not at all). So the counts live in
``BPF_F_MMAPABLE`` arrays mapped into this process (``_Mapped``): reading,
learning the keys and retiring an epoch are loads and stores in memory. In
steady state the daemon makes no bpf() syscall; the only ones are those of
loading the program (bcc) and of closing it.

Read without losing or double counting
--------------------------------------
``ctl.epoch`` numbers the epochs; probes write generation ``epoch & 1``.
Each ``collect()``:

1. reads the epoch retired by the previous ``collect()``, at least
   ``grace`` seconds ago: a probe reads the epoch once, then runs to its end
   with preemption disabled (tracepoint programs do), for microseconds, so
   an epoch retired that long ago has no writer left and its values are
   final. Only slots and values tagged with that epoch are read;
2. zeroes the slot claim counters of the epoch after next (they were last
   used four epochs ago; a tick passes before they are used again);
3. increments ``ctl.epoch``, retiring the live epoch.

User space never clears a count: a probe resets a value tagged with an
older epoch before counting in it, and zeroes a sector bucket it claims
before any other CPU can find it. The only stores of this process are
``ctl.epoch`` and claim counters no probe uses until a tick later, so none
can race an increment. A failure is read exactly once, one to two ticks
after it happened. The one
assumption is that no probe stays inside its program for ``grace``
seconds; a hypervisor that stalls a vCPU that long mid-probe is the only
way to break it.

Failures no probe saw
---------------------
A hit for which the kernel ran no program is in no map. With
``kernel_counts`` (perfcount.KernelCounts: a counting perf event per failure
kind, read with read(2)), each ``collect()`` reads the kernel's own count
between draining and retiring, and ``perfcount.Shortfall`` compares it with
the maps a collect later, when they are complete up to that reading:
``Aggregates.unprobed`` is the difference per kind, never more than the
failures that really reached no probe.

Bounds (``loader.Tuning``): ``agg_entries`` slots per epoch (beyond:
counted per kind in ``Aggregates.untracked``, still exact in total);
``sector_entries`` buckets per epoch (beyond, or for a request spanning
more than two buckets: ``Aggregate.unmapped`` requests whose sectors are
known only to lie in ``sector_min..sector_max``).
"""

from __future__ import annotations

import ctypes as ct
import logging
import mmap
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from . import scsi as codes
from .decode import dev_num_of
from .kinds import BY_NUMBER, CPU_COUNTERS, KIND_STRIDE, KINDS, LAYOUTS, KindTableError
from .perfcount import Shortfall

log = logging.getLogger("peripety.tracepoints.aggregates")

NO_SECTOR = (1 << 64) - 1

# The arrays' C structs, from kinds.toml (sizes checked by _Static_assert at compile).
AggKey = LAYOUTS["agg_key"].struct
AggValue = LAYOUTS["agg_val"].struct
Slot = LAYOUTS["slot"].struct
Bucket = LAYOUTS["bucket"].struct
Ctl = LAYOUTS["ctl"].struct

EPOCH_COUNTERS = 4
"""ctl.slots_claimed / buckets_claimed: one counter per epoch % 4."""

_KEY_FIELDS = tuple(name for name, _ in LAYOUTS["agg_key"].fields)


def key_tuple(key) -> tuple:
    """A hashable copy of a key (ctypes structures compare by identity)."""
    return tuple(getattr(key, name) for name in _KEY_FIELDS)


# -- the aggregate ----------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """Failures of one unit with one status and op, over one map generation."""

    kind: str
    """block_rq_error, scsi_cmd_done, nvme_complete_rq, ... (as samples)."""
    count: int
    first_usec: int
    """CLOCK_MONOTONIC microseconds of the first and last failure."""
    last_usec: int
    dev_num: str = ""
    """``major:minor`` (block, ext4, xfs); empty for SCSI/NVMe."""
    kdev: str = ""
    """The kernel's name of the unit: dev_num, ``h:c:t:l``, ``nvme0n1``."""
    op: str = ""
    """READ, WRITE, DISCARD... (block); the SCSI opcode's name."""
    status: int = 0
    """Raw: -errno (block, xfs), result or rtn (SCSI), status (NVMe)."""
    error: str = ""
    """The status in words: ``EIO``; ``DID_TIME_OUT``; NVMe status name."""
    errno: int | None = None
    blk_status: str = ""
    """The kernel's text before ``error, dev`` (``I/O``, ``critical medium``)."""
    line: int | None = None
    """ext4_error: the reporting line."""
    sectors: tuple[tuple[int, int], ...] = ()
    """Every failed 512-byte sector, as inclusive (first, last) ranges."""
    sector_min: int | None = None
    sector_max: int | None = None
    """Lowest and highest failed sector (inclusive), also of unmapped ones."""
    unmapped: int = 0
    """Requests whose sectors are not in ``sectors`` (sector map full)."""

    @property
    def key(self) -> tuple:
        return (self.kind, self.kdev, self.op, self.status, self.line)

    def sectors_text(self) -> str:
        """``"2048-2055,4096"``: the ``extension.sectors`` form."""
        return ranges_text(self.sectors)


@dataclass
class Aggregates:
    """What one ``collect()`` read: the failures since the last one."""

    items: list[Aggregate] = field(default_factory=list)
    untracked: dict[str, int] = field(default_factory=dict)
    """Failures per kind counted without a unit (every slot of their epoch
    was taken)."""
    lost: dict[str, int] = field(default_factory=dict)
    """Samples the ring buffer had no room for, per kind, since last time
    (their failures are in ``items``)."""
    sampled_out: dict[str, int] = field(default_factory=dict)
    """Samples not sent because the unit's budget was spent (by design)."""
    missed: int = 0
    """Probe runs the kernel skipped since last time (``recursion_misses``:
    another BPF program was running on that CPU when the tracepoint fired):
    failures neither counted nor sampled. Normally 0."""
    unprobed: dict[str, int] = field(default_factory=dict)
    """Failures per kind that the kernel's own count (a counting perf event,
    perfcount.py) saw and no probe counted: the kernel ran no program for
    them and did not count that as a miss, so their device is unknown.
    Disjoint from ``missed`` (a recursion-skipped hit is dropped for perf
    too). Normally empty."""

    def total(self, kind: str | None = None) -> int:
        items = sum(a.count for a in self.items if kind is None or a.kind == kind)
        return items + sum(n for k, n in self.untracked.items() if kind is None or k == kind)

    def __bool__(self) -> bool:
        return bool(self.items or any(self.untracked.values()) or any(self.lost.values())
                    or any(self.sampled_out.values()) or self.missed or any(self.unprobed.values()))


# -- decoding ---------------------------------------------------------------------


def ranges_text(ranges: Iterable[tuple[int, int]]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def bitmap_ranges(bucket: int, words: Sequence[int], bucket_sectors: int) -> list[tuple[int, int]]:
    """Inclusive sector ranges of the set bits of one bucket's bitmap."""
    out: list[tuple[int, int]] = []
    base = bucket * bucket_sectors
    bits = int.from_bytes(b"".join(int(w).to_bytes(8, "little") for w in words), "little")
    pos = 0
    while bits:
        skip = (bits & -bits).bit_length() - 1  # zeros before the next run
        bits >>= skip
        pos += skip
        run = (~bits & (bits + 1)).bit_length() - 1  # ones in this run
        out.append((base + pos, base + pos + run - 1))
        bits >>= run
        pos += run
    return out


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, with touching or overlapping ranges joined (bucket seams)."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def _op_letters(op: int) -> str:
    return bytes(b for b in op.to_bytes(4, "little") if b).decode("ascii", "replace")


# A map key -> its unit, op and status in words, per kinds.toml ``describe``.

def _errno_words(status: int) -> dict:
    err = abs(status)
    return {"errno": err, "error": codes.errno_name(err), "blk_status": codes.blk_status(err)[1]}


def _describe_block(key) -> dict:
    dev_num = dev_num_of(key.dev)
    return {"dev_num": dev_num, "kdev": dev_num, "status": key.status, "op": codes.rwbs_op(_op_letters(key.op)),
            **_errno_words(key.status)}


def _describe_xfs(key) -> dict:
    dev_num = dev_num_of(key.dev)
    return {"dev_num": dev_num, "kdev": dev_num, "status": key.status, **_errno_words(key.status)}


def _describe_ext4(key) -> dict:
    """ext4_error's key carries the reporting line in ``op``."""
    dev_num = dev_num_of(key.dev)
    return {"dev_num": dev_num, "kdev": dev_num, "status": key.status, "line": key.op}


def _describe_nvme(key) -> dict:
    disk = key.disk.decode("ascii", "replace")
    return {"kdev": disk or f"nvme{key.host_no}", "status": key.status,
            "error": codes.decode_nvme_status(key.status & 0xFFFF).status_name}


def _describe_scsi_host(key) -> dict:
    return {"kdev": f"host{key.host_no}"}


def _scsi_command(key, error: str) -> dict:
    return {"kdev": f"{key.host_no}:{key.channel}:{key.id}:{key.lun}", "status": key.status, "error": error,
            "op": codes.decode_cdb(b"", key.op).opcode_name}


def _describe_scsi_rtn(key) -> dict:
    """scsi_dispatch_cmd_error: the status is the queuecommand return."""
    return _scsi_command(key, codes.mlqueue_name(key.status))


def _describe_scsi_result(key) -> dict:
    res = codes.decode_result(key.status)
    return _scsi_command(key, res.host_byte_name or res.driver_byte_name or res.sam_status_name
                         or f"result 0x{res.result:x}")


DESCRIBERS = {
    "block": _describe_block, "xfs": _describe_xfs, "ext4": _describe_ext4, "nvme": _describe_nvme,
    "scsi_host": _describe_scsi_host, "scsi_rtn": _describe_scsi_rtn, "scsi_result": _describe_scsi_result,
}
"""kinds.toml ``describe`` -> function(map key) -> Aggregate fields."""

for _kind in KINDS.values():
    if _kind.describe not in DESCRIBERS:
        raise KindTableError(f"kind {_kind.name}: no describe function {_kind.describe!r} in aggregates.py")


def aggregate_from_maps(key: AggKey, per_cpu: Sequence[AggValue],
                        buckets: Mapping[int, Sequence[int]] = {}, bucket_sectors: int = 4096) -> Aggregate | None:
    """One key's per-CPU values and sector bitmaps -> ``Aggregate``; None
    when no CPU counted anything (a key created but never incremented
    cannot happen, but a zero value reads as nothing)."""
    used = [v for v in per_cpu if v.count]
    if not used:
        return None
    row = BY_NUMBER.get(key.kind)
    lows = [v.min_sector for v in used if v.min_sector != NO_SECTOR]
    highs = [v.max_sector_end for v in used if v.max_sector_end]
    ranges = [r for bucket, words in buckets.items() for r in bitmap_ranges(bucket, words, bucket_sectors)]
    return Aggregate(
        kind=row.name if row else f"kind {key.kind}",
        count=sum(v.count for v in used),
        first_usec=min(v.first_ns for v in used) // 1000,
        last_usec=max(v.last_ns for v in used) // 1000,
        sectors=merge_ranges(ranges),
        sector_min=min(lows) if lows else None,
        sector_max=max(highs) - 1 if highs else None,
        unmapped=sum(v.unmapped for v in used),
        **(DESCRIBERS[row.describe](key) if row else {}),
    )


# -- reading the live arrays -------------------------------------------------------


class _Mapped:
    """One BPF_F_MMAPABLE array of the program, mapped into this process.

    The kernel lays the values out back to back, each rounded up to 8 bytes
    (the array's elem_size), from offset 0 of the map's fd; a mapping may
    cover up to the array's size rounded up to whole pages. ``items`` views
    it as ``entries * stride / sizeof(element)`` elements of ``element``:
    the struct itself, or u64 words."""

    def __init__(self, table, element):
        self.name = getattr(table, "_name", "?")
        self.entries = int(table.max_entries)
        self.stride = (ct.sizeof(table.Leaf) + 7) // 8 * 8
        if self.stride % ct.sizeof(element):
            raise KindTableError(f"array {self.name}: {ct.sizeof(element)}-byte elements do not tile "
                                 f"its {self.stride}-byte values")
        length = -(-self.entries * self.stride // mmap.PAGESIZE) * mmap.PAGESIZE
        self._mm = mmap.mmap(table.map_fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.per_entry = self.stride // ct.sizeof(element)
        self.items = (element * (self.entries * self.per_entry)).from_buffer(self._mm)

    def close(self) -> None:
        del self.items  # the ctypes view pins the mapping
        self._mm.close()


class MapReader:
    """Read the program's counts epoch by epoch from mapped memory (see the
    module docstring); ``bpf`` is the loaded bcc ``BPF`` object. The bounds
    (slots, buckets, CPUs, bucket size) are read from the arrays themselves."""

    def __init__(self, bpf, *, grace: float = 0.2, clock: Callable[[], float] = time.monotonic,
                 kernel_counts: Callable[[], Mapping[str, int]] | None = None):
        self._bpf = bpf
        self.kernel_counts = kernel_counts
        """Per kind, the kernel's own count of the failures (perfcount.KernelCounts.read):
        read at each epoch flip and compared with the maps (``shortfall``)."""
        self.shortfall = Shortfall()
        self.grace = grace
        self.clock = clock
        self._ctl = _Mapped(bpf[b"ctl"], Ctl)
        self._keys = _Mapped(bpf[b"slot_keys"], Slot)
        self._vals = _Mapped(bpf[b"slot_vals"], AggValue)
        self._bucket_keys = _Mapped(bpf[b"bucket_keys"], Bucket)
        self._bits = _Mapped(bpf[b"bucket_bits"], ct.c_uint64)
        self._counters = _Mapped(bpf[b"cpu_counters"], ct.c_uint64)
        self.slots = self._keys.entries // 2
        self.buckets = self._bucket_keys.entries // 2
        self.cpus = self._vals.entries // (2 * self.slots)
        self.bucket_words = self._bits.per_entry
        self.bucket_sectors = self.bucket_words * 64
        if self._counters.entries != self.cpus * len(CPU_COUNTERS) * KIND_STRIDE:
            raise KindTableError(f"cpu_counters has {self._counters.entries} entries, not "
                                 f"{self.cpus} CPUs x {len(CPU_COUNTERS)} x {KIND_STRIDE}")
        self._epoch = int(self._ctl.items[0].epoch)
        self._retired_at: float | None = None  # None: no epoch retired yet
        self._seen: dict[str, dict[str, int]] = {name: {} for name in CPU_COUNTERS}
        self._missed_seen = 0

    def due(self, now: float | None = None) -> bool:
        """Whether ``collect()`` would read something now."""
        now = self.clock() if now is None else now
        return self._retired_at is None or now - self._retired_at >= self.grace

    def next_deadline(self) -> float:
        """When ``collect()`` is next due (in the past when it is due now)."""
        return 0.0 if self._retired_at is None else self._retired_at + self.grace

    def collect(self) -> Aggregates | None:
        """The failures of the epoch retired at least ``grace`` ago (then
        retire the live one); None when called too early."""
        now = self.clock()
        if not self.due(now):
            return None
        live = self._epoch
        out = self._drain(live - 1) if self._retired_at is not None else Aggregates()
        # The kernel's count now, before the flip: each hit in it was counted,
        # if a probe ran, in epoch `live` or earlier (perfcount.Shortfall).
        reading = self.kernel_counts() if self.kernel_counts is not None else None
        ctl = self._ctl.items[0]
        # Epoch live + 2 uses these next but one; last used by live - 2.
        ctl.slots_claimed[(live + 2) % EPOCH_COUNTERS] = 0
        ctl.buckets_claimed[(live + 2) % EPOCH_COUNTERS] = 0
        self._epoch = live + 1
        ctl.epoch = self._epoch
        self._retired_at = now
        out.untracked = self._delta("agg_full")
        out.lost = self._delta("lost")
        out.sampled_out = self._delta("sampled_out")
        missed = self.missed()
        out.missed, self._missed_seen = missed - self._missed_seen, missed
        if reading is not None:
            out.unprobed = self.shortfall.update({k: out.total(k) for k in reading}, reading)
        return out

    def missed(self) -> int:
        """Runs of the loaded programs the kernel skipped, in total, read
        from each program's fdinfo (``recursion_misses``, Linux 5.12+)."""
        return sum(stats.get("recursion_misses", 0) for stats in self.program_stats().values())

    def program_stats(self) -> dict[str, dict[str, int]]:
        """Per loaded program, the kernel's counters from its fdinfo:
        ``run_cnt`` (only counted while BPF run-time stats are enabled,
        e.g. by an open BPF_ENABLE_STATS fd) and ``recursion_misses``."""
        out = {}
        for name, fn in self._bpf.funcs.items():
            stats = {}
            try:
                with open(f"/proc/self/fdinfo/{fn.fd}") as info:
                    for line in info:
                        key, _, value = line.partition(":")
                        if key in ("run_cnt", "recursion_misses"):
                            stats[key] = int(value)
            except OSError:
                continue
            out[name.decode() if isinstance(name, bytes) else name] = stats
        return out

    def flush(self, wait: Callable[[float], None] = time.sleep) -> Aggregates:
        """Everything counted so far, both generations (at shutdown): waits
        out the grace period twice at most."""
        total = Aggregates()
        for _ in range(2):
            wait(max(0.0, self.next_deadline() - self.clock()))
            got = self.collect()
            total.items += got.items
            total.missed += got.missed
            for name in ("untracked", "lost", "sampled_out", "unprobed"):
                table = getattr(total, name)
                for k, n in getattr(got, name).items():
                    table[k] = table.get(k, 0) + n
        return total

    def totals(self, counter: str) -> dict[str, int]:
        """A per-CPU counter (``kinds.CPU_COUNTERS``) summed over the CPUs,
        per kind, since the program was loaded."""
        which = CPU_COUNTERS.index(counter)
        row, items = len(CPU_COUNTERS) * KIND_STRIDE, self._counters.items
        return {name: sum(items[cpu * row + which * KIND_STRIDE + kind.number] for cpu in range(self.cpus))
                for name, kind in KINDS.items()}

    def close(self) -> None:
        for mapped in (self._ctl, self._keys, self._vals, self._bucket_keys, self._bits, self._counters):
            mapped.close()

    def _drain(self, epoch: int) -> Aggregates:
        """The failures of ``epoch``, retired at least ``grace`` ago: final."""
        gen, n_slots, n_cpus = epoch & 1, self.slots, self.cpus
        ctl = self._ctl.items[0]
        keys, vals = self._keys.items, self._vals.items
        found: dict[tuple, tuple] = {}  # key tuple -> (key, [values of every CPU and slot])
        slot_key: dict[int, tuple] = {}
        for slot in range(min(int(ctl.slots_claimed[epoch % EPOCH_COUNTERS]), n_slots)):
            entry = keys[gen * n_slots + slot]
            if entry.epoch != epoch:  # claimed, then left unwritten: cannot happen
                continue
            kt = key_tuple(entry.key)
            slot_key[slot] = kt
            values = [AggValue.from_buffer_copy(v) for cpu in range(n_cpus)
                      if (v := vals[(gen * n_cpus + cpu) * n_slots + slot]).epoch == epoch and v.count]
            if values:  # none: a slot another CPU's insert beat (its key counts in the winner's)
                found.setdefault(kt, (AggKey.from_buffer_copy(entry.key), []))[1].extend(values)
        bits: dict[tuple, dict[int, list[int]]] = {}
        bkeys, words, n_buckets, width = self._bucket_keys.items, self._bits.items, self.buckets, self.bucket_words
        for b in range(min(int(ctl.buckets_claimed[epoch % EPOCH_COUNTERS]), n_buckets)):
            entry = bkeys[gen * n_buckets + b]
            if entry.epoch != epoch or entry.slot not in slot_key:
                continue
            at = (gen * n_buckets + b) * width
            mine = words[at:at + width]
            have = bits.setdefault(slot_key[entry.slot], {})
            old = have.get(entry.bucket)
            # a bucket the LRU index forgot within the epoch was claimed twice
            have[entry.bucket] = mine if old is None else [x | y for x, y in zip(old, mine)]
        items = []
        for kt, (key, values) in found.items():
            agg = aggregate_from_maps(key, values, bits.get(kt, {}), self.bucket_sectors)
            if agg is not None:
                items.append(agg)
        return Aggregates(items=items)

    def _delta(self, name: str) -> dict[str, int]:
        """Per-kind increase of a monotonic per-CPU counter since last read."""
        seen = self._seen[name]
        out = {}
        for kind, now in self.totals(name).items():
            if now > seen.get(kind, 0):
                out[kind] = now - seen.get(kind, 0)
                seen[kind] = now
        return out
