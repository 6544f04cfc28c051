"""Real-kernel lab scenarios (issue 11): each test checks what the real
peripetyd stored inside the qemu guest (Debian 6.1 kernel) for one failure.

The guest side of each scenario is tests/lab/guest/scenarios/<name>.sh; its
stored events are build/lab/<name>.jsonl (`prpt query --jsonl`), its facts
(device names, WWIDs read from sysfs in the guest) build/lab/<name>.facts.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.lab.lab import OUT

pytestmark = [pytest.mark.root, pytest.mark.timeout(3600)]


def blk(event: dict) -> dict:
    return event.get("cur_blk_info") or {}


def names_path(event: dict, path: str) -> bool:
    """The event names the device ``path`` somewhere: its own BlkInfo, the
    stack below it, or an extension value."""
    info = blk(event)
    return (path in (info.get("blk_path"), info.get("preferred_blk_path"))
            or path in info.get("owners_paths", [])
            or path in (event.get("extension") or {}).values())


# ---------------------------------------------------------------- SCSI --
@pytest.mark.lab("scsi")
def test_scsi_medium_error_carries_vpd83_wwid_and_sense(scenario):
    f = scenario.facts
    disk, wwid = f["disk"], f["scsi_wwid"]
    io = [e for e in scenario.of_type("BLK_IO_ERROR")
          if e["kdev"] == disk and e["extension"]["sector"] in ("4660", "4672")]
    assert {e["extension"]["sector"] for e in io} == {"4660", "4672"}, scenario.summary()
    for e in io:
        assert e["extension"]["blk_status"].startswith("critical medium"), e
        assert blk(e)["wwid"] == wwid, f"WWID is not VPD 0x83's {wwid}: {blk(e)}"
        assert blk(e)["dev_num"] == f["devnum"]
    keys = [e for e in scenario.of_type("SCSI_SENSE_KEY") if blk(e).get("wwid") == wwid]
    assert keys and all(e["extension"]["sense_key"] == "Medium Error" for e in keys), scenario.summary()
    ascs = [e for e in scenario.of_type("SCSI_ADDITIONAL_SENSE_CODE") if blk(e).get("wwid") == wwid]
    assert ascs and all(e["extension"]["asc"] == "Unrecovered read error" for e in ascs), scenario.summary()


@pytest.mark.lab("scsi")
def test_scsi_bpf_block_hit_merged_with_line(scenario):
    merged = [e for e in scenario.of_type("BLK_IO_ERROR")
              if e["kdev"] == scenario.facts["disk"] and sorted(e["sources"]) == ["bpf", "kmsg"]]
    assert {e["extension"]["sector"] for e in merged} >= {"4660", "4672"}, scenario.summary()
    assert all(e["extension"]["tracepoint"] == "block:block_rq_error" for e in merged)


@pytest.mark.lab("scsi")
def test_scsi_bpf_scsi_tracepoint_hit_merged_with_lines(scenario):
    """The scsi:scsi_dispatch_cmd_done hit of the failed READ(10) at LBA 4660
    and the sd driver's lines about the same command are one event."""
    wwid = scenario.facts["scsi_wwid"]
    hits = [e for e in scenario.events
            if e["sub_system"] == "SCSI" and "bpf" in e["sources"]
            and (e.get("extension") or {}).get("tracepoint", "").startswith("scsi:")
            and blk(e).get("wwid") == wwid]
    assert any(e["extension"].get("lba") == "4660" for e in hits), scenario.summary()
    merged = [e for e in hits if "kmsg" in e["sources"]]
    assert merged, "no SCSI event merges the scsi tracepoint hit with the kernel lines:\n" + scenario.summary()


