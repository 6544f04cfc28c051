"""``prpt parse`` on what issue 10 left open: records of several lines
split as the daemon splits them, a printed CDB's LBA, lines that name no
device, short-monotonic journals whose head is user space's."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from peripety.cli import main
from peripety.devices.sysfs import Sysfs
from peripety.pipeline import Pipeline
from peripety.record import LogRecord, record_lines
from peripety.rules import RuleSet
from peripety.rules.derived import sector_from_lba
from peripety.sources.kmsg.record import parse_record
from peripety.sources.logformats import detect_format

RULES = RuleSet.builtin()
RAID1 = ("2,684,80308454,-;md/raid1:md0: Disk failure on sdb, disabling device."
         "\\x0amd/raid1:md0: Operation continuing on 1 devices.")  # recorded in the qemu lab, Debian 6.1


def parse(*args, input=None):
    result = CliRunner().invoke(main, ["parse", *args], input=input)
    assert result.exit_code == 0, result.stderr
    return result


def events(path: Path, *args) -> list[dict]:
    return [json.loads(line) for line in parse("--jsonl", *args, str(path)).stdout.splitlines()]


# -- records of several lines ------------------------------------------------

def test_a_kmsg_record_of_two_lines_is_two_events_as_in_the_daemon(tmp_path):
    log = tmp_path / "kmsg"
    # The second record's first line is no storage line: only its second is.
    log.write_text(RAID1 + "\n6,685,80308455,-;usb 1-1: reset\\x0aEXT4-fs (sdb1): Remounting filesystem read-only\n")
    parsed = [(e["event_type"], e["kdev"], e["raw_msg"]) for e in events(log)]
    assert parsed == [
        ("MD_DISK_FAILURE", "md0", "md/raid1:md0: Disk failure on sdb, disabling device."),
        ("MD_ARRAY_DEGRADED", "md0", "md/raid1:md0: Operation continuing on 1 devices."),
        ("FS_REMOUNT_READ_ONLY", "sdb1", "EXT4-fs (sdb1): Remounting filesystem read-only"),
    ]
    # The daemon's pipeline makes the same events of the same records.
    stored: list = []
    pipeline = Pipeline(RULES, None, stored.append, boot_id="b", hostname="h", hold=0.0, clock=lambda: 0.0)
    for line in log.read_text().splitlines():
        pipeline.add_record(parse_record(line))
    pipeline.tick()
    pipeline.drain()
    assert [(e.event_type, e.kdev, e.raw_msg) for e in stored] == parsed


def test_record_lines_splits_only_trusted_kernel_records_and_skips_blank_lines():
    record = LogRecord("a line\n\nanother", "kmsg", seq=7)
    assert [(n, r.text, r.seq) for n, r in record_lines(record)] == [(0, "a line", 7), (2, "another", 7)]
    forged = LogRecord("a line\nanother", "kmsg", trusted_kernel=False)
    assert record_lines(forged) == [(0, forged)]


def test_indented_continuation_lines_of_dmesg_are_split_too(tmp_path):
    log = tmp_path / "dmesg.txt"
    log.write_text("[   80.308454] md/raid1:md0: Disk failure on sdb, disabling device.\n"
                   "               md/raid1:md0: Operation continuing on 1 devices.\n")
    assert [e["event_type"] for e in events(log)] == ["MD_DISK_FAILURE", "MD_ARRAY_DEGRADED"]


# -- the LBA of a printed CDB ----------------------------------------------------

def test_a_printed_cdb_gives_its_lba_for_every_read_write_layout(tmp_path):
    # drivers/scsi/scsi_logging.c scsi_print_command: "CDB: " + the command
    # name + the bytes; layouts from SBC-4 (READ(6): 21-bit LBA in bytes 1-3,
    # length in byte 4, 0 = 256; (10): LBA 2-5, length 7-8; (12): LBA 2-5,
    # length 6-9; (16): LBA 2-9, length 10-13).
    cdbs = {
        "Read(6) 08 01 02 03 00 00": (0x010203, 256),
        "Read(10) 28 00 00 00 10 00 00 00 08 00": (0x1000, 8),
        "Write(12) aa 00 00 01 00 00 00 00 00 10 00 00": (0x10000, 16),
        "Write(16) 8a 00 00 00 00 01 00 00 00 00 00 00 00 20 00 00": (0x100000000, 32),
    }
    log = tmp_path / "dmesg.txt"
    log.write_text("".join(f"[  12.000000] sd 2:0:0:0: [sdb] tag#3 CDB: {cdb}\n" for cdb in cdbs))
    found = events(log)
    assert [(e["extension"]["lba"], e["extension"]["transfer_length"]) for e in found] == \
        [(str(lba), str(length)) for lba, length in cdbs.values()]
    # The logical block size is not in the line: no sector unless the device is known.
    assert not any("sector" in e["extension"] for e in found)


def test_lba_becomes_512_byte_sectors_with_the_logical_block_size(tmp_path):
    extension = {"lba": "10"}
    sector_from_lba(extension, 4096)  # a 4Kn disk
    assert extension["sector"] == "80"
    extension = {"lba": "10"}
    sector_from_lba(extension, None)
    assert "sector" not in extension
    # Read from sysfs: a disk's queue, a partition through its disk.
    root = tmp_path / "sys"
    disk = root / "devices" / "pci" / "host0" / "block" / "sdb"
    (disk / "queue").mkdir(parents=True)
    (disk / "queue" / "logical_block_size").write_text("4096\n")
    (disk / "sdb1").mkdir()
    (root / "class" / "block").mkdir(parents=True)
    (root / "class" / "block" / "sdb").symlink_to(disk)
    (root / "class" / "block" / "sdb1").symlink_to(disk / "sdb1")
    sysfs = Sysfs(str(root))
    assert sysfs.logical_block_size("sdb") == 4096 == sysfs.logical_block_size("sdb1")
    assert sysfs.logical_block_size("sdz") is None


# -- lines that name no device ------------------------------------------------------

def test_a_ratelimit_summary_names_no_device_and_keeps_the_function(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text("4,10,1000,-;blk_print_req_error: 41 callbacks suppressed\n"
                   "4,11,1001,-;EXT4-fs error: 3 callbacks suppressed\n")
    found = events(log)
    assert [(e["kdev"], e["extension"]["function"], e["extension"]["count"]) for e in found] == [
        ("", "blk_print_req_error", "41"), ("", "EXT4-fs error", "3")]
    assert found[0]["msg"] == "blk_print_req_error: the kernel suppressed 41 block layer lines (printk ratelimit)"


def test_device_less_xfs_and_hung_storage_threads_are_events_without_device(tmp_path):
    log = tmp_path / "dmesg.txt"
    log.write_text(
        "[ 1.000000] XFS: possible memory allocation deadlock in kmem_alloc (mode:0x250)\n"
        "[ 2.000000] INFO: task btrfs-transacti:1143 blocked for more than 122 seconds.\n"
        "[ 3.000000] INFO: task kworker/u16:2:1234 blocked for more than 120 seconds.\n")
    found = events(log)
    assert [(e["event_type"], e["sub_system"], e["kdev"]) for e in found] == [
        ("FS_ALLOCATION_STALL", "xfs", ""), ("STORAGE_TASK_HUNG", "btrfs", "")]


def test_a_rule_naming_no_device_cannot_have_a_kdev_group_and_vice_versa():
    import pytest

    from peripety.errors import ConfigError

    for body in ("regex = '^x (?P<kdev>\\w+)'\nno_device = true", "regex = '^x (?P<other>\\w+)'"):
        with pytest.raises(ConfigError) as info:
            RuleSet.from_toml(f"[[collector.regexs]]\n{body}\nsub_system = 'SCSI'\nevent_type = 'X'\n")
        assert "kdev" in str(info.value)
    rules = RuleSet.from_toml("[[collector.regexs]]\nregex = '^vendor: fan (?P<fan>\\d+) failed'\n"
                              "no_device = true\nsub_system = 'SCSI'\nevent_type = 'VENDOR_FAN'\n")
    found = rules.match("vendor: fan 2 failed")
    assert (found.kdev, found.extension, found.message()) == ("", {"fan": "2"}, "VENDOR_FAN")


# -- short-monotonic with user space at the head ------------------------------------------

def test_short_monotonic_is_told_from_dmesg_when_its_head_is_user_space(tmp_path):
    head = [f"[    1.{n:06d}] h1 unknown: user line {n}" for n in range(30)]
    kernel = "[    5.000001] h1 kernel: I/O error, dev loop3, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2"
    assert detect_format(head + [kernel]) == "syslog"
    log = tmp_path / "journal.txt"
    log.write_text("\n".join(head + [kernel]) + "\n")
    result = parse("--jsonl", "--stats", str(log))
    assert "format syslog" in result.stderr
    [event] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (event["hostname"], event["kdev"], event["kernel_usec"]) == ("h1", "loop3", 5000001)


def test_dmesg_is_still_dmesg_when_its_words_look_like_a_host_and_a_program():
    # dmesg's second word is the driver: it varies, a journal's host does not.
    dmesg = ["[    1.000000] usb 1-1: new high-speed USB device number 2 using xhci_hcd",
             "[    1.100000] e1000e 0000:00:1f.6 eno1: NIC Link is Up",
             "[    1.200000] sd 0:0:0:0: [sda] 976773168 512-byte logical blocks",
             "[    1.300000] host kernel: a dmesg line that looks like a journal line"]
    assert detect_format(dmesg) == "dmesg"
