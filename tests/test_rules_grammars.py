"""The two tiers: subsystem grammars turn every storage line into an event,
generic events take their severity from the record, the prefix or the
wording; user rules of any number load and match in order; ``prpt
event-types`` lists what can be emitted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from peripety.cli import main
from peripety.errors import ConfigError
from peripety.event import Severity
from peripety.event_types import EVENT_TYPES
from peripety.sources.kmsg import parse_record
from peripety.record import LogRecord
from peripety.rules import RuleSet
from peripety.rules.engine import _UserIndex

PRPT = Path(sys.executable).with_name("prpt")


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.builtin()


# -- severity of generic events -------------------------------------------------

def test_generic_event_takes_the_kmsg_level_of_its_record(rules):
    # The same routine line at three kernel levels: the record decides.
    for prio, expected in ((3, Severity.Error), (4, Severity.Warning), (6, Severity.Info)):
        record = parse_record(f"{prio},17,5000,-;sd 0:0:0:0: [sda] Write Protect is off")
        found = rules.match_record(record)
        assert (found.event_type, found.kdev, found.severity) == ("SCSI_MESSAGE", "sda", expected)


def test_generic_event_without_a_level_uses_the_printed_level_then_the_wording(rules):
    printed = rules.match("BTRFS warning (device sdb1: state EA): csum hole found for disk bytenr range [1, 2)")
    assert (printed.kdev, printed.severity, printed.extension["fs_state"]) == ("sdb1", Severity.Warning, "EA")
    worded = rules.match(" connection2:0: ping timeout of 5 secs expired, recv timeout 5, last rx 1, last ping 2, now 3")
    assert (worded.kdev, worded.severity) == ("2:0", Severity.Error)
    calm = rules.match("ata4: SATA link up 1.5 Gbps (SStatus 113 SControl 300)")
    assert (calm.event_type, calm.severity) == ("ATA_MESSAGE", Severity.Info)


def test_specific_rules_keep_their_own_severity_whatever_the_level(rules):
    record = parse_record("6,18,5000,-;md/raid:md0: Operation continuing on 2 devices.")
    found = rules.match_record(record)
    assert (found.event_type, found.severity) == ("MD_ARRAY_DEGRADED", EVENT_TYPES.default_severity("MD_ARRAY_DEGRADED"))


def test_generic_lines_written_by_user_space_are_no_event(rules):
    forged = parse_record("14,19,5000,-;sd 0:0:0:0: [sda] Write Protect is off")  # facility 1: user
    assert forged.facility != 0
    assert rules.match_record(forged) is None


def test_generic_event_message_is_the_kernel_line(rules):
    from peripety.classify import event_from_match

    record = LogRecord(text="XFS (sda1): Quotacheck needed: Please wait.", source="file", level=5)
    event = event_from_match(record, rules.match_record(record))
    assert (event.event_type, event.kdev, event.severity) == ("XFS_MESSAGE", "sda1", Severity.Notice)
    assert event.msg == event.raw_msg == record.text


# -- wordings that used to be missed -----------------------------------------------

@pytest.mark.parametrize("text, kdev, event_type", [
    # xfs as a module: " [xfs]" after each address
    ("XFS (dm-2): Corruption of in-memory data (0x8) detected at xfs_trans_cancel+0x15a/0x180 [xfs] "
     "(fs/xfs/xfs_trans.c:1097).  Shutting down filesystem.", "dm-2", "FS_SHUTDOWN"),
    ("XFS (sdb1): Metadata CRC error detected at xfs_agi_read_verify+0x7e/0x120 [xfs], xfs_agi block 0x2",
     "sdb1", "FS_CORRUPTION"),
    # btrfs 6.x puts the state inside the parentheses
    ("BTRFS error (device sdb1: state EA): bdev /dev/sdb1 errs: wr 1, rd 0, flush 0, corrupt 0, gen 0",
     "sdb1", "FS_IO_ERROR"),
    ("BTRFS info (device sdb1: state E): forced readonly", "sdb1", "FS_REMOUNT_READ_ONLY"),
])
def test_module_suffix_and_btrfs_state_wordings(rules, text, kdev, event_type):
    found = rules.match(text)
    assert (found.kdev, found.event_type) == (kdev, event_type)


# -- user rules: any number, in order ----------------------------------------------

def _user_toml(entries: list[str]) -> str:
    return "".join(f"[[collector.regexs]]\n{e}\n" for e in entries)


def test_user_rules_without_prefix_keep_their_order_through_the_re2_set():
    loose = [f"regex = 'disk (?P<kdev>sd[a-z]+) fault{n}'\nsub_system = 'SCSI'\nevent_type = 'LOOSE_{n}'"
             for n in range(10)]
    keyed = ["starts_with = 'disk '\nregex = '^disk (?P<kdev>sd[a-z]+) fault3'\nsub_system = 'SCSI'\n"
             "event_type = 'KEYED'"]
    user = RuleSet.from_toml(_user_toml(loose[:2] + keyed + loose[2:]))
    index = user._tiers[0]
    assert isinstance(index, _UserIndex) and index._set is not None  # asked through one RE2 set
    assert user.match("disk sdb fault1").event_type == "LOOSE_1"
    assert user.match("disk sdb fault3").event_type == "KEYED"  # before LOOSE_3 in the file
    assert user.match("oops: disk sdc fault7 again").event_type == "LOOSE_7"  # search, not match
    assert user.match("disk sdb fine") is None
    joined = RuleSet.builtin().with_user_rules(user.rules)
    assert joined.match("disk sdb fault9").event_type == "LOOSE_9"
    assert joined.match("I/O error, dev sdb, sector 8").event_type == "BLK_IO_ERROR"  # built-ins still there


def test_thousands_of_user_rules_load_and_the_last_one_matches():
    count = 5000
    entries = [f"starts_with = 'drv{n} '\nregex = '^drv{n} (?P<kdev>sd[a-z]+) broke'\n"
               f"sub_system = 'SCSI'\nevent_type = 'DRV_{n}'" for n in range(count)]
    entries += [f"regex = 'vendor{n}: (?P<kdev>sd[a-z]+) gone'\nsub_system = 'SCSI'\nevent_type = 'VENDOR_{n}'"
                for n in range(count)]
    rules = RuleSet.builtin().with_user_rules(RuleSet.from_toml(_user_toml(entries)).rules)
    assert len(rules.rules) == 2 * count + len(RuleSet.builtin().rules)
    assert rules.match(f"drv{count - 1} sdq broke").event_type == f"DRV_{count - 1}"
    assert rules.match(f"xx vendor{count - 1}: sdq gone").event_type == f"VENDOR_{count - 1}"
    assert rules.match("md/raid:md0: Operation continuing on 2 devices.").event_type == "MD_ARRAY_DEGRADED"
    assert rules.match("usb 1-1: device descriptor read/64, error -71") is None


def test_an_error_in_rule_thousands_names_its_line():
    entries = [f"regex = 'x{n} (?P<kdev>sd[a-z]+)'\nsub_system = 'SCSI'\nevent_type = 'X'" for n in range(3000)]
    entries[2500] = "regex = 'no kdev group'\nsub_system = 'SCSI'\nevent_type = 'X'"
    with pytest.raises(ConfigError) as caught:
        RuleSet.from_toml(_user_toml(entries), path="/etc/peripetyd.conf")
    assert "collector.regexs[2500]" in str(caught.value) and "(line 10002)" in str(caught.value)  # its regex line


# -- prpt event-types ----------------------------------------------------------------

def _jsonl(*args) -> list[dict]:
    result = CliRunner().invoke(main, ["event-types", "--jsonl", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_event_types_lists_every_type_with_sub_systems_severity_and_description(rules):
    rows = {r["event_type"]: r for r in _jsonl()}
    assert set(rows) == {info.name for info in EVENT_TYPES} | {r.event_type for r in rules.rules}
    for name, row in rows.items():
        info = EVENT_TYPES.get(name)
        assert row["severity"] == info.severity.name and row["message_id"] == info.message_id
        assert row["description"] == info.description and row["sub_systems"], name
    assert rows["FS_ERROR"]["sub_systems"] == ["btrfs", "ext3", "ext4", "xfs"]
    assert rows["SCSI_MESSAGE"]["generic"] and not rows["SCSI_CMD_FAILED"]["generic"]
    assert rows["PERIPETY_KMSG_OVERRUN"]["sub_systems"] == ["Peripety"]


def test_event_types_text_filter_and_site_types(tmp_path):
    result = CliRunner().invoke(main, ["event-types", "--sub-system", "MD"])
    assert result.exit_code == 0
    assert "MD_ARRAY_FAILED  Alert  md" in result.stdout and "FS_ERROR" not in result.stdout
    assert "MESSAGE_ID=" in result.stdout
    conf = tmp_path / "peripetyd.conf"
    conf.write_text("[[collector.regexs]]\nregex = 'mydrv (?P<kdev>sd[a-z]+) hot'\n"
                    "sub_system = 'SCSI'\nevent_type = 'MYDRV_HOT'\n")
    site = {r["event_type"]: r for r in _jsonl("--config", str(conf))}
    assert site["MYDRV_HOT"]["severity"] == "Warning" and site["MYDRV_HOT"]["sub_systems"] == ["SCSI"]
    bad = CliRunner().invoke(main, ["event-types", "--sub-system", "floppy"])
    assert bad.exit_code == 2 and "floppy" in bad.output


def test_event_types_real_subprocess_json():
    done = subprocess.run([str(PRPT), "event-types", "-J"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == len({r["event_type"] for r in rows}) >= 70


def test_wording_through_the_re2_set_decides_as_the_plain_regexes():
    import tomllib

    from peripety.rules.grammar import WORDING, Wording, grammars_text

    data = tomllib.loads(grammars_text())
    plain = Wording(data["wording"], data["default_severity"])
    plain._set = None  # Python re, one pattern after the other
    assert WORDING._set is not None
    lines_dir = Path(__file__).parent / "fixtures" / "lines"
    texts = [l for name in ("noise.txt", "storage_routine.txt")
             for l in (lines_dir / name).read_text().splitlines() if l and not l.startswith("#")]
    for path in lines_dir.glob("*.toml"):
        texts += [e["text"] for e in tomllib.loads(path.read_text())["line"]]
    seen = set()
    for text in texts:
        severity = WORDING.severity(text)
        assert severity == plain.severity(text), text
        seen.add(severity)
    assert {Severity.Critical, Severity.Error, Severity.Warning, Severity.Notice, Severity.Info} <= seen


def test_prpt_parse_gives_generic_events_their_level_or_wording_severity():
    """The same routine and failing lines, once as ``dmesg -r`` (with the
    kernel's levels) and once as plain dmesg (wording only)."""
    lines = [(6, "sd 2:0:0:0: [sdb] Write Protect is off"),
             (3, "sd 2:0:0:0: [sdb] Stopping disk"),  # level says error, wording says nothing
             (4, "ata3.00: NCQ disabled due to excessive errors")]
    raw = "".join(f"<{prio}>[  10.{n:06d}] {text}\n" for n, (prio, text) in enumerate(lines))
    plain = "".join(f"[  10.{n:06d}] {text}\n" for n, (_, text) in enumerate(lines))
    leveled = CliRunner().invoke(main, ["parse", "--jsonl", "--format", "kmsg", "-"], input=raw)
    worded = CliRunner().invoke(main, ["parse", "--jsonl", "--format", "dmesg", "-"], input=plain)
    assert leveled.exit_code == worded.exit_code == 0, leveled.output + worded.output
    by_level = [(e["event_type"], e["kdev"], e["severity"], e["msg"]) for e in map(json.loads, leveled.stdout.splitlines())]
    by_words = [(e["event_type"], e["kdev"], e["severity"]) for e in map(json.loads, worded.stdout.splitlines())]
    assert by_level == [
        ("SCSI_MESSAGE", "sdb", "Info", lines[0][1]),
        ("SCSI_MESSAGE", "sdb", "Error", lines[1][1]),
        ("ATA_MESSAGE", "ata3.00", "Warning", lines[2][1]),
    ]
    assert by_words == [("SCSI_MESSAGE", "sdb", "Info"), ("SCSI_MESSAGE", "sdb", "Info"),
                        ("ATA_MESSAGE", "ata3.00", "Error")]
