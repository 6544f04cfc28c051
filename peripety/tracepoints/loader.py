"""Compile and attach bpf/scsi_trace.c with bcc, as the attach plan says.

The program text is never edited: everything variable reaches it as ``-D``
compiler flags (which probes, kind numbers, struct sizes, ring size).
``program_text`` shows the equivalent source, like bcc tools' ``--ebpf``.
"""

from __future__ import annotations

import contextlib
import ctypes as ct
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import BpfUnavailable
from .kinds import CPU_COUNTERS, KIND_COUNT, KIND_STRIDE, KINDS, LAYOUTS
from .plan import AttachPlan

log = logging.getLogger("peripety.tracepoints.loader")

SOURCE_ENV = "PERIPETY_BPF_SOURCE"
# The work tree keeps the C next to the package; `pip install` puts a copy
# in <prefix>/share/peripety/bpf (pyproject data-files), distributions in
# /usr/share/peripety/bpf.
_SOURCE_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "bpf" / "scsi_trace.c",
    Path(sys.prefix) / "share" / "peripety" / "bpf" / "scsi_trace.c",
    Path("/usr/share/peripety/bpf/scsi_trace.c"),
)


@dataclass(frozen=True)
class Tuning:
    """The program's bounds, passed as -D flags (tests shrink them)."""

    ringbuf_pages: int = 64
    """64 pages = 256 KiB: ~4000 block samples (56 bytes + 8 bytes ring
    header) before user space must drain; samples beyond are counted lost
    (their failures are still counted in the maps)."""
    sample_budget: int = 8
    """Full samples per unit (device, SCSI LUN, NVMe disk) and interval."""
    sample_interval_ns: int = 1_000_000_000
    agg_entries: int = 1024
    """(unit, kind, status, op) slots per epoch (one tick); failures beyond
    are counted per kind only (``Aggregates.untracked``). Memory: two
    generations of a 72-byte key per slot and a 56-byte value per slot and
    possible CPU (1024 slots: 144 KiB + 112 KiB per CPU)."""
    sector_entries: int = 2048
    """Sector buckets per epoch: 2048 buckets of 4096 sectors (each a
    512-byte bitmap, two generations: 2 MiB) cover 4 GiB of failed range per
    read; requests beyond keep only their key's lowest/highest sector
    (``Aggregate.unmapped``)."""
    bucket_words: int = 64
    """64-bit words per sector bucket: 64 -> 4096 sectors (2 MiB)."""
    budget_entries: int = 4096
    """Units whose sample budget is tracked (LRU)."""

    def defines(self) -> dict[str, str]:
        return {
            "PRPT_RINGBUF_PAGES": str(self.ringbuf_pages),
            "PRPT_SAMPLE_BUDGET": str(self.sample_budget),
            "PRPT_SAMPLE_INTERVAL_NS": f"{self.sample_interval_ns}ULL",
            "PRPT_AGG_ENTRIES": str(self.agg_entries),
            "PRPT_SECTOR_ENTRIES": str(self.sector_entries),
            "PRPT_BUCKET_WORDS": str(self.bucket_words),
            "PRPT_BUDGET_ENTRIES": str(self.budget_entries),
        }


DEFAULT_TUNING = Tuning()

# Debian's headers, seen through bcc's clang, warn about nocf_check on every
# compile; the warning says nothing about our program.
_QUIET_FLAGS = ["-Wno-ignored-attributes"]


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many CPU numbers this kernel can ever use (``0-3,8`` -> 9): the
    rows of the program's per-CPU arrays (bpf_get_smp_processor_id() is
    always below it, also for CPUs brought online later)."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    highest = 0
    for part in text.split(","):
        highest = max(highest, int(part.split("-")[-1]))
    return highest + 1


def source_path() -> Path:
    override = os.environ.get(SOURCE_ENV)
    if override:
        return Path(override)
    for candidate in _SOURCE_CANDIDATES:
        if candidate.exists():
            return candidate
    raise BpfUnavailable(
        [f"bpf/scsi_trace.c not found (looked in {', '.join(map(str, _SOURCE_CANDIDATES))}; set {SOURCE_ENV})"]
    )


def defines(plan: AttachPlan, tuning: Tuning = DEFAULT_TUNING) -> dict[str, str | None]:
    """Every macro the program is compiled with; None means a bare -DNAME."""
    table: dict[str, str | None] = {}
    for kind in KINDS.values():
        table[kind.define] = str(kind.number)
    table["PRPT_KIND_COUNT"] = str(KIND_COUNT)
    table["PRPT_KINDS_PER_ROW"] = str(KIND_STRIDE)
    table["PRPT_NR_CPUS"] = str(possible_cpus())
    table["PRPT_COUNTERS"] = str(len(CPU_COUNTERS))
    for i, name in enumerate(CPU_COUNTERS):
        table[f"PRPT_COUNTER_{name.upper()}"] = str(i)
    for layout in LAYOUTS.values():
        table[layout.size_define] = str(ct.sizeof(layout.struct))
    table.update(tuning.defines())
    for define in plan.defines:
        table[define] = None
    return table


def compile_flags(plan: AttachPlan, tuning: Tuning = DEFAULT_TUNING) -> list[str]:
    flags = [f"-D{k}" if v is None else f"-D{k}={v}" for k, v in defines(plan, tuning).items()]
    return _QUIET_FLAGS + flags


def program_text(plan: AttachPlan, tuning: Tuning = DEFAULT_TUNING) -> str:
    """The source as compiled: the defines spelled out, then the file."""
    head = [f"/* {source_path()} compiled with these defines (peripety attach plan) */"]
    for name, value in defines(plan, tuning).items():
        head.append(f"#define {name}" + ("" if value is None else f" {value}"))
    return "\n".join(head) + "\n\n" + source_path().read_text()


@contextlib.contextmanager
def _compiler_output():
    """Collect what bcc's C++ side writes to fd 2 (clang diagnostics), so a
    failure can be reported in one exception instead of a wall of stderr."""
    captured: list[str] = []
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))


def load(plan: AttachPlan, tuning: Tuning = DEFAULT_TUNING):
    """Compile the program and attach every planned probe; return the bcc
    ``BPF`` object. Raise BpfUnavailable naming what failed."""
    if not plan.usable:
        raise BpfUnavailable([str(p) for p in plan.problems] or ["the attach plan has no probe"])
    try:
        from bcc import BPF
    except ImportError as exc:
        raise BpfUnavailable([f"bcc cannot be imported ({exc}) (fix: apt-get install python3-bpfcc)"]) from None
    src = source_path()
    with _compiler_output() as output:
        try:
            # TRACEPOINT_PROBE functions attach themselves when BPF() loads.
            bpf = BPF(src_file=str(src).encode(), cflags=compile_flags(plan, tuning))
            failure = None
        except Exception as exc:  # bcc raises bare Exception for compile/attach errors
            bpf, failure = None, exc
    diagnostics = output[0] if output else ""
    if failure is not None:
        errors = [line for line in diagnostics.splitlines() if "error" in line] or [str(failure)]
        raise BpfUnavailable([f"{src}: {failure}: " + " | ".join(errors[:5])]) from failure
    if diagnostics.strip():
        log.debug("bcc compiler output for %s:\n%s", src, diagnostics)
    log.info("bpf probes attached: %s", ", ".join(p.spec.tracepoint for p in plan.probes))
    return bpf
