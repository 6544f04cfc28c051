"""Which block_rq_error hits never reach BPF, and why: fio's failures against
four consumers of the same tracepoint, hit by hit.

(Findings below, after the method.)

Needs root, fio, bcc and tracefs. A loop device over tests/faultyfs whose
whole range fails reads (request merging off), the storm of issue 14
(``fio`` 4k randread, libaio, iodepth 32, 2 jobs, 5 s), and on
``block:block_rq_error`` of that device at once:

  ftrace          the trace event, in a tracefs instance of its own
                  (instances/peripety-dispatch-PID: own ring buffer, clock
                  ``mono``, an event filter on the device; nobody else's
                  tracing is touched)
  TRACEPOINT      a BPF program of the kind peripetyd attaches
                  (bcc ``TRACEPOINT_PROBE``, perf-event attached, run by
                  ``trace_call_bpf``)
  RAW_TRACEPOINT  a BPF raw tracepoint program (``RAW_TRACEPOINT_PROBE``,
                  run by ``__bpf_trace_run``; it reads ``struct request``
                  at offsets taken from the kernel's BTF)
  perf counter    a counting perf event per CPU (no BPF, no sampling:
                  what ``perf stat`` reads), filtered on the device;
                  ``--tp-return 0`` makes the TRACEPOINT program return 0,
                  as peripetyd's probes did, which hides hits from it

Each BPF program records every hit (CPU, bpf_ktime_get_ns, sector) in a
per-CPU slice of a mmap-able array (a program never nests on its own CPU,
so a per-CPU index needs no atomic), and counts the runs whose current task
is in PID 1. Every ftrace line (CPU, CLOCK_MONOTONIC time, context flags,
current task, sector) is then matched to the programs' records of the same
CPU and sector within 1 ms, closest pairs first, which lists the hits a
program missed with their context and current task. ``--context`` also records softirq, hardirq and
sched_switch events in the instance and prints the lines around each missed
hit; ``--runs N`` repeats the storm.

Findings (project VM, Linux 6.18.44-fc-v857, 2 vCPUs; every storm under
``flock /tmp/peripety-live.lock``, released between storms; load average
1-6 from the other engineers' work in between):

  storm  fio failures  ftrace   BPF (both)  missed  perf counter  note
  1      558,637       558,637  558,635     2       -             a
  2      566,091       566,091  566,054     37      -             a, --context
  3      536,035       536,035  535,986     49      -             --context
  4      528,132       528,132  528,043     89      -
  5      515,972       515,972  515,970     2       -
  6      518,396       518,396  518,368     28      -
  7      491,678       491,678  491,585     93      -
  8      602,041       602,041  602,000     41      -
  9      644,189       644,189  644,178     11      11            b, program returns 0
  10     383,556       383,556  383,543     13      13            program returns 0
  11     617,588       617,588  617,576     12      617,588       program returns 1
  12     659,408       659,408  659,344     64      659,408       c
  13     610,960       610,960  610,948     12      610,960
  14     433,558       433,558  433,558     0       433,558
  15     648,869       648,869  648,862     7       648,869
  16     630,026       630,026  629,970     56      630,026
  17     664,078       664,078  663,954     124     664,078
  18     666,422       666,422  666,422     0       666,422       --runs 2
  19     462,355       462,355  462,333     22      462,355

  a: an earlier version of this script, top-level ftrace buffer.
  b: ``perf stat -a -e block:block_rq_error`` beside the benchmark instead
     of its own counter.
  c: the first matching (nearest record within 2 ms, hit by hit) gave one
     missed hit to a non-PID-1 task: a missed hit took the record of a
     later hit of the same sector; matching is now closest pairs first.
  recursion_misses: 0 for both programs in every storm.

- ftrace equals fio in every storm (0 overruns): fio counts nothing else,
  and every completion had landed when the counts were read (fio reaps its
  I/O before it exits; the programs' records match ftrace's lines one for
  one, none left over).
- The TRACEPOINT and RAW_TRACEPOINT programs miss exactly the same hits,
  662 of 10,737,991 over 19 storms (0-124 per storm), and each of them ran
  in the BLOCK softirq on top of a thread of PID 1 (``tokio-rt-worker``,
  a thread of /process_api, the sandbox's firecracker-init agent:
  rdinit=/process_api on the kernel command line). No hit whose current
  task was a PID 1 thread ever reached a program, and no other hit was
  ever missed (storm 12 aside, see c). The programs never ran with
  current in PID 1 at all ("runs in PID 1": 0). The misses are spread over
  the storm (+0.2 s to +4.9 s), not at attach or detach, and nothing else
  attached BPF programs meanwhile (``bpftool prog`` polled every second
  listed only these two).
- The same holds outside the block layer: with no storm, a TRACEPOINT and
  a RAW_TRACEPOINT program on irq:softirq_entry and irq:irq_handler_entry
  ran 0 times with current in PID 1 while ftrace recorded 13 and 1 such
  events in 5 s. In the agent's own task context even ftrace records
  nothing (0 sched_switch lines with prev = a PID 1 thread in 3 s, of 607).
  fentry/fexit (BPF_PROG_TYPE_TRACING, BPF trampolines) cannot be loaded
  here at all: EPERM as root.
- A counting perf event on the tracepoint (no BPF, read with read(2);
  tests/harness/perfcount.py) counts every failure, those 297 no BPF
  program saw included: 5,393,264 of 5,393,264 over storms 11-19. But only
  if the TRACEPOINT program returns non-zero: a tracepoint program's
  return value gates the perf events of its tracepoint
  (``perf_trace_run_bpf_submit`` in kernel/events/core.c: ``if
  (!trace_call_bpf(call, raw_data) || hlist_empty(head)) return;``). With
  the program returning 0, as peripetyd's probes did, perf counted only
  the hits where no program ran (storms 9 and 10: 11 of 644,189, 13 of
  383,556): peripetyd --bpf hid its tracepoints from every perf user.

Why: upstream 6.18 has no rule that would do this. A tracepoint call
(include/linux/tracepoint.h: ``__DO_TRACE`` -> static call ->
``__traceiter_<name>``) calls every registered probe in one loop with
preemption off: ftrace's ``trace_event_raw_event_block_rq_error``, perf's
``perf_trace_block_rq_error`` (include/trace/perf.h ->
``perf_trace_run_bpf_submit`` -> ``trace_call_bpf`` in
kernel/trace/bpf_trace.c -> ``bpf_prog_run_array``, the TRACEPOINT
program) and ``__bpf_trace_block_rq_error`` (include/trace/bpf_probe.h ->
``bpf_trace_run3`` -> ``__bpf_trace_run``, the RAW_TRACEPOINT program).
The only skips on the BPF side are the recursion guards
(``bpf_prog_active`` in ``trace_call_bpf``, ``prog->active`` in
``__bpf_trace_run``), both counted in ``recursion_misses``
(``bpf_prog_inc_misses_counters`` / ``bpf_prog_inc_misses_counter``), and
neither looks at the current task; a recursion skip also makes
``trace_call_bpf`` return 0, so perf would not have counted it. Here the
skipped hits reached perf as if the program array had run and returned 1
(``bpf_prog_run_array`` starts from ``ret = 1``): the programs were
bypassed, uncounted, by a rule tied to current being a PID 1 thread, in
any context and on any tracepoint -- a property of this sandbox kernel
("fc" build, builder@sandboxing), which keeps BPF out of its agent's
context. On a stock kernel, and on a real host whose PID 1 is systemd,
there is no such loss.

For peripety:
- Its probes cannot recover these hits: no other attach type runs
  (fentry is refused; every BPF type that loads is bypassed alike), attach
  order and reading time do not matter (the misses are mid-storm and no
  record is left over), and a per-CPU or atomic counter makes no
  difference (the program does not run). The loop device completes
  requests in the BLOCK softirq (one hardware queue:
  ``blk_mq_complete_request_remote`` raises it) on top of whatever task the
  CPU runs, now and then the agent, which peripety must leave alone.
- The kernel's own count is within reach without BPF: a counting perf
  event per CPU on each probed tracepoint, read each tick (a read(2), not a
  bpf() syscall), gives the exact number of hits; the daemon can report
  the difference to its BPF counts as failures it did not see (a per-device
  ``dev == X`` filter attributes them, at one perf event per CPU and
  device). That needs the probes to return non-zero, which bpf/scsi_trace.c
  now does (``PRPT_PERF_KEEP``), for perf users' sake in any case.
- ``benchmarks storm`` prints, next to fio's failures, those that completed
  in PID 1's context (ftrace instance) and checks that peripetyd counted
  every other one.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import mmap
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACEFS = Path("/sys/kernel/tracing")
HIT = struct.Struct("<QQII")  # struct hit below
MATCH_WINDOW_NS = 1_000_000  # ftrace prints microseconds; the consumers run microseconds apart
CONTEXT_EVENTS = ("irq/softirq_entry", "irq/softirq_exit", "irq/irq_handler_entry", "sched/sched_switch")
PROGRAM_NAMES = ("TRACEPOINT", "RAW_TRACEPOINT")

PROGRAMS = r"""
struct hit {
	u64 ns;		/* bpf_ktime_get_ns(): CLOCK_MONOTONIC, as the instance's "mono" clock */
	u64 sector;
	u32 dev;
	u32 cpu;
};

