"""Events/s through the whole daemon pipeline into journald, against a bare
``journal.send`` loop of the same events, in the same run.

Starts a journald of its own (namespace ``prptpipe``, removed at the end) and
generates kmsg-format logs of N storage lines, each one event (block I/O
error, ext4 mount, ext4 error, SCSI sense key, XFS writeback error). Then,
alternating, best of R rounds:

  peripetyd   ``peripetyd --replay LOG --store journal:prptpipe`` as a
              subprocess: kmsg parse, rules, device timeline (udev), merge,
              storms, root cause, journal store (native protocol to the
              namespace socket), varlink Synchronize at the end. On two logs:
              - known disks, storm_window=0: the lines name this machine's
                block devices (/sys/block), which the timeline resolves; the
                config sets ``storm_window = 0`` so no event is folded. The
                headline figure.
              - 676 unknown disks, default config: ``sdaa``..``sdzz``, which
                exist nowhere, so no (type, device) key reaches the storm
                burst of 10: every first sight of a name takes the
                resolver's miss path, every disk keeps a storm window open.
              Its fixed cost (interpreter, imports, rules, udev enumeration)
              is measured on a one-line log and subtracted.
  send        the events peripetyd stored (known disks), read back and
              turned into the same journal fields, written by
              ``systemd.journal.send(**fields)`` (which also adds CODE_FILE/
              LINE/FUNC from the caller's stack, as for any caller), then
              Synchronize. Its own loop time: no start-up.
  sendv       the same through ``systemd.journal.sendv("K=V", ...)``: the C
              call alone, no stack walk: the tightest bare loop.

``sd_journal_sendv`` always writes to ``/run/systemd/journal/socket``, so
the bare loops run in a private mount namespace (``unshare -m``) where the
namespace journald's socket is bind-mounted over that path: same journald,
same entries, same synchronization as the daemon's run. Prints events/s of
each and the ratios (target peripetyd / send >= 0.7), with the CPU seconds
of the sending process (whole process: start-up included) and of journald.
``--profile`` runs the daemon once per log under cProfile and prints its top
costs.

journald's socket queue: a sender waits whenever journald has
``net.unix.max_dgram_qlen`` datagrams queued. The kernel's default is 10;
systemd as PID 1 raises it to 512 at boot (src/core/main.c,
``bump_unix_max_dgram_qlen``, ``DEFAULT_UNIX_MAX_DGRAM_QLEN``), so every
journald on a systemd host has 512. A socket takes the value in force when
it is made, so ``--dgram-qlen N`` (default 512, as systemd; 0 leaves the
machine's) raises the sysctl only while the benchmark's journald makes its
sockets and puts the old value back at once. The figures print which queue
length journald has.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERIPETYD = Path(sys.executable).with_name("peripetyd")
NAMESPACE = "prptpipe"
# (line template, event type it must produce); {d} a disk, {p} a partition suffix, {n} {m} numbers.
TEMPLATES = [
    ("I/O error, dev {d}, sector {n} op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2", "BLK_IO_ERROR"),
    ("EXT4-fs ({d}{p}): mounted filesystem 6f1c{m:04x}-4167-4228-a11e-d4ae7760997b r/w with ordered data mode. "
     "Quota mode: none.", "FS_MOUNTED"),
    ("EXT4-fs error (device {d}{p}): ext4_lookup:1602: inode #{m}: comm docker: deleted inode referenced: {n}",
     "FS_ERROR"),
    ("sd 3:0:{m}:0: [{d}] tag#3 Sense Key : Medium Error [current] ", "SCSI_SENSE_KEY"),
    ("XFS ({d}{p}): writeback error on sector {n}", None),
]
DISKS = [f"sd{a}{b}" for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
DGRAM_QLEN = Path("/proc/sys/net/unix/max_dgram_qlen")
SYSTEMD_DGRAM_QLEN = 512
"""What systemd (PID 1) sets net.unix.max_dgram_qlen to at boot when it is lower."""


@contextlib.contextmanager
def dgram_qlen(at_least: int):
    """net.unix.max_dgram_qlen raised to ``at_least`` (if lower) for the
    sockets made inside; the old value back after. Yields the value
    those sockets get."""
    old = int(DGRAM_QLEN.read_text())
    if not at_least or old >= at_least:
        yield old
        return
    DGRAM_QLEN.write_text(f"{at_least}\n")
    try:
        yield at_least
    finally:
        DGRAM_QLEN.write_text(f"{old}\n")


def generate(path: Path, lines: int, disks: list[str], suffix: str) -> None:
    """``suffix`` names a partition in file-system lines (``sdab1``)."""
    out = []
    for i in range(lines):
        template = TEMPLATES[i % len(TEMPLATES)][0]
        disk = disks[(i // len(TEMPLATES)) % len(disks)]
        text = template.format(d=disk, p=suffix, n=8 * i + 2048, m=i % 65536)
        out.append(f"3,{i},{1_000_000 + 10 * i},-;{text}\n")
    path.write_text("".join(out))


def check_templates() -> None:
    """Each template must make one event of a known type: a rule change that
    drops one would make the benchmark count the wrong thing."""
    from peripety.rules import RuleSet

    rules = RuleSet.builtin()
    for template, expected in TEMPLATES:
        match = rules.match(template.format(d="sdab", p="1", n=4096, m=7))
        if match is None or (expected and match.event_type != expected):
            raise SystemExit(f"template no longer gives {expected or 'an event'}: {template!r} -> {match}")


def journald_pid(namespace: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"systemd-journald") and argv[1:2] == [namespace.encode()]:
                return int(entry.name)
    raise SystemExit(f"no systemd-journald {namespace} process")


def journald_gone(namespace: str) -> str:
    """Why journald refused, when it is because its process is gone: a test
    stopping "every systemd-journal" stops namespace instances too."""
    try:
        journald_pid(namespace)
        return ""
    except SystemExit:
        return f"\n(the systemd-journald {namespace} process is gone: something stopped it during the run)"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_events(namespace: str) -> int:
    """Every event entry in the benchmark's own namespace: peripetyd's and
    the bare loops' (those are sent by this python, so a reader that trusts
    only peripetyd's entries would skip them)."""
    from peripety.stores import EventFilter
    from peripety.stores.journal import JournalStore

    store = JournalStore(namespace, include_untrusted=True)
    try:
        return sum(1 for _ in store.query(EventFilter()))
    finally:
        store.close()


