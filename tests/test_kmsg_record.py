"""Parsing /dev/kmsg records: recorded real records and synthetic edge cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from peripety.sources.kmsg import KmsgStats, decode_escapes, parse_record
from peripety.sources.kmsg.record import FIELD_CALLER, FIELD_FLAGS

RECORDED = Path(__file__).parent / "fixtures" / "recorded" / "linux-6.18-loop-faults.kmsg"
DEVKMSG = Path(__file__).parent / "fixtures" / "logs" / "devkmsg.kmsg"


def recorded_blocks() -> list[str]:
    """Records of the recorded fixture: blocks separated by blank lines, '#' comments dropped."""
    text = "\n".join(l for l in RECORDED.read_text().splitlines() if not l.startswith("#"))
    return [b.strip("\n") for b in text.split("\n\n") if b.strip()]


def test_recorded_records_all_parse_as_trusted_kernel_lines():
    stats = KmsgStats()
    blocks = recorded_blocks()
    records = [parse_record(b.encode(), stats) for b in blocks]
    assert stats.malformed == 0 and stats.records == len(blocks) > 100
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs)
    io = next(r for r in records if r.text.startswith("I/O error, dev loop0, sector 2048"))
    assert (io.facility, io.level, io.trusted_kernel, io.source) == (0, 3, True, "kmsg")
    assert io.kernel_usec == 586736057 and io.seq == 1246


def test_dictionary_lines_fill_subsystem_and_device():
    raw = DEVKMSG.read_bytes().split(b"\n")
    block = b"\n".join(raw[:3]) + b"\n"  # first record with SUBSYSTEM= and DEVICE=
    record = parse_record(block)
    assert record.subsystem == "acpi"
    assert record.device == "+acpi:PNP0A08:00"


def test_user_written_record_is_untrusted():
    record = parse_record(b"12,900,5000,-;EXT4-fs (loop6): mounted filesystem x r/w\n")
    assert record.facility == 1 and record.level == 4
    assert record.trusted_kernel is False


def test_flags_caller_and_unknown_dictionary_keys_are_kept():
    raw = b"6,77,123,c,caller=T4321;fragment\n SUBSYSTEM=scsi\n DEVICE=+scsi:2:0:0:0\n MODALIAS=x\n"
    record = parse_record(raw)
    assert record.fields == {FIELD_FLAGS: "c", FIELD_CALLER: "T4321", "MODALIAS": "x"}
    assert record.subsystem == "scsi" and record.device == "+scsi:2:0:0:0"
    assert record.text == "fragment"


def test_escapes_rebuild_utf8_and_backslashes():
    # The kernel escapes each byte of "é" and the backslash itself.
    record = parse_record(b"6,1,2,-;caf\\xc3\\xa9 C:\\x5cdir tab\\x09end\n")
    assert record.text == "café C:\\dir tab\tend"
    assert decode_escapes("bad \\xff byte") == "bad \ufffd byte"
    assert decode_escapes("no escapes") == "no escapes"


def test_undecodable_raw_bytes_are_replaced_not_raised():
    record = parse_record(b"6,1,2,-;raw \xff\xfe bytes\n")
    assert record.text == "raw \ufffd\ufffd bytes"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage without separators",
        b"\x00\x01\x02\x03",
        b"6,1,2;no flags field",
        b"6,1;truncated head",
        b"x,1,2,-;prio not a number",
        b"6,-1,2,-;negative seq",
        b"6,1,2,-;text\nnot-indented=dictionary",
        b"6,1,2,-;text\n NOEQUALSIGN",
    ],
)
def test_malformed_records_are_counted_not_raised(raw):
    stats = KmsgStats()
    assert parse_record(raw, stats) is None
    assert stats.malformed == 1 and stats.records == 0


def test_truncated_record_without_newline_still_parses():
    record = parse_record(b"3,5,6,-;I/O error, dev loop0, sector 8")
    assert record.text == "I/O error, dev loop0, sector 8" and record.seq == 5
