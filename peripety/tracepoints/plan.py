"""Decide what ``--bpf`` can attach here: the attach plan.

Capabilities are probed in a fixed order (bcc importable, privileges,
tracefs, kernel headers, ring buffer), then each probe of ``kinds.toml`` (a
kind's ``[[kind.probe]]`` rows, alternatives in order of preference) is
checked against tracefs: does the event exist (``BPF.tracepoint_exists``),
does its format carry the fields the program reads. Never the kernel version.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import tracefs
from .kinds import ProbeSpec, probe_specs

MODES = ("auto", "on", "off")

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


@dataclass(frozen=True)
class PlannedProbe:
    spec: ProbeSpec
    defines: tuple[str, ...]
    """The probe's define plus its optional one when the fields exist."""


@dataclass(frozen=True)
class SkippedProbe:
    tracepoint: str
    reason: str


@dataclass(frozen=True)
class Problem:
    """Something that stops the probes from loading, and its fix."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} (fix: {self.fix})"


@dataclass(frozen=True)
class AttachPlan:
    mode: str
    probes: tuple[PlannedProbe, ...] = ()
    skipped: tuple[SkippedProbe, ...] = ()
    problems: tuple[Problem, ...] = ()
    tracefs_root: Path | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def usable(self) -> bool:
        return self.mode != "off" and not self.problems and bool(self.probes)

    @property
    def defines(self) -> list[str]:
        return [d for p in self.probes for d in p.defines]

    def attached(self, tracepoint: str) -> bool:
        return any(p.spec.tracepoint == tracepoint for p in self.probes)

    def skip_reason(self, tracepoint: str) -> str | None:
        for s in self.skipped:
            if s.tracepoint == tracepoint:
                return s.reason
        return None


# -- host capabilities --------------------------------------------------------


def _effective_caps(status_path: str = "/proc/self/status") -> int:
    with open(status_path) as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _has_bpf_privileges() -> bool:
    caps = _effective_caps()
    if caps & (1 << CAP_SYS_ADMIN):
        return True
    return bool(caps & (1 << CAP_BPF)) and bool(caps & (1 << CAP_PERFMON))


def _kernel_headers_present(modules_dir: Path) -> bool:
    # bcc compiles against /lib/modules/$(uname -r)/build, or the kernel's
    # own copy when CONFIG_IKHEADERS exposes it.
    return (modules_dir / "build" / "include").is_dir() or Path("/sys/kernel/kheaders.tar.xz").exists()


def _ringbuf_supported(kallsyms: str = "/proc/kallsyms") -> bool:
    # The helper's symbol exists exactly when the kernel has BPF ring buffers.
    try:
        with open(kallsyms, "rb") as table:
            return b" bpf_ringbuf_output\n" in table.read()
    except OSError:
        return False


def _host_problems(modules_dir: Path, root: Path | None) -> list[Problem]:
    problems = []
    if importlib.util.find_spec("bcc") is None:
        problems.append(Problem("bcc is not installed", "apt-get install python3-bpfcc"))
    if not _has_bpf_privileges():
        problems.append(
            Problem("no privilege to load BPF programs", "run as root (or with CAP_BPF and CAP_PERFMON)")
        )
    if root is None:
        closed = tracefs.unreadable_tracefs()
        if closed is not None:
            problems.append(Problem(f"tracefs at {closed} is not readable by this user", "run as root"))
        else:
            problems.append(Problem("tracefs is not mounted", tracefs.MOUNT_HINT))
    if not _kernel_headers_present(modules_dir):
        problems.append(
            Problem(
                f"kernel headers missing ({modules_dir}/build)",
                "apt-get install linux-headers-$(uname -r), or scripts/kernel-headers.sh",
            )
        )
    elif not _ringbuf_supported():
        problems.append(Problem("this kernel has no BPF ring buffer", "a kernel with BPF ring buffers (5.8+)"))
    return problems


# -- probes ---------------------------------------------------------------------


def _exists_check(root: Path):
    """BPF.tracepoint_exists for the system tracefs; a plain directory check
    (what bcc does) for any other root, such as a recorded tracefs tree."""
    if root in tracefs.TRACEFS_CANDIDATES and importlib.util.find_spec("bcc") is not None:
        from bcc import BPF

        return BPF.tracepoint_exists
    return lambda category, event: tracefs.tracepoint_exists(root, category, event)


def _plan_probes(root: Path) -> tuple[list[PlannedProbe], list[SkippedProbe]]:
    exists = _exists_check(root)
    planned: list[PlannedProbe] = []
    skipped: list[SkippedProbe] = []
    taken: dict[str, str] = {}  # slot -> tracepoint attached for it
    for spec in probe_specs():
        if spec.slot in taken:
            skipped.append(SkippedProbe(spec.tracepoint, f"not needed: {taken[spec.slot]} is attached"))
            continue
        if not exists(spec.category, spec.event):
            skipped.append(SkippedProbe(spec.tracepoint, _absent_reason(spec)))
            continue
        fmt = tracefs.read_format(root, spec.category, spec.event)
        missing = fmt.missing_fields(spec.fields)
        if missing:
            skipped.append(
                SkippedProbe(spec.tracepoint, f"its format lacks field(s) {', '.join(missing)}")
            )
            continue
        defines = [spec.define]
        if spec.optional_define and not fmt.missing_fields(spec.optional_fields):
            defines.append(spec.optional_define)
        planned.append(PlannedProbe(spec, tuple(defines)))
        taken[spec.slot] = spec.tracepoint
    return planned, skipped


def _absent_reason(spec: ProbeSpec) -> str:
    if spec.module:
        return f"tracepoint does not exist on this kernel (module {spec.module} not loaded or not built)"
    return "tracepoint does not exist on this kernel"


def plan_attach(mode: str = "auto", *, tracefs_root: Path | None = None,
                modules_dir: Path | None = None) -> AttachPlan:
    """What ``--bpf MODE`` would attach on this host, and why not the rest.

    ``tracefs_root``/``modules_dir`` default to the live system; tests pass
    recorded trees.
    """
    if mode not in MODES:
        raise ValueError(f"--bpf {mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return AttachPlan(mode=mode, notes=("disabled by --bpf off",))
    root = Path(tracefs_root) if tracefs_root else tracefs.find_tracefs()
    modules_dir = Path(modules_dir) if modules_dir else Path("/lib/modules") / os.uname().release
    problems = _host_problems(modules_dir, root)
    if root is None:
        return AttachPlan(mode=mode, problems=tuple(problems))
    planned, skipped = _plan_probes(root)
    if not planned:
        problems.append(
            Problem("no storage error tracepoint exists here", "a kernel with block:block_rq_error or block_rq_complete")
        )
    return AttachPlan(
        mode=mode,
        probes=tuple(planned),
        skipped=tuple(skipped),
        problems=tuple(problems),
        tracefs_root=root,
    )


def describe_plan(plan: AttachPlan) -> str:
    """Human text for ``peripetyd --check``: what attaches, what not, why."""
    lines = [f"bpf mode: {plan.mode}"]
    lines += [f"  note: {n}" for n in plan.notes]
    if plan.tracefs_root:
        lines.append(f"tracefs: {plan.tracefs_root}")
    for p in plan.probes:
        extra = f" [{', '.join(p.defines[1:])}]" if len(p.defines) > 1 else ""
        lines.append(f"  attach {p.spec.tracepoint:<34} {p.spec.why}{extra}")
    for s in plan.skipped:
        lines.append(f"  skip   {s.tracepoint:<34} {s.reason}")
    for problem in plan.problems:
        lines.append(f"  cannot load: {problem}")
    if plan.mode != "off":
        lines.append("result: " + ("probes will load" if plan.usable else "probes will NOT load"))
    return "\n".join(lines)