class Measured:
    """Wall time, the sender's CPU and journald's CPU of one timed run."""

    def __init__(self, journald: int):
        self.journald = journald

    def __enter__(self):
        self.t0, self.c0, self.j0 = time.perf_counter(), children_cpu(), cpu_seconds(self.journald)
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = children_cpu() - self.c0
        self.journald_cpu = cpu_seconds(self.journald) - self.j0


def run_daemon(log: Path, config: Path, state: Path, namespace: str, profile: Path | None = None) -> None:
    shutil.rmtree(state, ignore_errors=True)
    cmd = [str(PERIPETYD), "--replay", str(log), "--store", f"journal:{namespace}", "--no-blk-info-dump",
           "--state-dir", str(state), "--config", str(config)]
    if profile is not None:
        cmd[:1] = [sys.executable, "-m", "cProfile", "-o", str(profile), str(PERIPETYD)]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"peripetyd --replay failed ({done.returncode}): {done.stderr.strip()}"
                         f"{journald_gone(namespace)}")


def run_bare(mode: str, fields_path: Path, namespace: str) -> float:
    """The bare loop in a private mount namespace; returns its own loop time."""
    from peripety.stores.journald_socket import runtime_dir

    socket_path = runtime_dir(namespace) / "socket"
    script = (f"mount --bind {socket_path} /run/systemd/journal/socket && "
              f"exec {sys.executable} -m benchmarks.pipeline --bare {mode} {fields_path} --namespace {namespace}")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bare {mode} loop failed ({done.returncode}): {done.stderr.strip()}"
                         f"{journald_gone(namespace)}")
    return float(done.stdout.split()[-1])


def bare_loop(mode: str, fields_path: Path, namespace: str) -> None:
    """Child side of run_bare: send every entry, synchronize, print the time."""
    from systemd import journal

    from peripety.stores.journald_socket import synchronize

    entries = json.loads(fields_path.read_text())
    if mode == "sendv":
        entries = [[f"{k}={v}" for k, v in e.items()] for e in entries]
    send, sendv = journal.send, journal.sendv
    t0 = time.perf_counter()
    if mode == "send":
        for fields in entries:
            send(**fields)
    else:
        for lines in entries:
            sendv(*lines)
    synchronize(namespace)
    print(f"{time.perf_counter() - t0:.6f}")


def stored_fields(namespace: str, limit: int, skip: int = 0) -> list[dict]:
    """The journal fields of ``limit`` stored events after the first ``skip``."""
    from peripety.stores import EventFilter
    from peripety.stores.journal import JournalStore, journal_fields

    store = JournalStore(namespace)
    out = []
    for i, event in enumerate(store.query(EventFilter())):
        if i < skip:
            continue
        fields = journal_fields(event)
        if any(isinstance(v, list) for v in fields.values()):
            raise SystemExit("an event has repeated fields, which journal.send cannot write")
        out.append(fields)
        if len(out) == limit:
            break
    store.close()
    return out


def print_profile(path: Path, title: str, top: int = 14) -> None:
    import io
    import pstats

    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("tottime").print_stats(top)
    lines = buf.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print(f"cProfile of {title}, top by own time:")
    for line in lines[start - 1:]:
        if line.strip():
            print("  " + line.replace(str(ROOT) + "/", "").replace("/usr/lib/python3.11/", ""))


