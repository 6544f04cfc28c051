"""``prpt parse`` on saved logs keeps their time and host, reads compressed
and damaged files (tests/fixtures/logs/, recorded on the test VM: see its
README), and says so when input gives no record."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
import lzma
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from peripety.cli import main
from peripety.event import StorageEvent, set_output_utc
from peripety.rules import RuleSet
from peripety.sources import parallel
from peripety.sources.logfile import MAX_LINE, LogFile, from_text, read_records

LOGS = Path(__file__).parent / "fixtures" / "logs"
PRPT = Path(sys.executable).with_name("prpt")
RULES = RuleSet.builtin()


def parse(*args, input=None, env=None):
    return CliRunner().invoke(main, ["parse", *args], input=input, env=env)


def jsonl(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(autouse=True)
def _local_time():
    yield
    set_output_utc(False)  # --utc is process-wide; CliRunner runs in this process


# -- time ---------------------------------------------------------------------
def test_dmesg_stamps_stay_in_kernel_usec_in_input_order():
    events = jsonl(parse("--jsonl", str(LOGS / "dmesg.txt")))
    assert events
    stamps = {l.split("]")[0].strip("[ ") for l in (LOGS / "dmesg.txt").read_text().splitlines()}
    for event in events:
        seconds, usec = divmod(event["kernel_usec"], 1_000_000)
        assert f"{seconds}.{usec:06d}" in stamps
    usecs = [e["kernel_usec"] for e in events]
    assert usecs == sorted(usecs)


def test_boot_time_turns_kernel_stamps_into_timestamps():
    events = jsonl(parse("--jsonl", "--boot-time", "2026-11-26T04:11:28+00:00", str(LOGS / "dmesg.txt")))
    boot = dt.datetime(2026, 11, 26, 4, 11, 28, tzinfo=dt.timezone.utc)
    for event in events:
        ts = dt.datetime.fromisoformat(event["timestamp"])
        assert ts == boot + dt.timedelta(microseconds=event["kernel_usec"])
    stamps = [e["timestamp"] for e in jsonl(parse("--jsonl", "--utc", "--boot-time", "2026-11-26T04:11:28Z",
                                                   str(LOGS / "dmesg.txt")))]
    assert stamps == sorted(stamps) and all(s.endswith("+00:00") for s in stamps)


def test_text_shows_the_kernel_stamp_and_no_made_up_wall_time():
    result = parse(str(LOGS / "dmesg.txt"))
    first = result.stdout.splitlines()[0]
    assert re.match(r"\[ *\d+\.\d{6}\] (Error|Info|Warning|Notice|Critical) ", first), first
    dated = parse("--boot-time", "2025-01-02 03:04:05", str(LOGS / "dmesg.txt")).stdout.splitlines()[0]
    assert re.match(r"2025-01-02 03:(0[4-9]|[1-5]\d):\d\d\.\d{3} \[ *\d+\.\d{6}\] ", dated), dated


def test_dmesg_ctime_and_iso_stamps_are_wall_clock():
    ctime = jsonl(parse("--jsonl", str(LOGS / "dmesg-T.txt")))
    assert ctime and all(e["timestamp"].startswith("2026-11-26T04:") for e in ctime)
    assert all(e["kernel_usec"] is None for e in ctime)
    iso = jsonl(parse("--jsonl", "--utc", str(LOGS / "dmesg-iso.txt")))
    lines = (LOGS / "dmesg-iso.txt").read_text().splitlines()
    io = [l for l in lines if " I/O error, dev " in l]
    assert [e["timestamp"] for e in iso if e["event_type"] == "BLK_IO_ERROR"] == [
        l.split(" ")[0].replace(",", ".") for l in io]


def test_journalctl_short_monotonic_gives_events_with_host_and_kernel_time():
    """journalctl -k -o short-monotonic once gave 0 events: read as dmesg, every
    message started with 'vm kernel: '."""
    with LogFile.open(LOGS / "journal-k-short-monotonic.syslog") as log:
        found = list(log.matches(RULES))
        assert log.format.name == "syslog" and log.stats.malformed == 0
    io = [(r, m) for r, m in found if m.event_type == "BLK_IO_ERROR"]
    assert len(io) >= 10
    assert io[0][0].kernel_usec == 106125376 and io[0][0].hostname == "vm" and io[0][0].trusted_kernel
    events = jsonl(parse("--jsonl", str(LOGS / "journal-k-short-monotonic.syslog")))
    assert len(events) == len(found) and {e["hostname"] for e in events} == {"vm"}
    # user-space lines of a whole journal: the program is kept, never a kernel event
    mixed = read_records(LOGS / "journal-short-monotonic.syslog")
    forged = [r for r in mixed if r.identifier == "kernel"]
    assert forged and not any(r.trusted_kernel for r in forged)  # "kernel[18428]:" has a pid


def test_journalctl_indented_lines_continue_their_message():
    records = read_records(LOGS / "journal-k-short-monotonic-multiline.syslog")
    assert len(records) == 5 and all(r.hostname == "vm" and r.kernel_usec for r in records)
    cppc = next(r for r in records if r.text.startswith("amd_pstate: The CPPC"))
    assert cppc.text.endswith("BIOS.\nPlease enable it if your BIOS has the CPPC option.")


def test_journalctl_short_full_keeps_the_zone():
    events = jsonl(parse("--jsonl", "--utc", str(LOGS / "journal-k-short-full.syslog")))
    assert events and all(e["timestamp"].startswith("2026-12-01T11:2") for e in events)
    record = next(from_text("Tue 2026-12-01 16:57:09 +0530 vm kernel: loop0: detected capacity change\n",
                            "syslog").records())
    assert record.wallclock == dt.datetime(2026, 12, 1, 11, 27, 9, tzinfo=dt.timezone.utc)


def test_syslog_host_is_the_events_hostname():
    text = (
        "Nov 25 03:44:01 storage7 kernel: I/O error, dev sdb, sector 2048 op 0x0:(READ) flags 0x0 "
        "phys_seg 1 prio class 2\n"
        "2025-11-25T03:44:02.500000+01:00 db-03.example.com kernel: I/O error, dev sdc, sector 8 op 0x1:(WRITE) "
        "flags 0x800 phys_seg 1 prio class 2\n"
    )
    events = jsonl(parse("--jsonl", "-", input=text))
    assert [(e["hostname"], e["kdev"]) for e in events] == [("storage7", "sdb"), ("db-03.example.com", "sdc")]
    assert dt.datetime.fromisoformat(events[1]["timestamp"]) == dt.datetime(
        2025, 11, 25, 2, 44, 2, 500000, tzinfo=dt.timezone.utc)
    pretty = parse("-J", "-", input=text)  # the StorageEvent path agrees
    assert [json.loads(b)["hostname"] for b in pretty.stdout.strip().split("\n\n")] == ["storage7", "db-03.example.com"]


def test_journal_json_host_realtime_and_monotonic():
    entries = [json.loads(l) for l in (LOGS / "journal.json").read_text().splitlines()]
    events = jsonl(parse("--jsonl", str(LOGS / "journal.json")))
    assert events
    pending = iter(entries)
    for event in events:
        entry = next(e for e in pending if e.get("MESSAGE") == event["raw_msg"])
        assert event["hostname"] == entry["_HOSTNAME"]
        assert StorageEvent.from_dict(event).timestamp.timestamp() * 1e6 == pytest.approx(
            int(entry.get("_SOURCE_REALTIME_TIMESTAMP") or entry["__REALTIME_TIMESTAMP"]), abs=1)
        assert event["kernel_usec"] == int(entry.get("_SOURCE_MONOTONIC_TIMESTAMP") or entry["__MONOTONIC_TIMESTAMP"])
    user = next(from_text(json.dumps({"MESSAGE": "checker failed path 8:32 in map mpatha", "_HOSTNAME": "h2",
                                      "SYSLOG_IDENTIFIER": "multipathd", "_TRANSPORT": "syslog",
                                      "__MONOTONIC_TIMESTAMP": "5000001",
                                      "__REALTIME_TIMESTAMP": "1700000000000000"}) + "\n").records())
    assert (user.hostname, user.kernel_usec, user.trusted_kernel) == ("h2", 5000001, False)


def test_kernel_usec_round_trips_through_json():
    event = StorageEvent(event_type="BLK_IO_ERROR", sub_system="block", kdev="sdb", kernel_usec=123456789)
    assert json.loads(event.to_json())["kernel_usec"] == 123456789
    assert event.to_json() == json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert StorageEvent.from_json(event.to_json()).kernel_usec == 123456789
    assert StorageEvent.from_json(StorageEvent(event_type="X", sub_system="block").to_json()).kernel_usec is None


def test_json_and_event_paths_agree_field_for_field():
    for name in ("journal.json", "journal-k-short-monotonic.syslog", "dmesg.txt"):
        fast = jsonl(parse("--jsonl", str(LOGS / name)))
        slow = [json.loads(b) for b in parse("-J", str(LOGS / name)).stdout.strip().split("\n\n")]
        strip = lambda e: {k: v for k, v in e.items() if k not in ("event_id", "timestamp")}  # noqa: E731
        assert [strip(e) for e in fast] == [strip(e) for e in slow]


# -- compressed -----------------------------------------------------------------
@pytest.mark.parametrize("suffix, compress", [(".gz", gzip.compress), (".xz", lzma.compress), (".bz2", bz2.compress)])
def test_compressed_logs_read_like_plain_ones(tmp_path, suffix, compress):
    plain = jsonl(parse("--jsonl", str(LOGS / "journal-short.syslog")))
    packed = tmp_path / ("kern.log" + suffix)
    packed.write_bytes(compress((LOGS / "journal-short.syslog").read_bytes()))
    same = jsonl(parse("--jsonl", str(packed)))
    drop = lambda events: [{k: v for k, v in e.items() if k != "event_id"} for e in events]  # noqa: E731
    assert plain and drop(same) == drop(plain)
    piped = jsonl(parse("--jsonl", "-", input=packed.read_bytes()))
    assert drop(piped) == drop(plain)


def test_compressed_large_file_is_never_split_by_bytes(tmp_path, monkeypatch):
    # Worker processes cut a plain file at byte offsets: a compressed one must stay whole.
    monkeypatch.setattr(parallel, "PARALLEL_MIN_SIZE", 1)
    packed = tmp_path / "dmesg.gz"
    packed.write_bytes(gzip.compress((LOGS / "dmesg.txt").read_bytes() * 50))
    events = jsonl(parse("--jsonl", "-j", "2", str(packed)))
    assert len(events) == 50 * len(jsonl(parse("--jsonl", str(LOGS / "dmesg.txt"))))


def test_truncated_gzip_keeps_what_was_read(tmp_path):
    data = gzip.compress((LOGS / "journal-short.syslog").read_bytes() * 20)
    cut = tmp_path / "kern.log.1.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    result = parse("--jsonl", str(cut))
    assert result.exit_code == 0
    events = [json.loads(l) for l in result.stdout.splitlines()]
    full = len(jsonl(parse("--jsonl", str(LOGS / "journal-short.syslog"))))
    assert full * 5 < len(events) < full * 20
    assert f"{cut}:" in result.stderr and "gzip data ends early" in result.stderr


def test_zstd_is_named_with_the_command_to_use(tmp_path):
    packed = tmp_path / "kern.log.zst"
    packed.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
    result = parse(str(packed))
    assert result.exit_code == 1 and "zstdcat" in result.stderr


# -- damaged --------------------------------------------------------------------
SYSLOG_IO = ("Nov 25 03:44:{s:02d} host kernel: I/O error, dev loop{n}, sector 8 op 0x0:(READ) "
             "flags 0x0 phys_seg 1 prio class 2\n")


def _io_lines(first: int, count: int) -> str:
    return "".join(SYSLOG_IO.format(s=i % 60, n=i) for i in range(first, first + count))


def test_nul_run_of_a_crash_is_skipped_and_the_rest_kept(tmp_path):
    # What a crash leaves: a line cut short, blocks of zeroes, then the next boot's lines.
    log = tmp_path / "kern.log"
    log.write_bytes(_io_lines(0, 5).encode() + b"Nov 25 03:45:00 host kernel: I/O err" + b"\0" * 4096
                    + _io_lines(5, 5).encode() + b"\0" * 100 + b"\n" + _io_lines(10, 3).encode())
    result = parse("--jsonl", str(log))
    assert result.exit_code == 0
    assert [json.loads(l)["kdev"] for l in result.stdout.splitlines()] == [f"loop{n}" for n in range(13)]
    assert f"{log}:6: 4096 NUL byte(s) skipped with the 36 byte(s) of cut-off text" in result.stderr
    assert f"{log}:11: 100 NUL byte(s) skipped" in result.stderr
    assert "not in syslog format" not in result.stderr  # nothing left over to misread


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_nul_run_in_a_large_dmesg_file_is_found_past_the_first_chunk(tmp_path, monkeypatch, jobs):
    monkeypatch.setattr(parallel, "PARALLEL_MIN_SIZE", 1)  # -j 2: a part in a worker names the file's line
    body = "".join(f"[{i:6d}.000000] usb 1-1: new high-speed USB device number {i}\n" for i in range(80000))
    lines = body.count("\n")
    log = tmp_path / "dmesg.txt"
    log.write_bytes(body.encode() + b"\0" * 8192 + b"[99999.000000] I/O error, dev loop3, sector 8 op 0x0:(READ) "
                    b"flags 0x0 phys_seg 1 prio class 2\n")
    result = parse("--jsonl", "-j", jobs, str(log))
    assert [json.loads(l)["kdev"] for l in result.stdout.splitlines()] == ["loop3"]
    assert f"{log}:{lines + 1}: 8192 NUL byte(s) skipped" in result.stderr


def test_over_long_lines_are_skipped_with_their_line_number(tmp_path):
    log = tmp_path / "kern.log"
    garbage = "x" * (MAX_LINE * 3) + "\n"
    log.write_text(_io_lines(0, 3) + garbage + _io_lines(3, 3) + "y" * (MAX_LINE // 2) + "\n" + _io_lines(6, 1))
    result = parse("--jsonl", "--stats", str(log))
    assert result.exit_code == 0
    assert [json.loads(l)["kdev"] for l in result.stdout.splitlines()] == [f"loop{n}" for n in range(7)]
    assert f"{log}:4: line of {MAX_LINE * 3} bytes skipped" in result.stderr
    # a line under the limit is just a line that is not syslog
    assert "1 line(s) not in syslog format skipped (first: line 8)" in result.stderr


def test_a_line_with_no_end_in_megabytes_is_skipped(tmp_path):
    log = tmp_path / "kern.log"
    with log.open("wb") as f:
        f.write(_io_lines(0, 2).encode())
        f.write(b"z" * (12 << 20) + b"\n")
        f.write(_io_lines(2, 2).encode())
    result = parse("--jsonl", str(log))
    assert [json.loads(l)["kdev"] for l in result.stdout.splitlines()] == ["loop0", "loop1", "loop2", "loop3"]
    assert f"{log}:3: line of {12 << 20} bytes skipped" in result.stderr


def test_binary_files_are_still_refused(tmp_path):
    blob = tmp_path / "core"
    blob.write_bytes(bytes(range(256)) * 64)
    result = parse(str(blob))
    assert result.exit_code == 1 and "binary data" in result.stderr


# -- nothing read ---------------------------------------------------------------
def test_input_of_another_format_is_an_error_naming_the_formats():
    result = parse("--format", "syslog", str(LOGS / "dmesg.txt"))
    assert result.exit_code == 1
    assert "no syslog record" in result.stderr and "it looks like dmesg" in result.stderr
    for name in ("dmesg", "kmsg", "syslog", "journal-json", "short-monotonic"):
        assert name in result.stderr
    kmsg = parse("--format", "kmsg", str(LOGS / "journal-short.syslog"))
    assert kmsg.exit_code == 1 and "no kmsg record" in kmsg.stderr


def test_records_missing_past_the_head_are_an_error_too(tmp_path):
    log = tmp_path / "mixed.json"
    log.write_text('{"MESSAGE": "x"}\n' + "not json\n" * 5)
    log.write_text("not json at all, {\n" * 3)
    result = parse("--format", "journal-json", str(log))
    assert result.exit_code == 1 and "Formats known" in result.stderr


def test_empty_input_says_so_and_succeeds():
    for text in ("", "-- No entries --\n"):
        result = parse("-", input=text)
        assert result.exit_code == 0 and result.stdout == ""
        assert "no log records" in result.stderr and "Formats known" in result.stderr


# -- a real process ---------------------------------------------------------------
def test_real_prpt_reads_a_damaged_compressed_monotonic_log(tmp_path):
    raw = (LOGS / "journal-k-short-monotonic.syslog").read_bytes()
    head, tail = raw[: len(raw) // 2], raw[len(raw) // 2:]
    cut = head.rfind(b"\n") + 1
    packed = tmp_path / "kernel.log.xz"
    packed.write_bytes(lzma.compress(head[:cut] + b"[  106.9] vm kernel: I/O e" + b"\0" * 512 + head[cut:] + tail))
    proc = subprocess.run([PRPT, "parse", "--jsonl", "--utc", str(packed)], capture_output=True, text=True,
                          env={"TZ": "Asia/Kolkata", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(l) for l in proc.stdout.splitlines()]
    assert len(events) == len(jsonl(parse("--jsonl", str(LOGS / "journal-k-short-monotonic.syslog"))))
    assert {e["hostname"] for e in events} == {"vm"} and all(e["timestamp"].endswith("+00:00") for e in events)
    line = raw[:cut].count(b"\n") + 1
    assert f"{packed}:{line}: 512 NUL byte(s) skipped" in proc.stderr


def test_bsd_and_ctime_stamps_are_local_time():
    from peripety.sources.logformats import parse_dmesg, parse_syslog

    now = dt.datetime.now()
    precise = parse_syslog("Nov  5 04:22:35.5 h kernel: x").wallclock
    assert (precise.month, precise.day, precise.hour, precise.microsecond) == (11, 5, 4, 500000)
    assert precise.utcoffset() == dt.datetime(precise.year, 11, 5, 4, 22, 35).astimezone().utcoffset()
    assert precise.year in (now.year, now.year - 1) and precise <= now.astimezone() + dt.timedelta(days=1)
    assert parse_syslog("Feb 30 04:22:35 h kernel: x").wallclock is None  # no such day: no made-up time
    ctime = parse_dmesg("[Thu Nov  5 04:22:35 2026] x").wallclock
    assert ctime == dt.datetime(2026, 11, 5, 4, 22, 35).astimezone()


def test_problems_are_placed_by_line_when_lines_were_not_counted(tmp_path):
    """The kmsg/dmesg fast path does not count lines (it would cost ~6 %):
    a problem's byte offset is turned into its line afterwards."""
    body = "".join(f"6,{i},{i}000,-;usb 1-1: new high-speed USB device number {i}\n" for i in range(100000))
    log = tmp_path / "kmsg.txt"
    log.write_bytes(body.encode() + b"6,1,1,-;EXT4-fs (loop9): moun" + b"\0" * 300 + b"\n"
                    + b"3,2,2,-;I/O error, dev loop3, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n")
    with LogFile.open(log) as logfile:
        assert [m.kdev for _, m in logfile.matches(RULES, count_malformed=False)] == ["loop3"]
        assert logfile.stats.problems[0][0] is None  # placed by offset while reading
        assert logfile.problem_lines() == [(100001, "300 NUL byte(s) skipped with the 29 byte(s) of cut-off "
                                                     "text before them (a log truncated by a crash?)")]
    with LogFile.open(log) as logfile:  # --stats counts lines as it goes: the same place
        list(logfile.matches(RULES, count_malformed=True))
        assert logfile.problem_lines()[0][0] == 100001 and logfile.stats.problems[0][0] == 100001