@pytest.mark.lab("scsi")
def test_scsi_command_timeout_and_offline(scenario):
    """scsi_debug ignores commands: the timeout tracepoint hit, the error
    handler's resets, the device offlined, the DID_TIME_OUT failure."""
    f = scenario.facts
    mine = [e for e in scenario.events if blk(e).get("wwid") == f["scsi_wwid"]]
    timeouts = [e for e in mine if e["event_type"] == "SCSI_CMD_TIMEOUT"]
    assert timeouts, scenario.summary()
    assert any((e.get("extension") or {}).get("tracepoint") == "scsi:scsi_dispatch_cmd_timeout"
               for e in timeouts), timeouts
    assert any(e["event_type"] == "SCSI_DEVICE_OFFLINE" for e in mine), scenario.summary()
    # a host byte other than DID_OK is a transport failure (issue 10's type)
    failed = [e for e in mine if e["event_type"] == "SCSI_HOST_BYTE_FAILURE"
              and (e.get("extension") or {}).get("hostbyte") == "DID_TIME_OUT"]
    assert failed, scenario.summary()
    io = [e for e in mine if e["event_type"] == "BLK_IO_ERROR" and e["extension"]["sector"] == "128"]
    assert io and io[0]["extension"]["blk_status"].startswith("I/O"), io


# ----------------------------------------------------------- multipath --
@pytest.mark.lab("multipath")
def test_multipath_path_failure_names_path_and_map(scenario):
    f = scenario.facts
    failed = [e for e in scenario.of_type("DM_MPATH_PATH_FAILED") if "kmsg" in e["sources"]]
    assert {blk(e).get("blk_path") for e in failed} >= {f"/dev/{f['path1']}", f"/dev/{f['path2']}"}, \
        scenario.summary()
    for e in failed:
        assert names_path(e, "/dev/mapper/mpatha"), f"path failure does not name the map /dev/mapper/mpatha: {e}"


@pytest.mark.lab("multipath")
def test_multipath_reinstate_names_path_and_map(scenario):
    f = scenario.facts
    back = [e for e in scenario.of_type("DM_MPATH_PATH_REINSTATED") if "kmsg" in e["sources"]]
    assert {blk(e).get("blk_path") for e in back} >= {f"/dev/{f['path1']}", f"/dev/{f['path2']}"}, \
        scenario.summary()
    for e in back:
        assert names_path(e, "/dev/mapper/mpatha"), f"reinstate does not name the map /dev/mapper/mpatha: {e}"


@pytest.mark.lab("multipath")
def test_multipath_all_paths_down_on_the_map(scenario):
    f = scenario.facts
    map_io = [e for e in scenario.of_type("BLK_IO_ERROR") if e["kdev"] == f["map_dm"]]
    assert map_io, scenario.summary()
    for e in map_io:
        assert blk(e)["preferred_blk_path"] == "/dev/mapper/mpatha"
        assert blk(e)["dev_num"] == f["map_devnum"]
        assert {f"/dev/{f['path1']}", f"/dev/{f['path2']}"} <= set(blk(e)["owners_paths"])
    # "remaining active paths: 0" is its own, error-level type (issue 10)
    zero = [e for e in scenario.of_type("DM_MPATH_ALL_PATHS_DOWN") if e["extension"].get("active_paths") == "0"]
    assert zero and all(blk(e)["preferred_blk_path"] == "/dev/mapper/mpatha" for e in zero), scenario.summary()


