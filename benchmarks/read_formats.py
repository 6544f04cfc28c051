"""How fast each saved-log format is read, plain and compressed.

benchmarks/parse.py measures the kmsg fast path on a million lines; this one
writes the same lines (noise and storage lines alike, from the /dev/kmsg
corpus parse.py generates) in every format ``prpt parse`` reads and times
``LogFile.matches`` over each, so a change to the reader side shows up in the
format it touches:

  dmesg            [  123.456789] text                 (prefilter fast path)
  dmesg -T         [Tue Nov 25 03:44:01 2025] text      (prefilter fast path)
  syslog           Nov 25 03:44:01 host kernel: text    (every line parsed)
  short-monotonic  [  123.456789] host kernel: text    (every line parsed)
  journal-json     journalctl -o json                   (every line parsed)
  dmesg.gz / .xz   the dmesg file compressed

and prints lines/s for each. The matched count is printed too: every format
holds the same lines, so the counts must agree.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import tempfile
import time
from pathlib import Path

from benchmarks.parse import generate
from peripety.rules import RuleSet
from peripety.sources.logfile import LogFile


def convert(kmsg: Path, out_dir: Path) -> tuple[dict[str, Path], int]:
    """The kmsg records of ``kmsg`` written in each format; how many."""
    shapes = {
        "dmesg": lambda s, u, t: f"[{s:5d}.{u:06d}] {t}\n",
        "dmesg -T": lambda s, u, t: f"[Tue Nov 25 03:{s // 60 % 60:02d}:{s % 60:02d} 2025] {t}\n",
        "syslog": lambda s, u, t: f"Nov 25 03:{s // 60 % 60:02d}:{s % 60:02d} host kernel: {t}\n",
        "short-monotonic": lambda s, u, t: f"[{s:5d}.{u:06d}] host kernel: {t}\n",
        "journal-json": lambda s, u, t: json.dumps({
            "MESSAGE": t, "_TRANSPORT": "kernel", "SYSLOG_FACILITY": "0", "_HOSTNAME": "host",
            "__REALTIME_TIMESTAMP": str(1764042241000000 + s * 1_000_000 + u),
            "_SOURCE_MONOTONIC_TIMESTAMP": str(s * 1_000_000 + u)}) + "\n",
    }
    paths = {name: out_dir / name.replace(" ", "") for name in shapes}
    files = {name: open(path, "w") for name, path in paths.items()}
    records = 0
    with open(kmsg) as src:
        for line in src:
            if line.startswith(" "):
                continue  # dictionary lines: no place in these formats
            records += 1
            head, _, text = line.rstrip("\n").partition(";")
            seconds, usec = divmod(int(head.split(",")[2]), 1_000_000)
            for name, shape in shapes.items():
                files[name].write(shape(seconds, usec, text))
    for f in files.values():
        f.close()
    raw = paths["dmesg"].read_bytes()
    paths["dmesg.gz"] = out_dir / "dmesg.gz"
    paths["dmesg.gz"].write_bytes(gzip.compress(raw, 6))
    paths["dmesg.xz"] = out_dir / "dmesg.xz"
    paths["dmesg.xz"].write_bytes(lzma.compress(raw, preset=1))
    return paths, records


def time_read(path: Path, ruleset: RuleSet) -> tuple[float, int]:
    """Seconds to find every match in ``path`` (as prpt parse without --stats), matches."""
    start = time.perf_counter()
    with LogFile.open(path) as log:
        matched = sum(1 for _ in log.matches(ruleset, count_malformed=False))
    return time.perf_counter() - start, matched


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=300_000)
    args = parser.parse_args(argv)
    ruleset = RuleSet.builtin()
    with tempfile.TemporaryDirectory() as tmp:
        kmsg = Path(tmp) / "kernel.kmsg"
        generate(kmsg, args.lines)
        paths, lines = convert(kmsg, Path(tmp))
        for name, path in paths.items():
            elapsed, matched = time_read(path, ruleset)
            print(f"{name:<16} {path.stat().st_size / 1e6:7.1f} MB {elapsed:7.3f} s "
                  f"{lines / elapsed:12,.0f} lines/s  {matched:,} matched")


if __name__ == "__main__":
    main()
