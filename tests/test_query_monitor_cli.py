"""``prpt query`` and ``prpt monitor`` over a real SQLite store: filters,
output formats, exit codes, following as a subprocess."""

from __future__ import annotations

import datetime as _dt
import json
import signal
import subprocess

import pytest
from click.testing import CliRunner

from peripety.cli import main
from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.stores import open_store
from tests.harness.daemon import PRPT, wait_for_line

T0 = _dt.datetime(2026, 11, 20, 10, 0, tzinfo=_dt.timezone.utc)


def event(event_type, kdev, severity, minutes, wwid="", owners=(), sub_system="block"):
    return StorageEvent(
        event_type=event_type, sub_system=sub_system, severity=severity, kdev=kdev,
        msg=f"{event_type} on {kdev}", timestamp=T0 + _dt.timedelta(minutes=minutes),
        cur_blk_info=BlkInfo(wwid=wwid, blk_path=f"/dev/{kdev}", owners_wwids=list(owners)),
    )


@pytest.fixture
def store_spec(tmp_path):
    spec = f"sqlite:{tmp_path}/events.db"
    store = open_store(spec, write=True)
    for e in (
        event("BLK_IO_ERROR", "sdb", Severity.Error, 0, wwid="naa.1"),
        event("FS_IO_ERROR", "sdb1", Severity.Error, 1, wwid="naa.1-part1", owners=["naa.1"], sub_system="ext4"),
        event("FS_MOUNTED", "sdc1", Severity.Info, 2, wwid="naa.2-part1", owners=["naa.2"], sub_system="ext4"),
        event("FS_REMOUNT_READ_ONLY", "sdb1", Severity.Critical, 3, wwid="naa.1-part1", owners=["naa.1"],
              sub_system="ext4"),
    ):
        store.append(e)
    store.close()
    return spec


def run_query(store_spec, *args):
    result = CliRunner().invoke(main, ["query", "--store", store_spec, "--jsonl", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_query_filters(store_spec):
    assert [e["event_type"] for e in run_query(store_spec)] == [
        "BLK_IO_ERROR", "FS_IO_ERROR", "FS_MOUNTED", "FS_REMOUNT_READ_ONLY"]
    assert [e["kdev"] for e in run_query(store_spec, "--severity", "critical")] == ["sdb1"]
    assert len(run_query(store_spec, "--severity", "error")) == 3
    assert [e["event_type"] for e in run_query(store_spec, "--event-type", "fs_mounted",
                                               "--event-type", "BLK_IO_ERROR")] == ["BLK_IO_ERROR", "FS_MOUNTED"]
    assert [e["kdev"] for e in run_query(store_spec, "--sub-system", "EXT4", "-n", "2")] == ["sdc1", "sdb1"]
    assert [e["event_type"] for e in run_query(
        store_spec, "--since", "2026-11-20 10:01:00Z", "--until", "2026-11-20T10:02:00+00:00")] == [
        "FS_IO_ERROR", "FS_MOUNTED"]
    # --blk naming the disk's WWID finds the disk's events and those of devices stacked on it
    assert [e["kdev"] for e in run_query(store_spec, "--blk", "naa.1")] == ["sdb", "sdb1", "sdb1"]
    one = run_query(store_spec)[1]
    assert [e["event_id"] for e in run_query(store_spec, "--event-id", one["event_id"])] == [one["event_id"]]
    assert run_query(store_spec, "--event-type", "NVME_IO_ERROR") == []  # nothing: still exit 0


def test_query_output_formats_and_errors(store_spec, tmp_path):
    text = CliRunner().invoke(main, ["query", "--store", store_spec, "-n", "1"])
    assert text.exit_code == 0
    assert text.output.count("\n") == 1
    assert "Critical ext4 FS_REMOUNT_READ_ONLY sdb1:" in text.output
    pretty = CliRunner().invoke(main, ["query", "--store", store_spec, "-J", "-n", "2"])
    assert [json.loads(chunk)["kdev"] for chunk in pretty.output.strip().split("\n\n")] == ["sdc1", "sdb1"]
    bad = CliRunner().invoke(main, ["query", "--store", store_spec, "--severity", "loud"])
    assert bad.exit_code == 2 and "severity" in bad.output
    missing = CliRunner().invoke(main, ["query", "--store", f"sqlite:{tmp_path}/nothing/here.db"])
    assert missing.exit_code == 1
    assert "here.db" in missing.output


def test_monitor_follows_new_events_and_flushes_each(store_spec):
    proc = subprocess.Popen([PRPT, "monitor", "--store", store_spec, "--jsonl", "--severity", "error", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(proc.stderr, "following")
        store = open_store(store_spec, write=True)
        store.append(event("FS_MOUNTED", "sdd1", Severity.Info, 10))  # filtered out
        store.append(event("BLK_IO_ERROR", "sdd", Severity.Error, 11))
        store.close()
        line = wait_for_line(proc.stdout, "BLK_IO_ERROR")
        assert json.loads(line)["kdev"] == "sdd"  # the old events were not replayed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert proc.stdout.read() == b""  # the Info event never came
    finally:
        proc.kill()