@pytest.mark.lab("multipath")
def test_multipath_multipathd_lines_from_trusted_journal(scenario):
    """multipathd (uid 0, _COMM=multipathd) logs through journald; its lines
    arrive through the journal source, kernel lines never twice."""
    f = scenario.facts
    journal = [e for e in scenario.events if e["sources"] == ["journal"]]
    raw = [e["raw_msg"] for e in journal]
    assert "mpatha: remaining active paths: 0" in raw, raw
    assert "mpatha: remaining active paths: 2" in raw, raw
    reinstated = {blk(e).get("blk_path") for e in journal if e["event_type"] == "DM_MPATH_PATH_REINSTATED"}
    assert reinstated >= {f"/dev/{f['path1']}", f"/dev/{f['path2']}"}, raw
    assert all(e["sub_system"] == "Multipath" for e in journal)
    # the event keeps its trusted sender (journald's _COMM), not only the text
    for e in journal:
        fields = {k: v for k, v in e.items() if k not in ("msg", "raw_msg")}
        assert "multipathd" in json.dumps(fields), f"journal event does not name its sender: {e}"
    spoofed = [e for e in scenario.events if (e.get("extension") or {}).get("active_paths") == "9"]
    assert not spoofed, f"`logger -t multipathd` as nobody became an event: {spoofed}"
    kernel_raw = [e["raw_msg"] for e in scenario.events if "kmsg" in e["sources"]]
    assert not set(kernel_raw) & set(raw), "a kernel line came in through the journal too"


# ------------------------------------------------------------------ md --
@pytest.mark.lab("md")
def test_md_member_failure_names_array_and_member(scenario):
    f = scenario.facts
    failures = scenario.of_type("MD_DISK_FAILURE")
    assert failures, scenario.summary()
    for e in failures:
        assert e["kdev"] == f["md"]
        assert blk(e)["preferred_blk_path"] in ("/dev/md0", "/dev/md/0"), blk(e)
        assert e["extension"]["failed_dev"] == f["member_failed"], e["extension"]


@pytest.mark.lab("md")
def test_md_member_block_error_is_root_cause(scenario):
    f = scenario.facts
    by_id = scenario.by_id()
    failure = scenario.of_type("MD_DISK_FAILURE")[0]
    cause = by_id.get(failure.get("root_cause_event_id"))
    assert cause is not None, f"MD_DISK_FAILURE has no stored root cause: {failure}"
    assert cause["kdev"] in (f["member_failed"],) or blk(cause).get("dev_num") == f["member_failed_devnum"], cause
    assert cause["event_type"] in ("BLK_IO_ERROR", "SCSI_DEVICE_OFFLINE"), cause


@pytest.mark.lab("md")
def test_md_degraded_event_names_array(scenario):
    """md/raid1:md0: Operation continuing on 1 devices. (6.1 prints it in the
    same kmsg record as the disk failure): an event on md0 says the array
    runs degraded and on how many devices, naming the member it lost."""
    f = scenario.facts
    on_array = [e for e in scenario.events if e["kdev"] == f["md"]]
    degraded = [e for e in on_array
                if "DEGRADED" in e["event_type"]
                or any(re.search(r"devices|remaining|working", k) and v == "1"
                       for k, v in (e.get("extension") or {}).items())]
    assert degraded, "no event on the array says it continues on 1 device:\n" + scenario.summary()
    assert any(f["member_failed"] in json.dumps(e) for e in degraded), degraded


# ---------------------------------------------------------------- thin --
@pytest.mark.lab("thin")
def test_thin_pool_out_of_data_space_named_by_lvm_name(scenario):
    f = scenario.facts
    full = scenario.of_type("DM_THIN_POOL_OUT_OF_SPACE")
    # queued first, errored once no_space_timeout expired
    assert [e["extension"].get("no_space_mode") for e in full] == ["queue IO", "error IO"], scenario.summary()
    for e in full:
        assert e["kdev"] in (f["pool_dm"], f"/dev/{f['pool_dm']}") or blk(e).get("blk_path") == f"/dev/{f['pool_dm']}", e
        assert e["extension"]["pool_mode"] == "out-of-data-space"
        # the pool by its LVM name (vgthin/pool), not only by the dm node
        # vgthin-pool-tpool LVM builds it from
        named = json.dumps([blk(e).get("preferred_blk_path"), e.get("msg"), e.get("extension")])
        assert f["pool_lv"] in named, f"pool not named {f['pool_lv']}: {named}"


