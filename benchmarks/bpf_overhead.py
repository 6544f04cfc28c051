"""What ``peripetyd --bpf`` costs the success path of I/O, next to bcc's biosnoop.

Needs root and bcc (python3-bpfcc, bpfcc-tools for biosnoop) and fio. A
loop device with direct I/O over a file on tmpfs (no disk behind it: the
block layer's per-request cost is all there is to see), then R rounds, each
running in turn, for S seconds of fio (4 KiB O_DIRECT random reads, psync,
one job: one syscall and one block request per read):

  baseline    nothing attached
  peripetyd   ``peripetyd --bpf on`` running (measured once it prints
              ``ready``: probes attached), store in a temporary SQLite file
  per-I/O     a bcc tool tracing every request, output to a file on tmpfs
  tracer      (block-buffered as it would be into /dev/null; it counts as
              attached once output has appeared after a few reads):
              ``biosnoop-bpfcc`` where the kernel has kprobes (in a private
              mount namespace with debugfs when debugfs is not mounted, for
              bcc's kprobe blacklist), else ``trace-bpfcc`` on
              ``block:block_rq_complete`` printing every request (biosnoop
              needs kprobes on blk_account_io_*).

The tools are started and stopped inside each round, so the modes alternate
under the same background load; the tool's own CPU use during the fio run
(% of one CPU) is printed too: peripetyd still reads kmsg, udev and the
journal, so other activity on the machine shows up there. Throughout, /dev/cpu_dma_latency is held at
0 (released at the end; ``--allow-idle`` to skip): in a VM an idle vCPU
halts, and waking it for each request (fio -> loop worker -> fio) costs more
than the request itself, so any tool that keeps a CPU busy made reads
*faster* (measured on a 2-vCPU Firecracker guest: 26k IOPS idle, 80k with a
busy loop or with the latency request) and hid its own cost. Prints IOPS per mode (median of rounds, and
every round) and the ratios to the baseline. Target: peripetyd >= 0.98.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIOSNOOP = "/usr/sbin/biosnoop-bpfcc"
TRACE = "/usr/sbin/trace-bpfcc"
KPROBE_EVENTS = Path("/sys/kernel/tracing/kprobe_events")
# Stand-in where biosnoop cannot attach (kernel without kprobes): every
# completed request sent to user space and printed, as biosnoop does.
TRACE_EVERY_REQUEST = [TRACE, 't:block:block_rq_complete "%s %llu %u", args->rwbs, args->sector, args->nr_sector']
MODES = ("baseline", "peripetyd", "per-I/O tracer")


class TmpfsLoop:
    """A loop device (direct I/O) over a file on /dev/shm."""

    def __init__(self, size_mb: int = 256):
        self.image = Path("/dev/shm") / f"peripety-bpf-bench-{os.getpid()}.img"
        self.size_mb = size_mb
        self.dev: str | None = None

    def __enter__(self) -> "TmpfsLoop":
        # Written, not sparse: reads find real pages.
        subprocess.run(["dd", "if=/dev/zero", f"of={self.image}", "bs=1M", f"count={self.size_mb}", "status=none"],
                       check=True)
        try:
            self.dev = subprocess.run(["losetup", "-f", "--show", "--direct-io=on", str(self.image)], check=True,
                                      capture_output=True, text=True).stdout.strip()
            subprocess.run(["udevadm", "settle", "--timeout=30"], check=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], check=False)
            self.dev = None
        self.image.unlink(missing_ok=True)


def fio_iops(dev: str, seconds: float) -> float:
    done = subprocess.run(
        ["fio", "--name=bpf-overhead", f"--filename={dev}", "--rw=randread", "--bs=4k", "--direct=1",
         "--ioengine=psync", "--numjobs=1", f"--runtime={seconds}s", "--time_based", "--output-format=json"],
        capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["jobs"][0]["read"]["iops"]


@contextlib.contextmanager
def cpus_awake(hold: bool):
    """Ask for 0 µs wake-up latency (idle CPUs poll) for as long as we run."""
    if not hold:
        yield "idle states allowed"
        return
    fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, struct.pack("i", 0))
        yield "/dev/cpu_dma_latency held at 0 (idle CPUs poll)"
    finally:
        os.close(fd)


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def few_reads(dev: str) -> None:
    subprocess.run(["dd", f"if={dev}", "of=/dev/null", "bs=4k", "count=256", "iflag=direct", "status=none"],
                   check=True)


class Peripetyd:
    """The daemon with its probes, as deployed apart from where it keeps things."""

    def __init__(self, workdir: Path):
        from tests.harness.daemon import PERIPETYD, DaemonProcess

        class Daemon(DaemonProcess):
            def command(self) -> list[str]:
                return [PERIPETYD, "--bpf", "on", "--store", self.store, "--no-blk-info-dump",
                        "--state-dir", str(self.state_dir), "--status-file", str(self.status_file)]

        self.daemon = Daemon(workdir, store=f"sqlite:{workdir / 'events.db'}")

    def start(self, dev: str) -> None:
        self.daemon.start(timeout=180)

    @property
    def pid(self) -> int:
        return self.daemon.proc.pid

    def stop(self) -> None:
        code = self.daemon.stop()
        if code != 0:
            raise SystemExit(f"peripetyd --bpf on exited {code}: see {self.daemon.log_path}")


def tracer_command() -> tuple[str, list[str]]:
    """(name, argv) of the per-request tracer this kernel can run."""
    if not KPROBE_EVENTS.exists():
        return "trace-bpfcc block:block_rq_complete (no kprobes: biosnoop cannot attach)", TRACE_EVERY_REQUEST
    if Path("/sys/kernel/debug/kprobes").exists():
        return "biosnoop-bpfcc", [BIOSNOOP]
    return "biosnoop-bpfcc", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              f"mount -t debugfs none /sys/kernel/debug && exec {BIOSNOOP}"]


class Tracer:
    def __init__(self, workdir: Path):
        self.name, self.command = tracer_command()
        self.out = workdir / "tracer.out"
        self.err = workdir / "tracer.err"
        self.proc: subprocess.Popen | None = None

    def start(self, dev: str, timeout: float = 180.0) -> None:
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        # Its header and lines are block-buffered: reads until output appears
        # prove the probes are attached and the perf buffer is read.
        deadline = time.monotonic() + timeout
        while self.out.stat().st_size == 0:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.proc.returncode}: {self.err.read_text().strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{self.name} produced nothing in {timeout:.0f} s")
            few_reads(dev)
            time.sleep(0.2)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: these tools have no handler, they just die
        self.proc.wait(30)
        self.out.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bpf_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0, help="fio run time per mode and round")
    parser.add_argument("--allow-idle", action="store_true", help="do not hold /dev/cpu_dma_latency at 0")
    args = parser.parse_args(argv if argv is not None else [])
    missing = [what for what, ok in (("root", os.geteuid() == 0), ("fio", shutil.which("fio")),
                                     (BIOSNOOP, os.path.exists(BIOSNOOP)), (TRACE, os.path.exists(TRACE))) if not ok]
    if missing:
        print(f"bpf_overhead: needs {', '.join(missing)} (scripts/setup.sh installs fio and bpfcc-tools); skipped")
        return
    sys.path.insert(0, str(ROOT))
    iops: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}  # the tool's CPU seconds per second of fio
    with tempfile.TemporaryDirectory(prefix="peripety-bpf-bench-") as tmp, TmpfsLoop() as loop, \
            cpus_awake(not args.allow_idle) as idle:
        tools = {"baseline": None, "peripetyd": Peripetyd(Path(tmp) / "daemon"), "per-I/O tracer": Tracer(Path(tmp))}
        print(f"{loop.dev} --direct-io=on over /dev/shm ({loop.size_mb} MiB); fio 4k randread O_DIRECT psync, "
              f"{args.seconds:g} s per mode, {args.rounds} rounds; {idle}")
        print(f"per-I/O tracer: {tools['per-I/O tracer'].name}")
        fio_iops(loop.dev, 1.0)  # warm-up
        for rnd in range(args.rounds):
            for mode, tool in tools.items():
                if tool is not None:
                    tool.start(loop.dev)
                try:
                    pid = tool.pid if tool is not None else None
                    before = cpu_seconds(pid)
                    iops[mode].append(fio_iops(loop.dev, args.seconds))
                    cpu[mode].append((cpu_seconds(pid) - before) / args.seconds)
                finally:
                    if tool is not None:
                        tool.stop()
            print(f"round {rnd + 1}: " + "  ".join(f"{m} {iops[m][-1]:,.0f}" for m in MODES), flush=True)
    base = statistics.median(iops["baseline"])
    print(f"{'mode':<14} {'median IOPS':>12} {'ratio':>6} {'tool CPU':>9}   min..max IOPS")
    for mode in MODES:
        med = statistics.median(iops[mode])
        print(f"{mode:<14} {med:12,.0f} {med / base:6.3f} {statistics.median(cpu[mode]) * 100:8.1f}%   "
              f"{min(iops[mode]):,.0f}..{max(iops[mode]):,.0f}")
    paired = {m: statistics.median(x / b for x, b in zip(iops[m], iops["baseline"])) for m in MODES}
    print(f"peripetyd --bpf / baseline: {statistics.median(iops['peripetyd']) / base:.3f} (target >= 0.98; "
          f"median of per-round ratios {paired['peripetyd']:.3f}); per-I/O tracer / baseline: "
          f"{statistics.median(iops['per-I/O tracer']) / base:.3f} (per-round {paired['per-I/O tracer']:.3f})")


if __name__ == "__main__":
    main(sys.argv[1:])