# -- a real journald's own output -----------------------------------------------------
@pytest.mark.root
def test_real_journalctl_output_in_every_shape_keeps_host_and_times():
    """A multipathd line logged to a real journald (a namespace of its own),
    exported by the real journalctl in each output shape and parsed by the
    real prpt: the same event, host and times from each."""
    import os
    import socket
    import uuid

    from peripety.stores.journald_socket import JournaldSocket, runtime_dir, synchronize
    from tests.harness.services import ensure_journald, private_journald
    from tests.stores_support import namespace_name

    ensure_journald()
    with private_journald(namespace_name("parse")) as ns:
        tag = uuid.uuid4().hex[:8]
        sender = JournaldSocket(runtime_dir(ns) / "socket")
        sender.send({"MESSAGE": f"checker failed path 69:240 in map Lun{tag}", "SYSLOG_IDENTIFIER": "multipathd",
                     "PRIORITY": "4"})
        sender.close()
        synchronize(ns)

        def journalctl(shape: str) -> str:
            return subprocess.run(["journalctl", f"--namespace={ns}", "-o", shape, "--no-pager",
                                   "SYSLOG_IDENTIFIER=multipathd"],
                                  capture_output=True, text=True, check=True, timeout=60).stdout

        entry = json.loads(journalctl("json").splitlines()[-1])
        assert entry["MESSAGE"].endswith(tag)
        found = {}
        for shape in ("json", "short", "short-precise", "short-iso-precise", "short-full", "short-monotonic"):
            text = journalctl(shape)
            proc = subprocess.run([PRPT, "parse", "--jsonl", "--utc", "-"], input=text, capture_output=True,
                                  text=True, timeout=60, env=dict(os.environ, TZ="UTC"))
            assert proc.returncode == 0, (shape, proc.stderr)
            events = [json.loads(l) for l in proc.stdout.splitlines()]
            assert [(e["event_type"], e["kdev"], e["extension"].get("map")) for e in events] == [
                ("DM_MPATH_PATH_FAILED", "69:240", f"Lun{tag}")], shape
            found[shape] = events[0]
        assert {e["hostname"] for e in found.values()} == {entry["_HOSTNAME"]} == {socket.gethostname()}
        # journalctl shows when the sender logged the line, where journald kept that
        realtime = int(entry.get("_SOURCE_REALTIME_TIMESTAMP") or entry["__REALTIME_TIMESTAMP"])
        for shape in ("json", "short-precise", "short-iso-precise"):
            ts = dt.datetime.fromisoformat(found[shape]["timestamp"])
            assert ts == dt.datetime.fromtimestamp(realtime // 1_000_000, dt.timezone.utc).replace(
                microsecond=realtime % 1_000_000), shape
        for shape in ("short", "short-full"):  # whole seconds
            ts = dt.datetime.fromisoformat(found[shape]["timestamp"])
            assert ts == dt.datetime.fromtimestamp(realtime // 1_000_000, dt.timezone.utc), shape
        assert found["json"]["kernel_usec"] == found["short-monotonic"]["kernel_usec"] == int(
            entry["__MONOTONIC_TIMESTAMP"])


@pytest.mark.parametrize("line", [
    SYSLOG_IO.format(s=1, n=7),
    "[  106.125376] I/O error, dev loop7, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n",
    "[  106.125376] vm kernel: I/O error, dev loop7, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n",
])
def test_a_live_pipe_shows_each_event_while_it_stays_open(line):
    """journalctl -f | prpt parse -: the last line is not held back waiting for
    more lines (continuation lines, format detection) while the pipe is quiet."""
    import selectors

    proc = subprocess.Popen([PRPT, "parse", "--jsonl", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        for n in (7, 8):
            proc.stdin.write(line.replace("loop7", f"loop{n}").encode())
            proc.stdin.flush()
            assert sel.select(20), "no event while the pipe stayed open"
            assert json.loads(proc.stdout.readline())["kdev"] == f"loop{n}"
        proc.stdin.close()
        assert proc.wait(20) == 0 and proc.stdout.read() == b""
    finally:
        proc.kill()


def test_resolve_only_describes_this_hosts_devices():
    import socket

    line = "Nov 25 03:44:01 {host} kernel: I/O error, dev vda, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n"
    here, there = socket.gethostname(), "storage7.example.com"
    events = jsonl(parse("--jsonl", "--resolve", "-", input=line.format(host=here) + line.format(host=there)))
    assert [e["hostname"] for e in events] == [here, there]
    assert events[0]["cur_blk_info"]["blk_path"] == "/dev/vda"  # the disk under this VM
    assert events[1]["cur_blk_info"] is None  # vda on another host is not ours


def test_rotated_logs_are_read_oldest_first(tmp_path):
    """prpt parse /var/log/kern.log* lists kern.log before kern.log.1 and
    kern.log.2.gz: the events still come out oldest first."""
    day = lambda d, n: (f"Nov {d} 03:44:01 host kernel: I/O error, dev loop{n}, sector 8 op 0x0:(READ) "  # noqa: E731
                        "flags 0x0 phys_seg 1 prio class 2\n")
    (tmp_path / "kern.log").write_text(day(25, 5) + day(25, 6))
    (tmp_path / "kern.log.1").write_text(day(24, 3) + day(24, 4))
    (tmp_path / "kern.log.2.gz").write_bytes(gzip.compress((day(23, 1) + day(23, 2)).encode()))
    names = sorted(str(p) for p in tmp_path.iterdir())  # the shell's glob order
    events = jsonl(parse("--jsonl", *names))
    assert [e["kdev"] for e in events] == [f"loop{n}" for n in range(1, 7)]
    stamps = [e["timestamp"] for e in jsonl(parse("--jsonl", "--utc", *names))]
    assert stamps == sorted(stamps)
    # a file with no wall-clock time (dmesg): the order given
    (tmp_path / "dmesg.txt").write_text("[    5.000000] I/O error, dev loop9, sector 8 op 0x0:(READ) flags 0x0 "
                                        "phys_seg 1 prio class 2\n")
    given = jsonl(parse("--jsonl", str(tmp_path / "kern.log"), str(tmp_path / "dmesg.txt"), str(tmp_path / "kern.log.1")))
    assert [e["kdev"] for e in given] == ["loop5", "loop6", "loop9", "loop3", "loop4"]


def test_journal_json_priority_gives_a_generic_events_severity():
    """A line only a grammar knows takes its severity from the kernel log
    level: journald keeps it as PRIORITY."""
    entry = {"MESSAGE": "loop1: detected capacity change from 0 to 819200", "_TRANSPORT": "kernel",
             "SYSLOG_FACILITY": "0", "__REALTIME_TIMESTAMP": "1700000000000000"}
    severities = {}
    for priority in ("3", "6"):
        record = next(from_text(json.dumps(dict(entry, PRIORITY=priority)) + "\n").records())
        assert record.level == int(priority)
        events = jsonl(parse("--jsonl", "-", input=json.dumps(dict(entry, PRIORITY=priority)) + "\n"))
        assert [e["event_type"] for e in events] == ["BLK_MESSAGE"]
        severities[priority] = events[0]["severity"]
    assert severities == {"3": "Error", "6": "Info"}