# ---------------------------------------------------------------- NVMe --
def _nvme_errors(scenario, ns: str) -> list[dict]:
    return [e for e in scenario.events if e["sub_system"] == "NVMe" and e["kdev"] == ns]


@pytest.mark.lab("nvme")
def test_nvme_emulated_unrecovered_read_error(scenario):
    f = scenario.facts
    errs = [e for e in _nvme_errors(scenario, f["emu_ns"])
            if e["event_type"] == "NVME_IO_ERROR" and "kmsg" in e["sources"]]
    assert errs, scenario.summary()
    e = errs[0]
    assert e["extension"]["lba"] == "2048" and e["extension"]["sc"] == "0x81", e
    assert blk(e)["wwid"] == f["emu_wwid"], blk(e)
    assert blk(e)["dev_num"] == f["emu_devnum"]
    assert blk(e)["transport"]["controller"] == f["emu_ctrl"], blk(e)
    assert blk(e)["transport"]["nsid"] == "1", blk(e)
    assert blk(e)["transport"]["transport"] == "pcie", blk(e)
    medium = [x for x in scenario.of_type("BLK_IO_ERROR") if x["kdev"] == f["emu_ns"]]
    assert medium and medium[0]["extension"]["blk_status"].startswith("critical medium")


@pytest.mark.lab("nvme")
def test_nvme_tcp_target_over_failing_dm_device(scenario):
    f = scenario.facts
    # native NVMe multipath: block lines name the hidden path disk (nvme1c1n1),
    # which has no /dev node; its events must still carry the namespace's identity
    errs = [e for e in scenario.events if e["kdev"] in (f["tcp_ns"], f["tcp_path"])
            and e["event_type"] in ("NVME_IO_ERROR", "BLK_IO_ERROR")]
    assert any("kmsg" in e["sources"] for e in errs), scenario.summary()
    for e in errs:
        assert blk(e).get("wwid") == f["tcp_wwid"], f"{e['event_type']} {e['kdev']} {e['raw_msg']!r}: {blk(e)}"
        transport = blk(e).get("transport") or {}
        assert transport.get("transport") == "tcp", transport
        assert transport.get("controller") == f["tcp_ctrl"] and transport.get("nsid") == "1", transport


@pytest.mark.lab("nvme")
def test_nvme_bpf_complete_rq_probe_loads_and_merges(scenario):
    log = (OUT / "peripetyd-bpf.log").read_text()
    assert "nvme:nvme_complete_rq" in log.split("bpf probes attached:", 1)[1].splitlines()[0], log
    hits = [e for e in scenario.events if (e.get("extension") or {}).get("tracepoint") == "nvme:nvme_complete_rq"]
    assert hits, "no nvme_complete_rq hit stored:\n" + scenario.summary()
    assert any("kmsg" in e["sources"] for e in hits), \
        "no NVMe event merges the nvme_complete_rq hit with the kernel line:\n" + scenario.summary()


# -------------------------------------------------------------- counts --
# Issue 14: with --bpf the kernel's maps count every failure. The oracle is
# the workload's own count of failed reads (tests/lab/guest/failing_reads.py)
# and, for SCSI, the midlayer's count of failed commands (ioerr_cnt delta).
# "Counted" is what the daemon read from the maps: the -v log line of each
# drained aggregate ("bpf maps: N KIND failures on UNIT"); "stored" is the
# sum of `count` over the events it stored.

def _workload(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split())


def _scenario_window(name: str) -> tuple[int, int]:
    """Kernel usec of the scenario's begin and end markers in the guest's kmsg."""
    marks = {word: usec for usec, word in re.findall(rf"^\d+,\d+,(\d+),[^;]*;peripety-lab: (begin|end) {name}$",
                                                     (OUT / "kmsg.raw").read_text(errors="replace"), re.M)}
    return int(marks.get("begin", 0)), int(marks.get("end", 1 << 62))


