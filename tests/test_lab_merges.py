"""What the qemu lab (tests/lab) taught the pipeline, checked here on its
recorded 6.1 lines (tests/fixtures/recorded/lab-6.1.0-57-amd64-*.kmsg) with
no guest: multi-line kmsg records, the sd CDB line paired with the
scsi_dispatch_cmd_done hit, NVMe retries absorbed by their line, an md
array's failure caused by its member, names of related devices."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from peripety.devices.timeline import nvme_path_head
from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.sources.kmsg.record import parse_record
from peripety.merge import Correlator, RootCauseLinker
from peripety.pipeline import Pipeline, hit_to_event, lvm_name
from peripety.position import kmsg_event_id
from peripety.rules import RuleSet
from peripety.tracepoints.decode import hit_from_fields

BOOT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.fixture(scope="module")
def rules():
    return RuleSet.builtin()


class FakeTimeline:
    """name or major:minor -> BlkInfo, whatever the time (the lab guest's)."""

    def __init__(self, devices: dict[str, BlkInfo]):
        self.devices = devices

    def at(self, key, kernel_usec=None):
        return self.devices.get(key)


def run(rules, raws, timeline=None, hits=()):
    store: list = []
    now = [0.0]
    pipeline = Pipeline(rules, timeline, store.append, boot_id=BOOT, hostname="lab", hold=0.0,
                        clock=lambda: now[0])
    pipeline.storm.burst = 1_000
    for raw in raws:
        record = parse_record(raw)
        pipeline.add_record(record)
    for hit in hits:
        pipeline.add_hit(hit)
    now[0] = 10.0
    pipeline.drain()
    return store


# recorded: lab-6.1.0-57-amd64-md.kmsg (raid1 error(), one pr_crit, two lines)
MD_RECORD = ("2,681,88723797,-;md/raid1:md0: Disk failure on sdb, disabling device."
             "\\x0amd/raid1:md0: Operation continuing on 1 devices.")


def test_multi_line_kmsg_record_gives_an_event_per_line(rules):
    failure, degraded = run(rules, [MD_RECORD])
    assert (failure.event_type, failure.kdev, failure.extension["failed_dev"]) == ("MD_DISK_FAILURE", "md0", "sdb")
    assert (degraded.event_type, degraded.kdev, degraded.extension["devices"]) == ("MD_ARRAY_DEGRADED", "md0", "1")
    assert failure.raw_msg == "md/raid1:md0: Disk failure on sdb, disabling device."
    # distinct, deterministic ids: a re-read after a restart finds both
    assert failure.event_id == kmsg_event_id(BOOT, 681)
    assert degraded.event_id == kmsg_event_id(BOOT, 681, 1) != failure.event_id
    assert failure.origin_seq == degraded.origin_seq == 681


def test_md_superblock_write_error_of_6_1_is_named_by_the_next_md_line(rules):
    summary, failure, degraded = run(rules, ["3,680,88723598,-;md: super_written gets error=-5", MD_RECORD])
    assert summary.event_type == "MD_SUPERBLOCK_WRITE_ERROR"
    assert summary.kdev == "md0" and summary.extension["error"] == "-5"
    assert failure.event_type == "MD_DISK_FAILURE"


def test_md_failure_has_the_members_error_as_root_cause():
    sdb = BlkInfo(wwid="naa.sdb", dev_num="8:16", blk_path="/dev/sdb")
    md0 = BlkInfo(wwid="md-uuid-1", dev_num="9:0", blk_path="/dev/md0",
                  owners_wwids=["naa.sda", "naa.sdb"], owners_paths=["/dev/sda", "/dev/sdb"])
    linker = RootCauseLinker()
    attached = StorageEvent(event_type="SCSI_MESSAGE", sub_system="SCSI", kdev="sdb", severity=Severity.Notice,
                            cur_blk_info=sdb)
    io = StorageEvent(event_type="BLK_IO_ERROR", sub_system="block", kdev="sdb", severity=Severity.Error,
                      cur_blk_info=sdb)
    failure = StorageEvent(event_type="MD_DISK_FAILURE", sub_system="md", kdev="md0", severity=Severity.Critical,
                           cur_blk_info=md0)
    attached.kernel_usec, io.kernel_usec, failure.kernel_usec = 1_000_000, 2_000_000, 2_000_300
    attached, io, failure = (linker.link(e) for e in (attached, io, failure))
    assert failure.root_cause_event_id == io.event_id  # not "Attached SCSI disk"
    assert io.root_cause_event_id is None


# recorded: lab-6.1.0-57-amd64-scsi.kmsg (scsi_debug medium error at LBA 0x1234)
SCSI_CDB = "6,776,520753202,-;sd 2:0:0:0: [sda] tag#141 CDB: Read(10) 28 00 00 00 12 34 00 00 01 00"


def scsi_done_hit(usec: int):
    cdb = bytes.fromhex("28 00 00 00 12 34 00 00 01 00")
    fields = {"host_no": 2, "channel": 0, "id": 0, "lun": 0, "opcode": 0x28, "cmnd": cdb,
              "result": 0x02, "sense_key": 3, "asc": 0x11, "ascq": 0}
    return hit_from_fields("scsi_cmd_done", fields, kernel_usec=usec)


def test_sd_cdb_line_and_scsi_dispatch_cmd_done_hit_are_one_event(rules):
    sda = BlkInfo(wwid="naa.33333330000007d0", dev_num="8:0", blk_path="/dev/sda")
    timeline = FakeTimeline({"sda": sda, "2:0:0:0": sda, "8:0": sda})
    [event] = run(rules, [SCSI_CDB], timeline, hits=[scsi_done_hit(520_752_900)])
    assert event.event_type == "SCSI_CMD_FAILED"
    assert event.sources == ["kmsg", "bpf"]
    assert event.extension["lba"] == "4660"
    assert event.extension["tracepoint"] == "scsi:scsi_dispatch_cmd_done"
    assert event.extension["hostbyte"] == "DID_OK"  # the line's spelling, not host_byte
    assert event.raw_msg.endswith("CDB: Read(10) 28 00 00 00 12 34 00 00 01 00")


def test_blk_status_is_spelled_as_the_kernel_prints_it_with_or_without_a_line():
    hit = hit_from_fields("block_rq_error", {"dev": 7 << 20, "sector": 8, "nr_sector": 8, "error": -5,
                                             "rwbs": "R"}, kernel_usec=1)
    event = hit_to_event(hit, "BLK_IO_ERROR", "block", hostname="h")
    assert event.extension["blk_status"] == "I/O error"
    assert event.msg == "Block I/O error: I/O error on 7:0 at sector 8 (READ)"


def nvme_hit(retries: int, usec: int):
    fields = {"disk": "nvme0n1", "ctrl_id": 0, "qid": 1, "cid": 64 + retries, "status": 0x281,
              "retries": retries, "flags": 0, "result": 0}
    return hit_from_fields("nvme_complete_rq", fields, kernel_usec=usec)


def test_nvme_line_absorbs_every_retry_hit_of_its_command():
    ns = BlkInfo(wwid="nvme.1b36", dev_num="259:0", blk_path="/dev/nvme0n1")
    corr = Correlator(hold=0.25)
    for n in range(6):
        event = hit_to_event(nvme_hit(n, 655_000_000 + n * 100), "NVME_IO_ERROR", "NVMe", hostname="h")
        event.cur_blk_info, event.dev_num = ns, "259:0"
        corr.add(event, now=0.0)
    line = StorageEvent(event_type="NVME_IO_ERROR", sub_system="NVMe", kdev="nvme0n1", dev_num="259:0",
                        cur_blk_info=ns, sources=["kmsg"],
                        extension={"lba": "2048", "sct": "0x2", "sc": "0x81"})
    line.kernel_usec = 655_030_493
    corr.add(line, now=0.01)
    [merged] = corr.release(now=1.0)
    assert merged.sources == ["kmsg", "bpf"] and merged.extension["lba"] == "2048"
    assert merged.extension["retries"] == "5"


def test_nvme_rule_takes_the_hidden_path_disk_and_timeline_maps_it_to_its_head(rules):
    # recorded: lab-6.1.0-57-amd64-nvme.kmsg (nvmet over TCP, native multipath)
    m = rules.match("nvme1c1n1: I/O Cmd(0x2) @ LBA 128, 8 blocks, I/O Error (sct 0x0 / sc 0x6) MORE DNR ", 3)
    assert (m.event_type, m.kdev, m.extension["lba"]) == ("NVME_IO_ERROR", "nvme1c1n1", "128")
    assert nvme_path_head("nvme1c1n1") == "nvme1n1"
    assert nvme_path_head("nvme12c3n2") == "nvme12n2"
    assert nvme_path_head("nvme1n1") is None


def test_multipath_path_failure_names_its_map(rules):
    # recorded: lab-6.1.0-57-amd64-multipath.kmsg
    sda = BlkInfo(wwid="naa.3333", dev_num="8:0", blk_path="/dev/sda", preferred_blk_path="/dev/sda")
    mpatha = BlkInfo(wwid="mpath-3333", dev_num="254:0", blk_path="/dev/dm-0",
                     preferred_blk_path="/dev/mapper/mpatha")
    [event] = run(rules, ["4,505,47035931,-;device-mapper: multipath: 254:0: Failing path 8:0."],
                  FakeTimeline({"8:0": sda, "254:0": mpatha}))
    assert event.event_type == "DM_MPATH_PATH_FAILED" and event.cur_blk_info.blk_path == "/dev/sda"
    assert event.extension["dm_path"] == "/dev/mapper/mpatha"
    assert event.extension["dm_name"] == "mpatha" and event.extension["dm_wwid"] == "mpath-3333"


def test_thin_pool_is_named_by_its_lvm_name(rules):
    def info(name):
        return SimpleNamespace(blk_type="Device Mapper LVM", preferred_blk_path=f"/dev/mapper/{name}")

    assert lvm_name(info("vgthin-pool-tpool")) == "vgthin/pool"
    assert lvm_name(info("my--vg-lv--a")) == "my-vg/lv-a"
    assert lvm_name(SimpleNamespace(blk_type="Device Mapper Multipath", preferred_blk_path="/dev/mapper/mpatha")) == ""