/* Per program: PRPT_PER_CPU slots per CPU, CPU c's hits in slots c*PRPT_PER_CPU... */
BPF_F_TABLE("array", u32, struct hit, tp_hits, PRPT_NREC, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct hit, raw_hits, PRPT_NREC, BPF_F_MMAPABLE);
/* Per program and CPU: hits so far (also beyond the slots), runs with current in PID 1. */
BPF_PERCPU_ARRAY(runs, u64, 2);
BPF_PERCPU_ARRAY(runs_in_pid1, u64, 2);

static __always_inline void record(int prog, u64 sector, u32 dev)
{
	u64 *n, *in_pid1;
	struct hit *h;
	u32 cpu, slot;

	if (dev != PRPT_DEV)
		return;
	n = runs.lookup(&prog);
	if (!n)
		return;
	/*
	 * No atomic needed: trace_call_bpf (bpf_prog_active) and __bpf_trace_run
	 * (prog->active) never run a program nested on its own CPU.
	 */
	slot = *n;
	*n += 1;
	if (bpf_get_current_pid_tgid() >> 32 == 1) {
		in_pid1 = runs_in_pid1.lookup(&prog);
		if (in_pid1)
			*in_pid1 += 1;
	}
	if (slot >= PRPT_PER_CPU)
		return;
	cpu = bpf_get_smp_processor_id();
	slot += cpu * PRPT_PER_CPU;
	h = prog ? raw_hits.lookup(&slot) : tp_hits.lookup(&slot);
	if (!h)
		return;
	h->ns = bpf_ktime_get_ns();
	h->sector = sector;
	h->dev = dev;
	h->cpu = cpu;
}