SCENARIOS = {
    # label: (disks, partition suffix for file-system lines, config text)
    "known disks, storm_window=0": (None, "", "[daemon]\nstorm_window = 0\n"),
    "676 unknown disks, default config": (DISKS, "1", ""),
}


def known_disks() -> list[str]:
    """This machine's block devices: the device timeline resolves them."""
    return sorted(p.name for p in Path("/sys/block").iterdir())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also run the daemon once under cProfile")
    parser.add_argument("--dgram-qlen", type=int, default=SYSTEMD_DGRAM_QLEN, metavar="N",
                        help="journald's socket queue length: net.unix.max_dgram_qlen raised to N while the "
                             "benchmark's journald starts (default 512, as systemd sets it at boot; 0: as it is)")
    parser.add_argument("--bare", nargs=2, metavar=("MODE", "FIELDS"), help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default=NAMESPACE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv if argv is not None else [])
    if args.bare:
        bare_loop(args.bare[0], Path(args.bare[1]), args.namespace)
        return
    sys.path.insert(0, str(ROOT))
    from tests.harness.services import private_journald

    check_templates()
    n = args.events
    with contextlib.ExitStack() as stack:
        with dgram_qlen(args.dgram_qlen) as qlen:  # only while journald makes its sockets
            ns = stack.enter_context(private_journald(NAMESPACE))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="peripety-bench-")))
        one, fields_path, state = tmp / "one.kmsg", tmp / "fields.json", tmp / "state"
        one.write_text("6,0,1000000,-;random: crng reseeded on system resumption\n")
        runs = {}  # label -> (log, config)
        for i, (label, (disks, suffix, config_text)) in enumerate(SCENARIOS.items()):
            disks = disks or known_disks()
            runs[label] = (tmp / f"log{i}.kmsg", tmp / f"config{i}.conf")
            generate(runs[label][0], n, disks, suffix)
            runs[label][1].write_text(config_text)
            print(f"{label}: {n:,} storage lines -> {n:,} events ({len(TEMPLATES)} line kinds x {len(disks)} disks)")
        headline = next(iter(SCENARIOS))
        journald = journald_pid(ns)
        print(f"journald namespace {ns} (socket queue {qlen} datagrams); best of {args.rounds} rounds; bare loops "
              f"send the events of '{headline}' as peripetyd stored them")

        fixed = []
        for _ in range(args.rounds):
            with Measured(journald) as m:
                run_daemon(one, runs[headline][1], state, ns)
            fixed.append(m.wall)
        fixed_cost = min(fixed)

        best: dict[str, tuple[float, Measured]] = {}  # label -> (seconds, run)
        stored = 0

        def keep(label: str, m: Measured, seconds: float | None = None) -> None:
            seconds = m.wall if seconds is None else seconds
            if label not in best or seconds < best[label][0]:
                best[label] = (seconds, m)

        for rnd in range(args.rounds):
            for label, (log, config) in runs.items():
                with Measured(journald) as m:
                    run_daemon(log, config, state, ns)
                keep(f"peripetyd, {label}", m, m.wall - fixed_cost)
                stored += n
                if count_events(ns) != stored:
                    raise SystemExit(f"after peripetyd ({label}): {count_events(ns)} events stored, expected {stored}")
                if rnd == 0 and label == headline:
                    fields_path.write_text(json.dumps(stored_fields(ns, n, skip=stored - n)))
            for mode in ("send", "sendv"):
                with Measured(journald) as m:
                    loop_time = run_bare(mode, fields_path, ns)
                keep(f"journal.{mode} loop", m, loop_time)
                stored += n
        total = count_events(ns)
        if total != stored:
            raise SystemExit(f"{total} events in the journal, expected {stored}")

        print(f"peripetyd fixed cost (one-line log: start-up, rules, udev enumeration), "
              f"subtracted below: {fixed_cost:.3f} s")
        print(f"{'':<48} {'seconds':>8} {'events/s':>10}   CPU s: sender journald")
        for label, (seconds, m) in best.items():
            print(f"{label:<48} {seconds:8.3f} {n / seconds:10,.0f}   {m.cpu:14.2f} {m.journald_cpu:8.2f}")
        send, sendv = best["journal.send loop"][0], best["journal.sendv loop"][0]
        for label in runs:
            d = best[f"peripetyd, {label}"][0]
            print(f"ratio peripetyd ({label}) / journal.send: {send / d:.2f}; "
                  f"/ journal.sendv: {sendv / d:.2f}; incl. start-up / journal.send: {send / (d + fixed_cost):.2f}")
        if args.profile:
            for label, (log, config) in runs.items():
                prof = tmp / "daemon.prof"
                run_daemon(log, config, state, ns, profile=prof)
                print_profile(prof, f"peripetyd --replay, {label}")


if __name__ == "__main__":
    main(sys.argv[1:])
