"""Does the kernel hand every block_rq_error to BPF? fio's failures against
three consumers of the same tracepoint, attached side by side.

Needs root, fio, bcc and tracefs. A loop device over tests/faultyfs whose
whole range fails reads (request merging off), the storm of issue 14
(``fio`` 4k randread, libaio, iodepth 32, 2 jobs, 5 s), and on
``block:block_rq_error`` at once:

  ftrace          the trace event in tracefs's ring buffer (overruns shown)
  TRACEPOINT      a BPF program of the kind peripetyd attaches
                  (bcc ``TRACEPOINT_PROBE``, perf-event attached)
  RAW_TRACEPOINT  a BPF raw tracepoint program (``RAW_TRACEPOINT_PROBE``:
                  no perf buffer, per-program recursion guard)

each counting every hit, and the programs' ``recursion_misses``.

This explains the few failures in 10^5 that ``benchmarks storm`` shows as
done by fio but never run through peripetyd's probes. Measured on the
project VM (6.18, 2 vCPUs): ftrace saw exactly fio's failures (645,641 of
645,641; 463,436 of 463,436) while both BPF programs ran 14 and 128 times
fewer, the same number for both, with no recursion misses counted: the
loss is in the kernel's tracepoint-to-BPF dispatch, for any BPF program
type, not in peripety's program or maps. Attaching the same kind of
program to ``block_rq_complete`` (failures only) as well missed exactly as
many (9 of 640,416 on both, ftrace again complete on both): the same
failures escape every BPF program, whatever the tracepoint. (A separate check: user-space
BPF map syscalls *do* make a TRACEPOINT program on that CPU miss runs,
counted in ``recursion_misses``; RAW_TRACEPOINT programs are immune to
that. peripetyd reports such misses as ``PERIPETY_BPF_LOST missed``.)
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACEFS = Path("/sys/kernel/tracing")

PROGRAMS = r"""
BPF_ARRAY(hits, u64, 2);
TRACEPOINT_PROBE(block, block_rq_error)
{
	int k = 0;
	u64 *n = hits.lookup(&k);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}
RAW_TRACEPOINT_PROBE(block_rq_error)
{
	int k = 1;
	u64 *n = hits.lookup(&k);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}
"""


def recursion_misses() -> dict[str, int]:
    """Per program type of this process: the kernel's recursion_misses."""
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


def main(argv: list[str] | None = None) -> None:
    missing = [what for what, ok in (("root", os.geteuid() == 0), ("fio", shutil.which("fio")),
                                     ("tracefs", (TRACEFS / "events/block/block_rq_error").is_dir())) if not ok]
    if missing:
        print(f"tracepoint_dispatch: needs {', '.join(missing)}; skipped")
        return
    sys.path.insert(0, str(ROOT))
    from bcc import BPF

    from benchmarks.storm import fio_storm
    from tests.harness.faulty import FaultyDisk, MiB

    bpf = BPF(text=PROGRAMS)
    hits = bpf["hits"]
    event = TRACEFS / "events/block/block_rq_error/enable"
    old_size = (TRACEFS / "buffer_size_kb").read_text().split()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="peripety-dispatch-") as tmp, \
                FaultyDisk(size=64 * MiB, workdir=tmp) as disk:
            disk.fail(0, disk.size, "read")
            Path(f"/sys/block/{disk.name}/queue/nomerges").write_text("2")
            (TRACEFS / "buffer_size_kb").write_text("200000")
            (TRACEFS / "trace").write_text("")
            event.write_text("1")
            try:
                failed = fio_storm(disk.loopdev, 5)
            finally:
                event.write_text("0")
            lines = [line for line in (TRACEFS / "trace").read_text().splitlines() if "block_rq_error:" in line]
            overruns = sum(int(m) for cpu in (TRACEFS / "per_cpu").iterdir()
                           for m in re.findall(r"^overrun: (\d+)", (cpu / "stats").read_text(), re.M))
    finally:
        (TRACEFS / "trace").write_text("")
        (TRACEFS / "buffer_size_kb").write_text(old_size)
    contexts = collections.Counter("softirq" if "s" in flags else "hardirq" if "h" in flags else "task"
                                   for flags in (line.split("] ", 1)[1].split()[0] for line in lines))
    counts = {"ftrace": len(lines), "TRACEPOINT": hits[hits.Key(0)].value, "RAW_TRACEPOINT": hits[hits.Key(1)].value}
    misses = recursion_misses()
    print(f"fio: {failed:,} failed reads; ftrace overruns: {overruns}; contexts: {dict(contexts)}")
    print(f"{'consumer':<15} {'hits':>9} {'short of fio':>12} {'recursion misses':>16}")
    for name, n in counts.items():
        print(f"{name:<15} {n:9,} {failed - n:12,} {misses.get(name, '-')!s:>16}")


if __name__ == "__main__":
    main(sys.argv[1:])