TRACEPOINT_PROBE(block, block_rq_error)
{
	record(0, args->sector, args->dev);
	/* 0 would also drop the hit for every perf event on this tracepoint
	 * (perf_trace_run_bpf_submit), the perf counter below included. */
	return PRPT_TP_RETURN;
}

RAW_TRACEPOINT_PROBE(block_rq_error)
{
	/* TP_PROTO(struct request *rq, blk_status_t error, unsigned int nr_bytes) */
	char *rq = (char *)ctx->args[0];
	char *part = NULL;
	u64 sector = 0;
	u32 dev = 0;

	bpf_probe_read_kernel(&part, sizeof(part), rq + PRPT_OFF_RQ_PART);
	bpf_probe_read_kernel(&dev, sizeof(dev), part + PRPT_OFF_BDEV_DEV);
	bpf_probe_read_kernel(&sector, sizeof(sector), rq + PRPT_OFF_RQ_SECTOR);
	record(1, sector, dev);
	return 0;
}
"""

# "  comm-pid  [cpu] flags  secs.usecs: event: fields" (trace_print_context with irq-info)
LINE = re.compile(r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+"
                  r"(?P<secs>\d+)\.(?P<usecs>\d{6}): (?P<event>\w+): (?P<fields>.*)$")
# block_rq_error: "%d,%d %s (%s) %llu + %u ..." (include/trace/events/block.h)
RQ_ERROR = re.compile(r"^\d+,\d+ \S+ \(.*?\) (?P<sector>\d+) \+ \d+")


@dataclass
class Hit:
    """One block_rq_error line of the ftrace instance."""
    cpu: int
    ns: int
    sector: int
    flags: str
    comm: str
    pid: int
    line: int  # index into the instance's lines, for --context
    seen_by: set[str] = field(default_factory=set)

    @property
    def context(self) -> str:
        # The third flag of irq-info: z/Z NMI, h/H hardirq, s softirq, '.' task.
        mark = self.flags[2] if len(self.flags) > 2 else "."
        return {"z": "nmi", "Z": "nmi", "h": "hardirq", "H": "hardirq", "s": "softirq"}.get(mark, "task")


def recursion_misses() -> dict[str, int]:
    """Per program type of this process: the kernel's recursion_misses (fdinfo)."""
    names = {"5": "TRACEPOINT", "17": "RAW_TRACEPOINT"}
    out = {}
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            fields = dict(line.split(":\t", 1) for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        if fields.get("prog_type") in names:
            out[names[fields["prog_type"]]] = int(fields.get("recursion_misses", "0"))
    return out


def pid1_threads() -> set[int]:
    """Thread ids of PID 1 (on the project VM: the sandbox's agent, /process_api)."""
    try:
        return {int(t) for t in os.listdir("/proc/1/task")}
    except OSError:
        return set()


class Instance:
    """A tracefs instance with block_rq_error of one device (and optional context events)."""

    def __init__(self, kdev: int, context: bool, buffer_kb: int) -> None:
        self.path = TRACEFS / "instances" / f"peripety-dispatch-{os.getpid()}"
        self.kdev, self.context, self.buffer_kb = kdev, context, buffer_kb
        self.events = ["block/block_rq_error", *(CONTEXT_EVENTS if context else ())]

    def __enter__(self) -> "Instance":
        self.path.mkdir()
        try:
            (self.path / "buffer_size_kb").write_text(str(self.buffer_kb))
            (self.path / "trace_clock").write_text("mono")
            (self.path / "events/block/block_rq_error/filter").write_text(f"dev == {self.kdev}")
        except BaseException:
            self.path.rmdir()
            raise
        return self

    def enable(self, on: bool) -> None:
        for event in self.events:
            (self.path / "events" / event / "enable").write_text("1" if on else "0")

    def read(self) -> tuple[list[str], int]:
        """(lines of the trace, ring buffer overruns)."""
        lines = (self.path / "trace").read_text().splitlines()
        overruns = sum(int(m) for cpu in (self.path / "per_cpu").iterdir()
                       for m in re.findall(r"^overrun: (\d+)", (cpu / "stats").read_text(), re.M))
        return lines, overruns

    def __exit__(self, *exc) -> None:
        self.enable(False)
        self.path.rmdir()


def hits_by_pid(lines: list[str]) -> collections.Counter[int]:
    """block_rq_error lines of an instance's trace, counted by the current task's pid."""
    pids: collections.Counter[int] = collections.Counter()
    for text in lines:
        m = LINE.match(text)
        if m and m["event"] == "block_rq_error":
            pids[int(m["pid"])] += 1
    return pids


def read_hits(bpf, table: str, prog: int, ncpu: int, per_cpu: int) -> tuple[int, list[tuple[int, int, int]]]:
    """(runs, [(cpu, ns, sector)]) of one program, read through mmap."""
    runs = bpf["runs"][bpf["runs"].Key(prog)]
    size = ncpu * per_cpu * HIT.size
    mm = mmap.mmap(bpf[table].map_fd, -(-size // mmap.PAGESIZE) * mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ)
    try:
        hits = []
        for cpu in range(ncpu):
            base = cpu * per_cpu * HIT.size
            stored = min(runs[cpu], per_cpu)
            hits.extend((c, ns, sector) for ns, sector, _dev, c in HIT.iter_unpack(mm[base:base + stored * HIT.size]))
    finally:
        mm.close()
    return sum(runs), hits


def match(hits: list[Hit], records: list[tuple[int, int, int]], name: str) -> int:
    """Mark the hits a program recorded; return its records left over.

    A record matches a hit of the same CPU and sector within MATCH_WINDOW_NS,
    closest pairs first: a hit the program missed must not take the record of
    a later hit of the same sector (4k random reads over 64 MiB repeat a
    sector on a CPU every ~0.3 s on average, now and then within a millisecond)."""
    hits_at = collections.defaultdict(list)
    for hit in hits:
        hits_at[hit.cpu, hit.sector].append(hit)
    records_at = collections.defaultdict(list)
    for cpu, ns, sector in records:
        records_at[cpu, sector].append(ns)
    matched = 0
    for key, these in hits_at.items():
        times = sorted(records_at.get(key, ()))
        pairs = []
        for h, hit in enumerate(these):
            i = bisect.bisect_left(times, hit.ns - MATCH_WINDOW_NS)
            while i < len(times) and times[i] <= hit.ns + MATCH_WINDOW_NS:
                pairs.append((abs(times[i] - hit.ns), h, i))
                i += 1
        pairs.sort()
        taken_hits: set[int] = set()
        taken_records: set[int] = set()
        for _distance, h, i in pairs:
            if h not in taken_hits and i not in taken_records:
                taken_hits.add(h)
                taken_records.add(i)
                these[h].seen_by.add(name)
        matched += len(taken_hits)
    return len(records) - matched


def storm_once(args, run: int) -> dict:
    from bcc import BPF
    from bcc.utils import get_possible_cpus

    from benchmarks._btf import member_offsets
    from benchmarks.storm import fio_storm
    from tests.harness.faulty import FaultyDisk, MiB
    from tests.harness.perfcount import TracepointCounter

    offsets = member_offsets({("request", "__sector"), ("request", "part"), ("block_device", "bd_dev")})
    ncpu = max(get_possible_cpus()) + 1
    per_cpu = max(1 << 16, min(1 << 20, (4 << 20) // ncpu))
    with tempfile.TemporaryDirectory(prefix="peripety-dispatch-") as tmp, \
            FaultyDisk(size=64 * MiB, workdir=tmp) as disk:
        disk.fail(0, disk.size, "read")
        Path(f"/sys/block/{disk.name}/queue/nomerges").write_text("2")
        major, minor = (int(x) for x in disk.dev_num.split(":"))
        kdev = major << 20 | minor
        bpf = BPF(text=PROGRAMS, cflags=[
            f"-DPRPT_DEV={kdev}", f"-DPRPT_PER_CPU={per_cpu}", f"-DPRPT_NREC={ncpu * per_cpu}",
            f"-DPRPT_OFF_RQ_SECTOR={offsets['request', '__sector']}",
            f"-DPRPT_OFF_RQ_PART={offsets['request', 'part']}",
            f"-DPRPT_OFF_BDEV_DEV={offsets['block_device', 'bd_dev']}", f"-DPRPT_TP_RETURN={args.tp_return}", "-w"])
        if run == 1:
            print(f"{disk.loopdev} ({disk.dev_num}) over faultyfs, every read fails, request merging off; "
                  f"fio 4k randread libaio iodepth 32 x 2 jobs, {args.seconds} s per storm")
        agents = pid1_threads()
        counter = TracepointCounter(TRACEFS / "events/block/block_rq_error", f"dev == {kdev}")
        try:
            with Instance(kdev, args.context, 262144 if args.context else 65536) as instance:
                instance.enable(True)
                try:
                    failed = fio_storm(disk.loopdev, args.seconds)
                finally:
                    instance.enable(False)
                lines, overruns = instance.read()
            perf_count = counter.read()
        finally:
            counter.close()
        agents |= pid1_threads()
    misses = recursion_misses()
    runs, in_pid1, leftover = {}, {}, {}
    hits = []
    for i, text in enumerate(lines):
        m = LINE.match(text)
        if m and m["event"] == "block_rq_error":
            f = RQ_ERROR.match(m["fields"])
            if f:
                hits.append(Hit(int(m["cpu"]), (int(m["secs"]) * 1_000_000 + int(m["usecs"])) * 1000,
                                int(f["sector"]), m["flags"], m["comm"], int(m["pid"]), i))
    for prog, (name, table) in enumerate(zip(PROGRAM_NAMES, ("tp_hits", "raw_hits"))):
        runs[name], records = read_hits(bpf, table, prog, ncpu, per_cpu)
        in_pid1[name] = sum(bpf["runs_in_pid1"][bpf["runs_in_pid1"].Key(prog)])
        leftover[name] = match(hits, records, name)
    bpf.cleanup()
    return dict(failed=failed, hits=hits, lines=lines, overruns=overruns, runs=runs, in_pid1=in_pid1, perf=perf_count,
                leftover=leftover, misses=misses, agents=agents, records_full=slots_ran_out(hits, per_cpu))


def slots_ran_out(hits: list[Hit], per_cpu: int) -> bool:
    """Whether some CPU had more hits than the record slots (then matching undercounts)."""
    per_cpu_hits = collections.Counter(h.cpu for h in hits)
    return any(n > per_cpu for n in per_cpu_hits.values())


def report(result: dict, run: int, args) -> None:
    failed, hits, agents = result["failed"], result["hits"], result["agents"]
    print(f"\nstorm {run}: fio {failed:,} failed reads; ftrace instance {len(hits):,} hits, "
          f"{result['overruns']} overruns{'  (ftrace lost lines: matching incomplete)' if result['overruns'] else ''}")
    print(f"  {'consumer':<15} {'hits':>9} {'short of fio':>12} {'recursion misses':>16} {'runs in PID 1':>13}")
    print(f"  {'ftrace':<15} {len(hits):9,} {failed - len(hits):12,} {'-':>16} {'-':>13}")
    print(f"  {'perf counter':<15} {result['perf']:9,} {failed - result['perf']:12,} {'-':>16} {'-':>13}"
          f"  (TRACEPOINT program returns {args.tp_return})")
    for name in PROGRAM_NAMES:
        print(f"  {name:<15} {result['runs'][name]:9,} {failed - result['runs'][name]:12,} "
              f"{result['misses'].get(name, '-')!s:>16} {result['in_pid1'][name]:13,}")
    table = collections.Counter()
    for h in hits:
        key = (h.context, h.pid in agents)
        table[key, "ftrace"] += 1
        for name in h.seen_by:
            table[key, name] += 1
    print("  ftrace's hits by context and current task, and how many of them each program ran for:")
    print(f"  {'context':<8} {'current task':<22} {'ftrace':>9} {'TRACEPOINT':>10} {'RAW_TRACEPOINT':>14}")
    for ctx, in_agent in sorted({k for k, _ in table}):
        print(f"  {ctx:<8} {'a thread of PID 1' if in_agent else 'any other':<22} {table[(ctx, in_agent), 'ftrace']:9,} "
              f"{table[(ctx, in_agent), 'TRACEPOINT']:10,} {table[(ctx, in_agent), 'RAW_TRACEPOINT']:14,}")
    missed = [h for h in hits if len(h.seen_by) < len(PROGRAM_NAMES)]
    both = [h for h in missed if not h.seen_by]
    in_agent = [h for h in missed if h.pid in agents]
    agent_hits = [h for h in hits if h.pid in agents]
    start = hits[0].ns if hits else 0
    span = (hits[-1].ns - start) / 1e9 if hits else 0.0
    print(f"  missed by a program: {len(missed)} (by both: {len(both)}); of them with current a thread of PID 1: "
          f"{len(in_agent)}; hits with current a thread of PID 1 that a program saw: "
          f"{sum(1 for h in agent_hits if h.seen_by)} of {len(agent_hits)}")
    if missed:
        when = sorted((h.ns - start) / 1e9 for h in missed)
        comms = collections.Counter(f"{h.comm}-{h.pid}" for h in missed)
        print(f"  missed hits at +{when[0]:.3f} .. +{when[-1]:.3f} s of {span:.3f} s; current tasks: "
              + ", ".join(f"{c} ({n})" for c, n in comms.most_common(6)))
    leftover = {k: v for k, v in result["leftover"].items() if v}
    if leftover or result["records_full"]:
        print(f"  program records matching no ftrace line: {leftover or 0}"
              f"{'; some CPU ran out of record slots' if result['records_full'] else ''}")
    for h in missed[:args.show]:
        print(f"  - missed: cpu {h.cpu} +{(h.ns - start) / 1e9:.6f} s, {h.context} ({h.flags}), current "
              f"{h.comm}-{h.pid}{' [PID 1]' if h.pid in agents else ''}, sector {h.sector}, seen by "
              f"{', '.join(sorted(h.seen_by)) or 'no program'}")
        if args.context:
            cpu_lines = [t for t in result["lines"][max(0, h.line - 400):h.line + 400] if f"[{h.cpu:03d}]" in t]
            here = cpu_lines.index(result["lines"][h.line])
            for t in cpu_lines[max(0, here - 5):here + 4]:
                print(("    >> " if t == result["lines"][h.line] else "       ") + t.strip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tracepoint_dispatch",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="fio run time (the storm's length)")
    parser.add_argument("--runs", type=int, default=1, help="storms to run, one after the other")
    parser.add_argument("--show", type=int, default=5, help="missed hits to list per storm")
    parser.add_argument("--tp-return", type=int, choices=(0, 1), default=1,
                        help="what the TRACEPOINT program returns: 0 also drops the hit for perf events "
                             "on the tracepoint (as peripetyd's probes did), 1 keeps it")
    parser.add_argument("--context", action="store_true",
                        help="also trace softirq/hardirq/sched_switch events and print them around each listed hit")
    args = parser.parse_args(argv if argv is not None else [])
    missing = [what for what, ok in (("root", os.geteuid() == 0), ("fio", shutil.which("fio")),
                                     ("tracefs instances", (TRACEFS / "instances").is_dir())) if not ok]
    if missing:
        print(f"tracepoint_dispatch: needs {', '.join(missing)}; skipped")
        return
    sys.path.insert(0, str(ROOT))
    for run in range(1, args.runs + 1):
        started = time.monotonic()
        report(storm_once(args, run), run, args)
        print(f"  ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
