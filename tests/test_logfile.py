"""Saved logs in every format, read back as records and matches (tests/fixtures/logs/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peripety.errors import LogFormatError
from peripety.rules import RuleSet
from peripety.sources import logfile as logfile_mod
from peripety.sources.logfile import LogFile, from_text, read_records

LOGS = Path(__file__).parent / "fixtures" / "logs"
RULES = RuleSet.builtin()


def matched(path: Path, fmt: str = "auto") -> list:
    with LogFile.open(path, fmt) as log:
        return [(r, m) for r, m in log.matches(RULES)]


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("dmesg.txt", "dmesg"),
        ("dmesg-T.txt", "dmesg"),
        ("dmesg-r.kmsg", "kmsg"),
        ("devkmsg.kmsg", "kmsg"),
        ("journal-short.syslog", "syslog"),
        ("journal-short-precise.syslog", "syslog"),
        ("journal-short-iso.syslog", "syslog"),
        ("journal.json", "journal-json"),
    ],
)
def test_auto_detects_each_format(name, fmt):
    with LogFile.open(LOGS / name) as log:
        records = list(log.records())
        assert log.format.name == fmt
        assert log.stats.malformed == 0
    assert records and all(r.source == "file" for r in records)


@pytest.mark.parametrize("name", ["devkmsg.kmsg", "journal-short.syslog", "journal.json"])
def test_forged_kernel_lines_never_match(name):
    """Lines user space wrote to /dev/kmsg or logged as 'kernel' are not kernel events."""
    found = matched(LOGS / name)
    assert found, "the fixture holds real storage lines"
    assert not [r.text for r, _ in found if "forged" in r.text]
    with LogFile.open(LOGS / name) as log:
        forged = [r for r in log.records() if "forged" in r.text]
    assert forged and all(not r.trusted_kernel for r in forged)


@pytest.mark.parametrize("name", ["dmesg.txt", "dmesg-r.kmsg"])
def test_dmesg_output_cannot_tell_forged_lines_apart(name):
    # dmesg prints no facility (dmesg -r of util-linux 2.38 prints "<3>" for a
    # user's "<3>" write, which /dev/kmsg reports as 11): it looks like the kernel.
    found = matched(LOGS / name)
    assert any("forged via /dev/kmsg" in r.text for r, _ in found)


def test_dmesg_r_priority_with_a_facility_is_untrusted():
    record = next(from_text("<11>[  695.351122] I/O error, dev loop6, sector 1\n", "kmsg").records())
    assert (record.facility, record.level, record.trusted_kernel) == (1, 3, False)


def test_the_same_lines_match_alike_in_every_format():
    def real_events(name):
        return sorted((m.event_type, m.kdev, r.text) for r, m in matched(LOGS / name) if "forged" not in r.text)

    dmesg = real_events("dmesg.txt")
    assert dmesg and real_events("dmesg-r.kmsg") == dmesg and real_events("dmesg-T.txt") == dmesg


def test_dmesg_stamps_become_kernel_time_and_ctime_wall_clock():
    first = read_records(LOGS / "dmesg.txt")[0]
    raw = read_records(LOGS / "dmesg-r.kmsg")[0]
    assert first.kernel_usec == raw.kernel_usec is not None
    assert first.text == raw.text
    ctime = read_records(LOGS / "dmesg-T.txt")[0]
    assert ctime.wallclock is not None and ctime.wallclock.year >= 2025
    assert not ctime.text.startswith("[")


def test_multiline_messages_join_their_indented_lines():
    for name in ("dmesg-multiline.txt", "dmesg-r-multiline.kmsg"):
        records = read_records(LOGS / name)
        cppc = next(r for r in records if r.text.startswith("amd_pstate: The CPPC"))
        assert cppc.text.endswith("BIOS.\nPlease enable it if your BIOS has the CPPC option.")


def test_devkmsg_dictionary_lines_stay_with_their_record():
    records = read_records(LOGS / "devkmsg.kmsg")
    assert any(r.subsystem == "acpi" and r.device for r in records)
    assert len({r.seq for r in records}) == len(records)


def test_syslog_kernel_lines_lose_the_inner_stamp_and_others_keep_identifier():
    log = from_text(
        "Nov 25 03:44:01 host kernel: [  123.456789] EXT4-fs (loop1): mounted filesystem "
        "4f9c1d2e-7a10-4b4e-9c55-0e2a6f1d3b7a r/w with ordered data mode. Quota mode: none.\n"
        "2025-11-25T03:44:02.123456+00:00 host multipathd[811]: checker failed path 8:32 in map mpatha\n"
        "Nov 25 03:44:03 host kernel[99]: EXT4-fs (loop2): mounted filesystem x r/w with ordered data mode.\n"
    )
    kernel, mpath, fake = list(log.records())
    assert kernel.trusted_kernel and kernel.kernel_usec == 123456789
    assert kernel.text.startswith("EXT4-fs (loop1)")
    assert (mpath.identifier, mpath.trusted_kernel) == ("multipathd", False)
    assert mpath.wallclock.isoformat() == "2025-11-25T03:44:02.123456+00:00"
    assert fake.identifier == "kernel" and not fake.trusted_kernel  # the kernel has no pid
    log = from_text("\n".join(
        ["Nov 25 03:44:01 host kernel: EXT4-fs (loop1): mounted filesystem 4f9c1d2e-7a10-4b4e-9c55-0e2a6f1d3b7a r/w with ordered data mode."] * 3))
    assert [m.event_type for _, m in log.matches(RULES)] == ["FS_MOUNTED"] * 3


def test_journal_json_trusts_transport_and_facility_not_identifier():
    log = from_text(
        '{"MESSAGE":"EXT4-fs (loop1): mounted filesystem 4f9c1d2e-7a10-4b4e-9c55-0e2a6f1d3b7a r/w with ordered data mode.",'
        '"_TRANSPORT":"kernel","SYSLOG_FACILITY":"0","__REALTIME_TIMESTAMP":"1764042241000000"}\n'
        '{"MESSAGE":"EXT4-fs (loop2): mounted filesystem 4f9c1d2e-7a10-4b4e-9c55-0e2a6f1d3b7a r/w with ordered data mode.",'
        '"_TRANSPORT":"syslog","SYSLOG_IDENTIFIER":"kernel"}\n'
        '{"MESSAGE":"EXT4-fs (loop3): mounted filesystem 4f9c1d2e-7a10-4b4e-9c55-0e2a6f1d3b7a r/w with ordered data mode.",'
        '"_TRANSPORT":"kernel","SYSLOG_FACILITY":"1"}\n'
        # MESSAGE as a byte array: journalctl's form for text that is not UTF-8
        + json.dumps({"MESSAGE": list(b"EXT4-fs (loop4): mounted filesystem with ordered data mode. \xff"),
                      "_TRANSPORT": "kernel"}) + "\n"
    )
    found = [(r, m) for r, m in log.matches(RULES)]
    assert [m.kdev for _, m in found] == ["loop1", "loop4"]
    assert found[0][0].wallclock.timestamp() == 1764042241
    assert "\ufffd" in found[1][0].text


@pytest.mark.parametrize("lead", ["kmsg", "dmesg-r", "dmesg", "dmesg-nostamp"])
def test_chunk_boundaries_lose_nothing(monkeypatch, lead):
    """Records split across reads (dictionary lines included) are all found."""
    monkeypatch.setattr(logfile_mod, "CHUNK_SIZE", 97)
    line = "EXT4-fs (loop{n}): mounted filesystem 4f9c1d2e-7a10-4b4e-9c55-0e2a6f1d3b7a r/w with ordered data mode. Quota mode: none."
    shapes = {
        "kmsg": "6,{n},{n}000,-;" + line + "\n SUBSYSTEM=block\n DEVICE=b7:{n}",
        "dmesg-r": "<6>[ {n}.000001] " + line,
        "dmesg": "[ {n}.000001] " + line,
        "dmesg-nostamp": line,
    }
    noise = {"kmsg": "6,{n},1,-;usb 1-1: new device", "dmesg-r": "<6>[ {n}.1] usb 1-1: x",
             "dmesg": "[ {n}.1] usb 1-1: x", "dmesg-nostamp": "usb 1-1: x"}
    fmt = "dmesg" if lead.startswith("dmesg") and lead != "dmesg-r" else "kmsg"
    text = "".join(
        (shapes[lead] if n % 3 else noise[lead]).format(n=n) + "\n" for n in range(200)
    )
    log = from_text(text, fmt)
    found = [m.kdev for _, m in log.matches(RULES)]
    assert found == [f"loop{n}" for n in range(200) if n % 3]
    assert log.stats.malformed == 0
    assert log.stats.lines == text.count("\n")
    if lead == "kmsg":
        log = from_text(text, fmt)
        assert all(r.device == f"b7:{r.seq}" for r, _ in log.matches(RULES))


def test_malformed_kmsg_lines_are_counted_with_the_first_line_number():
    text = (
        "6,1,1,-;usb 1-1: new device\n"
        "this line is garbage\n"
        "3,2,2,-;EXT4-fs (loop1): mounted filesystem 4f9c1d2e-7a10-4b4e-9c55-0e2a6f1d3b7a r/w with ordered data mode.\n"
        "\x01\x02 more garbage\n"
    )
    log = from_text(text, "kmsg")
    assert [m.kdev for _, m in log.matches(RULES)] == ["loop1"]
    assert log.stats.malformed == 2
    assert log.stats.first_malformed_line == 2
    log = from_text(text, "kmsg")
    assert len(list(log.records())) == 2 and log.stats.malformed == 2


def test_binary_and_unknown_input_raise_log_format_error(tmp_path):
    binary = tmp_path / "system.journal"
    binary.write_bytes(b"LPKSHHRH\0\0\0\x01" + bytes(range(256)) * 4)
    with pytest.raises(LogFormatError, match="binary journal file.*journalctl --file"):
        read_records(binary)
    prose = tmp_path / "notes.txt"
    prose.write_text("just some\nwords here\n")
    with pytest.raises(LogFormatError, match="cannot tell the log format"):
        read_records(prose)
    with pytest.raises(LogFormatError, match="cannot read"):
        read_records(tmp_path / "missing.log")
    with pytest.raises(LogFormatError, match="unknown log format"):
        read_records(prose, "csv")


def test_undecodable_bytes_are_replaced(tmp_path):
    path = tmp_path / "latin1.log"
    path.write_bytes(b"[  1.000000] EXT4-fs (loop1): mounted filesystem \xe9\xff r/w with ordered data mode.\n")
    record = read_records(path)[0]
    assert "\ufffd" in record.text


def test_empty_file_yields_nothing(tmp_path):
    path = tmp_path / "empty.log"
    path.write_text("")
    with LogFile.open(path) as log:
        assert list(log.matches(RULES)) == []
        assert log.stats.lines == 0