def _map_counts(name: str = "counts") -> dict[tuple[str, str], int]:
    """(kind, unit) -> failures counted in the maps during the scenario (the
    earlier scenarios of the same daemon run reuse hosts and disk names)."""
    begin, end = _scenario_window(name)
    counts: dict[tuple[str, str], int] = {}
    for m in re.finditer(r"bpf maps: (\d+) (\w+) failures on (\S+) .* at (\d+)-(\d+) usec",
                         (OUT / "peripetyd-bpf.log").read_text()):
        if begin <= int(m.group(4)) and int(m.group(5)) <= end:
            key = (m.group(2), m.group(3))
            counts[key] = counts.get(key, 0) + int(m.group(1))
    return counts


def _stored(scenario, event_type: str, *names: str) -> int:
    return sum(e["count"] for e in scenario.of_type(event_type)
               if e["kdev"] in names or blk(e).get("dev_num") in names or e.get("dev_num") in names)


def _counted_exactly(n, failed) -> bool:
    """``n`` counted of ``failed``, exactly. The guest's 6.1 kernel runs no
    tracing program on a CPU while a process is inside a BPF map syscall
    there (bpf_disable_instrumentation) and does not count the skip; when
    peripetyd drained hash maps with syscalls, an interrupt's failure landing
    in that window went uncounted (1999 of 2000 in one boot). peripetyd now
    reads its counts from mmapped arrays without any bpf() syscall."""
    return n == failed


@pytest.mark.lab("counts")
def test_counts_scsi_one_command_at_a_time_exact(scenario):
    """One failing read at a time: the maps count every failed command
    (ioerr_cnt, the midlayer's own count, since the disk appeared) and every
    failed request; the stored BLK_IO_ERROR total equals the failures."""
    f = scenario.facts
    failed = int(_workload(f["scsi1_workload"])["failed"])
    counted = _map_counts()
    assert failed == 500 and int(f["scsi1_ioerr_cnt"]) == failed, f
    assert _counted_exactly(counted.get(("scsi_cmd_done", f["scsi1_hctl"])),
                                        int(f["scsi1_ioerr_total"])), counted
    assert _counted_exactly(counted.get(("block_rq_error", f["scsi1_devnum"])), failed), counted
    # the block layer's lines are taken off its map count: never stored twice
    stored = _stored(scenario, "BLK_IO_ERROR", f["scsi1_disk"], f["scsi1_devnum"])
    assert _counted_exactly(stored, failed), scenario.summary()


@pytest.mark.lab("counts")
def test_counts_scsi_four_threads(scenario):
    """Four threads, never two adjacent reads in flight (no merged request):
    every failed read is one failed request and command. Every failed request
    is counted and stored exactly. scsi_dispatch_cmd_done is not: on this 6.1
    kernel 1.1-1.8 % of the failed commands went uncounted in four runs.
    scsi_debug completes commands from an hrtimer (hard irq); when that
    interrupts another BPF program on the same CPU (the block_rq_error probe,
    in the block softirq) trace_call_bpf skips the nested program
    (bpf_prog_active), and 6.1 does not count the skip (recursion_misses
    stays 0). One command at a time, or completion inside queuecommand (the
    tests around this one), never nests and is exact.

    The block count was 1999 of 2000 in one boot while peripetyd read its
    counts with BPF map syscalls (the block softirq interrupted it inside
    one, where 6.1 runs no tracing program and counts no skip); it reads
    mapped memory now, so the block count is exact."""
    f = scenario.facts
    failed = int(_workload(f["scsi4_workload"])["failed"])
    counted = _map_counts()
    assert failed == 2000 and int(f["scsi4_ioerr_cnt"]) == failed, f
    blocks = counted.get(("block_rq_error", f["scsi4_devnum"]))
    assert _counted_exactly(blocks, failed), counted
    stored = _stored(scenario, "BLK_IO_ERROR", f["scsi4_disk"], f["scsi4_devnum"])
    assert _counted_exactly(stored, failed), scenario.summary()
    assert counted.get(("scsi_cmd_done", f["scsi4_hctl"]), 0) <= int(f["scsi4_ioerr_total"]), counted


