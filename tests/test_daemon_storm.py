"""A storm of identical errors is counted exactly and keeps memory bounded.

The storm is fed through the real peripetyd with ``--replay`` (the kernel
rate-limits real block error lines to 10 per 5 s, so 100,000 real lines
cannot be produced here); everything after the source is the live pipeline.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest

from tests.harness.daemon import PERIPETYD

pytestmark = pytest.mark.root

LINE = "I/O error, dev {dev}, sector {sector} op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2"


def write_storm(path, lines: int, devices=("loop90", "loop91", "loop92")) -> None:
    with open(path, "w") as out:
        for i in range(lines):
            dev = devices[i % len(devices)]
            out.write(f"3,{i + 1},{1_000_000 + i},-;{LINE.format(dev=dev, sector=2048 + i)}\n")


def replay(path, db) -> int:
    """Run peripetyd --replay and return its peak RSS in KiB."""
    proc = subprocess.Popen(
        [PERIPETYD, "--replay", str(path), "--store", f"sqlite:{db}", "--no-blk-info-dump",
         "--state-dir", str(db.parent / "state")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read().decode()
    return usage.ru_maxrss


def stored(db) -> list[dict]:
    with sqlite3.connect(db) as conn:
        return [json.loads(row[0]) for row in conn.execute("SELECT json FROM events ORDER BY rowid")]


def test_storm_of_100000_lines_is_counted_exactly_in_bounded_memory(tmp_path):
    small, large = tmp_path / "small.kmsg", tmp_path / "large.kmsg"
    write_storm(small, 10_000)
    write_storm(large, 100_000)
    rss_small = replay(small, tmp_path / "small" / "events.db")
    rss_large = replay(large, tmp_path / "large" / "events.db")

    events = stored(tmp_path / "large" / "events.db")
    assert sum(e["count"] for e in events) == 100_000
    per_device = {}
    for e in events:
        per_device.setdefault(e["kdev"], []).append(e)
    assert sorted(per_device) == ["loop90", "loop91", "loop92"]
    for kdev, evs in per_device.items():
        # the burst passes individually, the rest is one aggregate per window
        aggregates = [e for e in evs if e["count"] > 1]
        assert aggregates, kdev
        assert all(e["last_timestamp"] for e in aggregates)
        assert len(evs) < 100, f"{kdev}: {len(evs)} events stored for one storm"
    # Ten times the lines must not mean noticeably more memory.
    assert rss_large - rss_small < 16 * 1024, (rss_small, rss_large)
