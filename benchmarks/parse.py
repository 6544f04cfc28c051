"""How fast ``prpt parse`` turns a large kernel log into events.

Generates a 1,000,000-line log in /dev/kmsg record format (90 % everyday
kernel noise, 10 % storage lines: every recorded line of
tests/fixtures/lines/, i.e. every family the built-in rules cover), then
times, in the same run:

  floor      Python reading the same lines and splitting the kmsg prefix
  rules      RuleSet.match on every line's text, no prefilter: what noise
             costs the rule engine (one dict lookup; a bucket one regex)
  library    in process: LogFile.matches -> events -> JSON lines (the
             StorageEvent path), and LogFile.json_lines (the direct JSON
             path prpt parse --jsonl uses)
  cli        the real ``prpt parse --jsonl`` as a subprocess, output to
             /dev/null: one process (-j 1) and the default (one worker per
             CPU for files of 16 MB or more)

and prints lines/s and each one's ratio to the floor (with --runs N: the
floor and the commands N times, interleaved, and their medians; the ratios
are to the median floor of the same runs). Targets: >= 1,000,000
lines/s, within 4x of the floor. It also prints the size of the built-in
rule set (specific rules and subsystem grammars), how long it takes to load
(compiling every regex, and from the compiled-rules cache that every
process after the first reads: rules/cache.py), how long 20,000 site
rules take to load (half with a starts_with prefix, half without: target
under 2 s, linear), and how fast they then match. The event count is checked against the
number of storage lines written, so a fast but wrong parser shows up. On a
shared machine the multi-process figure depends on idle cores: the CPU time
of the workers is printed too.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from peripety.sources.parallel import default_workers

ROOT = Path(__file__).resolve().parent.parent
LINES_DIR = ROOT / "tests" / "fixtures" / "lines"
PRPT = Path(sys.executable).with_name("prpt")

# Everyday kernel lines (usb, net, audit, systemd, firmware, cpu, memory,
# acpi, pci, ...); {n} {m} {h} vary per line so no two are alike.
NOISE = [
    (6, "usb {n}-{m}: new high-speed USB device number {n} using xhci_hcd", "usb"),
    (6, "usb {n}-{m}: New USB device found, idVendor=046d, idProduct=c52b, bcdDevice=12.{m}", "usb"),
    (6, "usb {n}-{m}: Product: USB Receiver", "usb"),
    (3, "usb {n}-{m}: device descriptor read/64, error -71", "usb"),
    (6, "hid-generic 0003:046D:C52B.{h}: input,hidraw{m}: USB HID v1.11 Keyboard [Logitech USB Receiver] on usb-0000:00:14.0-{m}/input0", None),
    (6, "e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx", "net"),
    (6, "e1000e 0000:00:1f.6 eno1: NIC Link is Down", "net"),
    (6, "IPv6: ADDRCONF(NETDEV_CHANGE): wlp{m}s0: link becomes ready", None),
    (6, "wlp{m}s0: authenticate with 3c:84:6a:{h}:1f:20 (local address=dc:41:a9:0b:{h}:7e)", None),
    (6, "br-{h}: port {m}(veth{h}) entered forwarding state", None),
    (4, "TCP: request_sock_TCP: Possible SYN flooding on port {n}. Sending cookies.", None),
    (5, 'audit: type=1400 audit(1732502641.{n}:{m}): apparmor="STATUS" operation="profile_load" profile="unconfined" name="snap-update-ns.firefox" pid={n} comm="apparmor_parser"', None),
    (5, "audit: type=1130 audit(1732502641.{n}:{m}): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='unit=systemd-tmpfiles-clean comm=\"systemd\" exe=\"/usr/lib/systemd/systemd\" hostname=? addr=? terminal=? res=success'", None),
    (6, "systemd[1]: Started session-{n}.scope - Session {n} of User root.", None),
    (6, "systemd[1]: Starting systemd-tmpfiles-clean.service - Cleanup of Temporary Directories...", None),
    (6, "systemd-journald[{n}]: Data hash table of /var/log/journal/{h}/system.journal has a fill level at 75.0 (8535 of 11377 items), suggesting rotation.", None),
    (6, "iwlwifi 0000:00:14.3: loaded firmware version 77.{h}.0 so-a0-gf-a0-77.ucode op_mode iwlmvm", None),
    (4, "i915 0000:00:02.0: [drm] *ERROR* Failed to load DMC firmware i915/adlp_dmc.bin. Disabling runtime power management.", None),
    (6, "Bluetooth: hci0: Firmware revision 0.{m} build {n} week 37 2021", None),
    (4, "mce: CPU{m}: Core temperature above threshold, cpu clock throttled (total events = {n})", None),
    (6, "mce: CPU{m}: Package temperature/speed normal", None),
    (6, "smpboot: CPU {m} is now offline", None),
    (6, "x86/cpu: SGX disabled by BIOS.", None),
    (4, "perf: interrupt took too long ({n} > {m}), lowering kernel.perf_event_max_sample_rate to 63000", None),
    (3, "Out of memory: Killed process {n} (chrome) total-vm:{n}kB, anon-rss:{m}kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:{m}kB oom_score_adj:300", None),
    (4, "chrome invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=300", None),
    (6, "Memory: {n}K/16579192K available (18432K kernel code, 3216K rwdata, 13764K rodata, 4712K init, 4756K bss, {m}K reserved, 0K cma-reserved)", None),
    (6, "ACPI: \\_SB_.PCI0.LPCB.EC0_: interrupt blocked", None),
    (6, "ACPI: button: Lid Switch [LID0]", None),
    (4, "ACPI BIOS Error (bug): Could not resolve symbol [\\_SB.PC00.LPCB.HEC.TSR{m}], AE_NOT_FOUND (20230628/psargs-330)", None),
    (6, "pci 0000:00:1c.{m}: [8086:7ab8] type 01 class 0x060400 PCIe Root Port", "pci"),
    (6, "pcieport 0000:00:1c.{m}: PME: Signaling with IRQ {n}", "pci"),
    (4, "pcieport 0000:00:1c.{m}: AER: Corrected error message received from 0000:0{m}:00.0", "pci"),
    (6, "thermal thermal_zone{m}: failed to read out thermal zone (-61)", None),
    (6, "rfkill: input handler disabled", None),
    (6, "input: Logitech MX Master 3 as /devices/virtual/misc/uhid/0005:046D:B023.{h}/input/input{n}", None),
    (6, "snd_hda_intel 0000:00:1f.3: bound 0000:00:02.0 (ops i915_audio_component_bind_ops [i915])", None),
    (6, "kvm_intel: L1TF CPU bug present and SMT on, data leak possible.", None),
    (6, "nf_conntrack: default automatic helper assignment has been turned off for security reasons", None),
    (6, "wireguard: WireGuard 1.0.0 loaded. See www.wireguard.com for information.", None),
    (6, "fuse: init (API version 7.{m})", None),
    (6, "mmc{m}: new high speed SDHC card at address {h}", None),
    (6, "random: crng reseeded on system resumption", None),
    (6, "PM: suspend exit", None),
    (7, "psmouse serio{m}: synaptics: queried max coordinates: x [..{n}], y [..{m}]", None),
]
STORAGE_FRACTION = 0.10
STORAGE_PRIO = 3


def storage_lines() -> list[str]:
    """Every recorded storage line the rules engineer keeps per rule."""
    texts = []
    for path in sorted(LINES_DIR.glob("*.toml")):
        entries = tomllib.loads(path.read_text()).get("line", [])
        # user-space daemons' lines (identifier = ...) never come through kmsg
        texts += [e["text"] for e in entries if not e.get("identifier")]
    if not texts:
        raise SystemExit(f"no recorded storage lines under {LINES_DIR}")
    return texts


def generate(path: Path, lines: int, seed: int = 2025) -> int:
    """Write the log; return how many storage records it holds."""
    rng = random.Random(seed)
    storage = storage_lines()
    usec = 1_000_000
    written = storage_count = seq = 0
    out = []
    while written < lines:
        usec += rng.randint(1, 20_000)
        if rng.random() < STORAGE_FRACTION:
            prio, text, subsystem = STORAGE_PRIO, rng.choice(storage), None
            storage_count += 1
        else:
            prio, template, subsystem = rng.choice(NOISE)
            text = template.format(n=rng.randint(1, 65535), m=rng.randint(0, 9), h=f"{rng.randint(0, 0xFFFF):04x}")
        out.append(f"{prio},{seq},{usec},-;{text}\n")
        written += 1
        if subsystem and written < lines and rng.random() < 0.5:
            out.append(f" SUBSYSTEM={subsystem}\n")
            written += 1
        seq += 1
    path.write_text("".join(out))
    return storage_count


def time_floor(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            prefix, _, text = line.partition(";")
            count += 1
    return time.perf_counter() - start, count


def time_rules(path: Path) -> tuple[float, int]:
    """The rule engine alone on every line (noise included), no prefilter."""
    from peripety.rules import RuleSet

    with open(path, encoding="utf-8", errors="replace") as f:
        records = [(int(line[: line.index(",")]) & 7, line.partition(";")[2])
                   for line in f if not line.startswith(" ")]
    match = RuleSet.builtin().match
    start = time.perf_counter()
    found = sum(1 for level, text in records if match(text, level))
    return time.perf_counter() - start, found


def time_library(path: Path, direct_json: bool) -> tuple[float, int]:
    from peripety.classify import events_from_matches
    from peripety.cli.output import EventWriter
    from peripety.rules import RuleSet
    from peripety.sources.logfile import LogFile

    start = time.perf_counter()
    ruleset = RuleSet.builtin()
    with open(os.devnull, "w") as sink, LogFile.open(path, "kmsg") as logfile:
        if direct_json:
            written = 0
            for line in logfile.json_lines(ruleset, count_malformed=False):
                sink.write(line)
                written += 1
            return time.perf_counter() - start, written
        matches = logfile.matches(ruleset, count_malformed=False)
        writer = EventWriter(sink, "jsonl", flush_each=False)
        for event in events_from_matches(matches):
            writer.write(event)
    return time.perf_counter() - start, writer.written


def time_cli(path: Path, *extra: str) -> tuple[float, int, float]:
    """Wall time of the whole command, interpreter start-up included, and
    the CPU time of the command and its workers."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(
        [str(PRPT), "parse", "--jsonl", *extra, str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    matched = 0
    if "--stats" in extra:
        # "<file>: format kmsg: N lines read, M matched, K skipped (malformed)"
        matched = int(done.stderr.rsplit(" matched", 1)[0].rsplit(" ", 1)[1])
    return elapsed, matched, cpu


USER_RULES = 20_000


def user_rules_toml(count: int) -> str:
    """``count`` site rules: half dispatched by prefix, half without one
    (asked through the RE2 set)."""
    out = []
    for n in range(count):
        if n % 2:
            out.append(f"[[collector.regexs]]\nstarts_with = 'drv{n} '\n"
                       f"regex = '^drv{n} (?P<kdev>sd[a-z]+) failed (?P<why>\\w+)'\n"
                       f"sub_system = 'SCSI'\nevent_type = 'DRV_{n % 50}'\n")
        else:
            out.append(f"[[collector.regexs]]\nregex = 'vendor{n}: (?P<kdev>sd[a-z]+) gone'\n"
                       f"sub_system = 'SCSI'\nevent_type = 'VENDOR_{n % 50}'\n")
    return "".join(out)


def time_rule_load(path: Path, count: int = USER_RULES) -> None:
    """Built-in rule counts, then the load and match time of ``count`` site rules."""
    from peripety.rules import RuleSet, engine

    loads = {}
    for cached in (False, True):  # compiling every regex, then from the compiled-rules cache
        os.environ["PERIPETY_NO_RULE_CACHE"] = "" if cached else "1"
        RuleSet.builtin()  # (writes the cache when it was not there)
        engine._BUILTIN = None  # time a cold load of the shipped rules,
        re.purge()  # with no regex left compiled in re's cache by the runs before
        start = time.perf_counter()
        builtin = RuleSet.builtin()
        loads[cached] = time.perf_counter() - start
        engine._BUILTIN = None
    del os.environ["PERIPETY_NO_RULE_CACHE"]
    builtin = RuleSet.builtin()
    grammars = len(builtin.grammars)
    print(f"built-in rules: {len(builtin.rules) - grammars} specific + {grammars} grammars"
          f" (loaded in {loads[True]:.3f} s from the compiled-rules cache, {loads[False]:.3f} s compiling)")
    for n in (count // 5, count):
        text = user_rules_toml(n)
        start = time.perf_counter()
        rules = builtin.with_user_rules(RuleSet.from_toml(text, path="peripetyd.conf").rules)
        elapsed = time.perf_counter() - start
        print(f"{'load ' + format(n, ',') + ' user rules':<28} {elapsed:7.3f} s  ({elapsed / n * 1e6:.0f} us/rule)")
    with open(path, encoding="utf-8", errors="replace") as f:
        texts = [line.partition(";")[2] for line, _ in zip(f, range(200_000)) if not line.startswith(" ")]
    match = rules.match
    start = time.perf_counter()
    found = sum(1 for text in texts if match(text, 3))
    elapsed = time.perf_counter() - start
    print(f"{'match with them':<28} {elapsed / len(texts) * 1e9:12,.0f} ns/line"
          f"  ({found:,} of {len(texts):,} lines matched)")


def _median(runs: int, measure):
    """The median time of ``runs`` calls of ``measure`` (which returns
    (seconds, count)), with the count of the last."""
    results = [measure() for _ in range(runs)]
    return statistics.median(t for t, _ in results), results[-1][1]


def report(name: str, elapsed: float, lines: int, floor: float, cpu: float | None = None) -> None:
    line = f"{name:<28} {elapsed:7.3f} s  {lines / elapsed:12,.0f} lines/s  {elapsed / floor:5.2f}x floor"
    if cpu is not None:
        line += f"  ({cpu:.2f} s CPU)"
    print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parse", description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="PATH", help="write the generated log here and keep it")
    parser.add_argument("--runs", type=int, default=1, metavar="N",
                        help="time the floor and the commands N times, interleaved, and print medians "
                        "(on a shared machine: other work shifts single runs)")
    args = parser.parse_args(argv if argv is not None else [])
    with tempfile.TemporaryDirectory(prefix="peripety-bench-") as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "kernel.kmsg"
        storage = generate(path, args.lines)
        size = path.stat().st_size
        print(f"log: {args.lines:,} lines, {size / 1e6:.1f} MB, {storage:,} storage records, prpt: {PRPT}")
        floor, counted = _median(args.runs, lambda: time_floor(path))
        report("floor (read + split)", floor, counted, floor)
        elapsed, found = time_rules(path)
        print(f"{'rules, every line':<28} {elapsed:7.3f} s  {elapsed / counted * 1e9:12,.0f} ns/line"
              f"  ({found:,} matched, noise included)")
        for name, direct in (("library, StorageEvent", False), ("library, direct JSON", True)):
            elapsed, events = _median(args.runs, lambda: time_library(path, direct))
            report(name, elapsed, args.lines, floor)
            if events != storage:
                print(f"  WRONG: {events:,} events for {storage:,} storage records")
        workers = default_workers()
        runs = {name: [] for name in ("-j 1", "cpus", "stats", "floor")}
        for _ in range(args.runs):  # interleaved, so a burst of other work hits all alike
            runs["floor"].append(time_floor(path)[0])
            runs["-j 1"].append(time_cli(path, "--format", "kmsg", "-j", "1"))
            runs["cpus"].append(time_cli(path, "--format", "kmsg"))
            runs["stats"].append(time_cli(path, "--stats"))
        floor = statistics.median(runs["floor"])
        if args.runs > 1:
            print(f"{'floor, median of the runs':<28} {floor:7.3f} s  (runs: "
                  + ", ".join(f"{t:.3f}" for t in runs["floor"]) + ")")
        for label, key in (("prpt parse --jsonl -j 1", "-j 1"), (f"prpt parse --jsonl ({workers} cpu)", "cpus"),
                           ("prpt parse --jsonl --stats", "stats")):
            elapsed = statistics.median(t for t, _, _ in runs[key])
            cpu = statistics.median(c for _, _, c in runs[key])
            report(label, elapsed, args.lines, floor, cpu)
            if args.runs > 1:
                print(f"{'':<28} runs: " + ", ".join(f"{t:.3f}" for t, _, _ in runs[key]))
        matched = runs["stats"][-1][1]
        if matched != storage:
            print(f"  WRONG: {matched:,} matched for {storage:,} storage records")
        time_rule_load(path)

if __name__ == "__main__":
    main(sys.argv[1:])
