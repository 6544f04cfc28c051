"""``prpt top --once`` and the shared filter options, on a real SQLite store."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from peripety.cli import main
from peripety.cli.filters import build_filter
from peripety.event import Severity, StorageEvent, now
from peripety.stores.sqlite import SqliteStore

FIXTURES = Path(__file__).parent / "fixtures" / "top"
RECORDED_AT = dt.datetime(2025, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
PRPT = Path(sys.executable).with_name("prpt")


def recent_events() -> list[StorageEvent]:
    """The sample events moved so the newest happened seconds ago."""
    shift = now() - RECORDED_AT
    events = []
    with open(FIXTURES / "events.jsonl", encoding="utf-8") as handle:
        for line in handle:
            event = StorageEvent.from_json(line)
            event.timestamp += shift
            if event.last_timestamp:
                event.last_timestamp += shift
            events.append(event)
    return events


@pytest.fixture
def store_spec(tmp_path) -> str:
    store = SqliteStore(tmp_path / "events.db", write=True)
    for event in recent_events():
        store.append(event)
    store.close()
    return f"sqlite:{tmp_path / 'events.db'}"


def top(*args: str):
    """Without live state: the rows are the store's devices alone, whatever this machine's disks do."""
    result = CliRunner().invoke(main, ["top", "--no-state", "--status-file", "/nonexistent/status.json", *args])
    return result


def test_once_lists_devices_and_events(store_spec):
    result = top("--store", store_spec, "--once")
    assert result.exit_code == 0, result.output
    assert "Devices (5)" in result.output
    assert "daemon not running" in result.output
    assert "×57" in result.output  # the storm, with its count
    assert "\x1b[" not in result.output  # not a terminal: plain text


def test_severity_filter(store_spec):
    result = top("--store", store_spec, "--once", "--severity", "err")
    assert result.exit_code == 0, result.output
    assert "Devices (2)" in result.output
    assert "nvme0n1" not in result.output and "FS_MOUNTED" not in result.output


def test_event_type_and_sub_system_filters(store_spec):
    result = top("--store", store_spec, "--event-type", "fs_mounted", "--sub-system", "EXT4")
    assert result.exit_code == 0, result.output
    assert "Devices (2)" in result.output and "loop0" in result.output
    assert "BLK_IO_ERROR" not in result.output


def test_blk_naming_no_present_device_matches_the_kernel_name(store_spec):
    # No sdc on this machine: the key is matched as a kernel name.
    result = top("--store", store_spec, "--blk", "/dev/sdc")
    assert result.exit_code == 0, result.output
    assert "Devices (1)" in result.output and "SCSI_SPINNING" in result.output


def test_since_seeds_only_newer_history(store_spec):
    result = top("--store", store_spec, "--since", "-100s")
    assert result.exit_code == 0, result.output
    assert "loop0" not in result.output  # mounted 50 minutes ago
    assert "sdb" in result.output


def test_default_history_is_the_last_hour(tmp_path):
    store = SqliteStore(tmp_path / "events.db", write=True)
    old = StorageEvent(event_type="FS_ERROR", sub_system="ext4", kdev="sdo", timestamp=now() - dt.timedelta(hours=2))
    fresh = StorageEvent(event_type="FS_ERROR", sub_system="ext4", kdev="sdn", timestamp=now())
    store.append(old)
    store.append(fresh)
    store.close()
    result = top("--store", f"sqlite:{tmp_path / 'events.db'}")
    assert "sdn" in result.output and "sdo" not in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--severity", "loud"], "unknown severity"),
        (["--sub-system", "floppy"], "unknown sub_system"),
        (["--since", "whenever"], "cannot read the time"),
    ],
)
def test_bad_option_values_are_usage_errors(args, message, store_spec):
    result = top("--store", store_spec, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_missing_store_is_a_clear_error(tmp_path):
    result = top("--store", f"sqlite:{tmp_path / 'none.db'}")
    assert result.exit_code == 1
    assert "no event database" in result.output


def test_build_filter():
    flt = build_filter(("nosuchdisk0",), "warn", ("ext4",), ("FS_ERROR",), limit=5)
    # gone (or never here): still matched, as a kernel name or a WWID
    assert flt.kdevs == ("nosuchdisk0",) and flt.wwids == ("nosuchdisk0",)
    assert flt.severity is Severity.Warning
    assert flt.sub_systems == ("ext4",) and flt.event_types == ("FS_ERROR",) and flt.limit == 5
    assert build_filter(None, None).devices == ()


def test_build_filter_resolves_a_present_device_to_its_wwid():
    from peripety.devices import resolve

    # a real block device of this machine that has a WWID
    disk = next(d for d in sorted(os.listdir("/sys/block")) if resolve(d).wwid)
    flt = build_filter(f"/dev/{disk}", None)
    assert flt.wwids == (resolve(disk).wwid,) and flt.kdevs == (disk,)


def test_real_process_piped_prints_one_plain_frame(store_spec):
    result = subprocess.run(
        [str(PRPT), "top", "--store", store_spec, "--status-file", "/nonexistent"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, COLUMNS="120"),
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("prpt top") and max(map(len, lines)) == 120  # $COLUMNS honoured
    assert "phys_seg 1 prio class 2" in result.stdout  # the end of a long message: wrapped, not cut


def run_prpt(*args, **env):
    return subprocess.run([str(PRPT), "top", "--status-file", "/nonexistent", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


@pytest.mark.parametrize("width", [80, 160])
def test_width_option_sets_the_frame_width(store_spec, width):
    result = run_prpt("--store", store_spec, "--no-state", "--width", str(width), COLUMNS="100")
    assert result.returncode == 0, result.stderr
    assert max(map(len, result.stdout.splitlines())) == width
    assert ("WWID" in result.stdout) == (width == 160)


@pytest.mark.parametrize("env,args,ascii_expected", [
    ({"LANG": "C", "LC_ALL": ""}, [], True),
    ({"LANG": "C.UTF-8", "LC_ALL": ""}, [], False),
    ({"LANG": "en_US.UTF-8", "LC_ALL": ""}, ["--ascii"], True),
    ({"LANG": "C", "LC_ALL": ""}, ["--no-ascii"], False),
])
def test_plain_ascii_unless_the_locale_is_utf8(store_spec, env, args, ascii_expected):
    result = subprocess.run([str(PRPT), "top", "--status-file", "/nonexistent", "--store", store_spec, "--no-state",
                             *args], capture_output=True, timeout=60,
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("LC_")}, **env})
    assert result.returncode == 0, result.stderr
    assert result.stdout.isascii() == ascii_expected
    if ascii_expected:
        assert b"+- Devices (5) - sort worst" in result.stdout


def test_once_json_prints_the_model(store_spec):
    import json

    result = run_prpt("--store", store_spec, "--once", "-J", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    names = {row["name"] for row in data["devices"]}
    assert {"/dev/sdb", "/dev/mapper/vg0-data", "/dev/nvme0n1", "/dev/sdc", "/dev/loop0"} <= names
    assert data["daemon"]["running"] is False and data["totals"]["err"] == 66
    assert data["events"][0]["event_type"] == "BLK_IO_ERROR" and data["events"][0]["count"] == 4
    sdb = next(row for row in data["devices"] if row["name"] == "/dev/sdb")
    assert sdb["wwid"] == "naa.6001405f1d2c3b4a59876543210abcde" and sdb["counts"]["err"] == 63