@pytest.mark.lab("counts")
def test_counts_scsi_four_threads_completed_in_queuecommand_exact(scenario):
    """The same four threads with scsi_debug's delay=0: the command completes
    inside queuecommand, in the submitting task, and the block layer's
    completion follows in the same context -- no interrupt nests one probe
    inside another, and every failed command is counted."""
    f = scenario.facts
    failed = int(_workload(f["scsi4d0_workload"])["failed"])
    counted = _map_counts()
    assert failed == 2000 and int(f["scsi4d0_ioerr_cnt"]) == failed, f
    assert _counted_exactly(counted.get(("block_rq_error", f["scsi4d0_devnum"])), failed), counted
    assert _counted_exactly(counted.get(("scsi_cmd_done", f["scsi4d0_hctl"])),
                                        int(f["scsi4d0_ioerr_total"])), counted


@pytest.mark.lab("counts")
def test_counts_nvme_exact(scenario):
    """nvmet answers Internal Error with DNR (status 0x6006: the lines say
    "MORE DNR"), so the host does not retry: one failed completion per
    failed read. nvme_complete_rq counts each; the kernel's lines about them
    are taken off the count (kinds.toml line_unit), so the stored total is
    exact (before that change: 309 stored for 300)."""
    f = scenario.facts
    failed = int(_workload(f["nvme_workload"])["failed"])
    counted = _map_counts()
    assert failed == 300, f
    nvme = counted.get(("nvme_complete_rq", f["nvme_path"]))
    assert _counted_exactly(nvme, failed), counted
    # the hidden path disk has no dev attribute: the one other disk whose requests failed
    scsi = {f["scsi1_devnum"], f["scsi4_devnum"], f["scsi4d0_devnum"]}
    [(path_devnum, n)] = [(unit, n) for (kind, unit), n in counted.items()
                          if kind == "block_rq_error" and unit not in scsi]
    assert _counted_exactly(n, failed), counted
    # the kernel's lines about them are taken off the counts: never stored twice
    assert _counted_exactly(
        _stored(scenario, "NVME_IO_ERROR", f["nvme_path"], f["nvme_ns"], f["nvme_devnum"]), failed), scenario.summary()
    assert _counted_exactly(_stored(scenario, "BLK_IO_ERROR", path_devnum), failed), scenario.summary()


# --------------------------------------------------------------- stack --
@pytest.mark.lab("stack")
def test_stack_fs_root_cause_leads_down_the_stack(scenario):
    f = scenario.facts
    by_id = scenario.by_id()
    fs = [e for e in scenario.events if e["sub_system"] in ("ext4", "jbd2") and e["kdev"].startswith(f["lv_dm"])
          and e["event_type"] not in ("FS_MOUNTED", "FS_UNMOUNTED")]
    assert fs, scenario.summary()
    lower = {f["map_dm"], f["path1"], f["path2"]}
    lower_paths = {"/dev/mapper/mpatha", f"/dev/{f['path1']}", f"/dev/{f['path2']}"}
    for e in fs:
        chain, cur = [], e
        while cur.get("root_cause_event_id") and cur["root_cause_event_id"] in by_id and len(chain) < 10:
            cur = by_id[cur["root_cause_event_id"]]
            chain.append(cur)
        assert chain, f"{e['event_type']} {e['raw_msg']!r} has no root cause in this incident " \
                      f"(root_cause_event_id={e.get('root_cause_event_id')})"
        bottom = chain[-1]
        assert bottom["kdev"] in lower or blk(bottom).get("preferred_blk_path") in lower_paths, \
            f"{e['event_type']}: root cause chain stops at {bottom['event_type']} {bottom['kdev']}, above the map"
    assert any(e["event_type"] == "FS_REMOUNT_READ_ONLY" for e in fs), scenario.summary()


