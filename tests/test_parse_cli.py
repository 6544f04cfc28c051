"""``prpt parse``: CliRunner tests and a real subprocess run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from peripety.cli import main

LOGS = Path(__file__).parent / "fixtures" / "logs"
PRPT = Path(sys.executable).with_name("prpt")


def run(*args, input=None):
    return CliRunner().invoke(main, ["parse", *args], input=input)


def test_jsonl_events_carry_the_line_and_the_match():
    result = run("--jsonl", str(LOGS / "devkmsg.kmsg"))
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 57  # 45 named by specific rules, 10 generic (loop capacity changes), 2 ratelimit summaries
    io = next(e for e in events if e["event_type"] == "BLK_IO_ERROR")
    assert io["raw_msg"].startswith("I/O error, dev loop")
    assert io["kdev"].startswith("loop") and io["sub_system"] == "block"
    assert io["severity"] == "Error" and io["extension"]["sector"].isdigit()
    assert io["sources"] == ["file"] and io["cur_blk_info"] is None
    assert not [e for e in events if "forged" in e["raw_msg"]]


def test_json_is_pretty_and_blank_line_separated():
    result = run("-J", "--format", "syslog", str(LOGS / "journal-short.syslog"))
    assert result.exit_code == 0
    blocks = result.stdout.strip("\n").split("\n\n")
    assert len(blocks) == 58  # 44 specific, 12 generic (loop capacity changes), 2 ratelimit summaries
    assert all(json.loads(b)["event_type"] for b in blocks)
    assert blocks[0].startswith("{\n  ")


def test_text_lines_and_stats_on_stdin():
    text = (LOGS / "dmesg-r.kmsg").read_text()
    result = run("--stats", "-", input=text)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 49  # 37 specific, 10 generic (loop capacity changes), 2 ratelimit summaries
    # dmesg -r has no wall-clock time: the kernel stamp alone, as dmesg -r showed it
    m = re.match(r"\[ *(\d+\.\d{6})\] (\w+) (\S+) (\S+) (.*)", lines[0])
    assert m, lines[0]
    assert f"{m.group(1)}]" in text
    assert m.group(2) in {"Error", "Info", "Warning", "Critical", "Notice"} and ":" in m.group(5)
    assert "<stdin>: format kmsg: 60 lines read, 49 matched, 0 skipped (malformed)" in result.stderr


def test_no_events_is_still_success(tmp_path):
    quiet = tmp_path / "quiet.log"
    quiet.write_text("[    1.000000] usb 1-1: new high-speed USB device number 2 using xhci_hcd\n")
    result = run(str(quiet))
    assert (result.exit_code, result.stdout) == (0, "")


def test_errors_name_the_file_and_exit_1(tmp_path):
    missing = tmp_path / "missing.log"
    result = run(str(missing))
    assert result.exit_code == 1 and str(missing) in result.stderr
    prose = tmp_path / "prose.txt"
    prose.write_text("hello\nworld\n")
    result = run(str(prose))
    assert result.exit_code == 1 and "cannot tell the log format" in result.stderr
    binary = tmp_path / "x.journal"
    binary.write_bytes(b"\0\1\2" * 100)
    assert run(str(binary)).exit_code == 1


def test_usage_errors_exit_2():
    assert run("--format", "csv", str(LOGS / "dmesg.txt")).exit_code == 2
    assert run("--no-such-option").exit_code == 2


def test_help_explains_formats_with_examples():
    result = run("--help")
    assert result.exit_code == 0
    for word in ("dmesg", "kmsg", "syslog", "journal-json", "Examples", "--resolve", "--stats"):
        assert word in result.stdout


def test_resolve_keeps_unknown_devices_unresolved():
    result = run("--jsonl", "--resolve", str(LOGS / "journal-short.syslog"))
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    mpath = [e for e in events if e["sub_system"] == "Multipath"]
    assert mpath and all(e["cur_blk_info"] is None for e in mpath)  # no mpatha on this machine


def test_real_prpt_subprocess_on_a_fixture():
    done = subprocess.run(
        [str(PRPT), "parse", "--jsonl", "--stats", str(LOGS / "journal.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(events) == 58  # 44 specific, 12 generic, 2 ratelimit summaries
    assert {e["sub_system"] for e in events} >= {"Multipath", "block"}
    assert "58 matched" in done.stderr
    # a broken pipe is no traceback
    head = subprocess.run(
        f"{PRPT} parse --jsonl {LOGS / 'journal.json'} | head -1", shell=True, capture_output=True, text=True
    )
    assert "Traceback" not in head.stderr and len(head.stdout.splitlines()) == 1