@pytest.mark.lab("stack")
def test_stack_prpt_info_lists_the_stack(scenario):
    f = scenario.facts
    info = json.loads((OUT / "stack.info.json").read_text())
    assert info["mount_point"] == "/mnt/stack"
    assert info["blk_type"] == "Device Mapper LVM"
    assert info["preferred_blk_path"] in ("/dev/vgstack/lvstack", "/dev/mapper/vgstack-lvstack")
    assert {"/dev/mapper/mpatha", f"/dev/{f['path1']}", f"/dev/{f['path2']}"} <= set(info["owners_paths"]), info
    assert {"Device Mapper Multipath", "SCSI"} <= set(info["owners_types"]), info


# ---------------------------------------------------------------- info --
_KIND_TYPES = {"scsi": "SCSI", "multipath": "Device Mapper Multipath", "lvm": "Device Mapper LVM",
               "md": "MD RAID", "nvme": "NVMe", "loop": "Loop", "partition": "Partition"}


@pytest.mark.lab("info")
@pytest.mark.parametrize("kind", sorted(_KIND_TYPES))
def test_info_every_form_resolves_to_the_same_device(scenario, kind):
    data = json.loads((OUT / "info.json").read_text())[kind]
    assert "error" not in data, f"the guest could not set up the {kind} device: {data['error']}"
    forms = data["forms"]
    failed = {label: (form["arg"], form["stderr"].strip()) for label, form in forms.items() if form["rc"] != 0}
    assert not failed, f"prpt info failed for {kind} {data['name']}: {failed}"
    infos = {label: form["info"] for label, form in forms.items()}
    wwids = {label: i["wwid"] for label, i in infos.items()}
    assert len(set(wwids.values())) == 1 and all(wwids.values()), wwids
    assert len({i["dev_num"] for i in infos.values()}) == 1, {k: i["dev_num"] for k, i in infos.items()}
    assert infos["name"]["blk_type"] == _KIND_TYPES[kind]
    assert not infos["name"].get("missing"), f"{kind}: fields not determined: {infos['name']['missing']}"
    # (no by-id link for the SCSI disk: udev gives none to a multipath path)
    expected = {"scsi": {"hctl"}, "multipath": {"dm_name", "mapper_path"},
                "lvm": {"lvm_path", "fs_uuid", "mount_point"}, "nvme": {"nvme_ctrl"}}.get(kind, set())
    assert expected <= set(forms), f"{kind}: forms not tried: {expected - set(forms)}"


@pytest.mark.lab("info")
def test_info_lists_every_kind(scenario):
    listed = [json.loads(line) for line in (OUT / "info-all.jsonl").read_text().splitlines() if line.strip()]
    types = {i["blk_type"] for i in listed}
    # SCSI paths are folded under their multipath map in the listing.
    assert set(_KIND_TYPES.values()) - {"SCSI"} <= types, types


# ------------------------------------------------------- prpt top state --
def _top_row(name: str, kernel_name: str) -> dict:
    """The device row of ``prpt top --once -J`` run in the guest while the
    scenario's failure was in force."""
    top = json.loads((OUT / f"{name}.top.json").read_text())
    rows = [d for d in top["devices"] if d["kernel_name"] == kernel_name]
    assert rows, f"no row for {kernel_name} in prpt top: {[d['kernel_name'] for d in top['devices']]}"
    return rows[0]


@pytest.mark.lab("md")
def test_top_shows_the_md_array_degraded(scenario):
    row = _top_row("md", scenario.facts["md"])
    assert row["state"]["md"]["degraded"] == 1, row
    assert "degraded 1/2" in row["state_summary"], row


@pytest.mark.lab("multipath")
def test_top_shows_the_map_with_one_path_down(scenario):
    row = _top_row("multipath", scenario.facts["map_dm"])
    assert "paths 1/2" in row["state_summary"], row
