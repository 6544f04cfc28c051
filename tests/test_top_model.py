"""``prpt top``'s state: counting, stacking, sorting, keys, daemon status."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pty
import subprocess
import termios
from pathlib import Path

import pytest

from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.top import keys as K
from peripety.top.controller import handle_key
from peripety.top.keys import KeyReader, decode_keys
from peripety.top.model import SortMode, TopModel, read_daemon_status

FIXTURES = Path(__file__).parent / "fixtures" / "top"
NOW = dt.datetime(2025, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
SDB_WWID = "naa.6001405f1d2c3b4a59876543210abcde"
LV_WWID = "LVM-Xq3vJ9bYq1cTzKpL0dZkF2aHf8W7nR5sUuVwXyZa"


def load_events() -> list[StorageEvent]:
    with open(FIXTURES / "events.jsonl", encoding="utf-8") as handle:
        return [StorageEvent.from_json(line) for line in handle]


def loaded_model() -> TopModel:
    model = TopModel("stor1", "sqlite:test")
    model.ingest(load_events())
    return model


def row_paths(model: TopModel) -> list[str]:
    return [("  " * row.depth) + row.stats.path for row in model.device_rows()]


def disk_event(kdev: str, severity=Severity.Error, seconds_ago=1, event_type="BLK_IO_ERROR", **kwargs) -> StorageEvent:
    info = BlkInfo(wwid=f"wwid-{kdev}", blk_type="SCSI", blk_path=f"/dev/{kdev}", preferred_blk_path=f"/dev/{kdev}")
    return StorageEvent(
        event_type=event_type, sub_system="block", severity=severity, kdev=kdev, cur_blk_info=info,
        timestamp=NOW - dt.timedelta(seconds=seconds_ago), **kwargs,
    )


# -- counting -----------------------------------------------------------------------


def test_totals_and_device_counts_weigh_storm_counts():
    model = loaded_model()
    assert model.totals == [1, 66, 3, 3]  # crit, err, warn, info occurrences
    sdb = model.devices[SDB_WWID]
    assert sdb.counts == [0, 63, 1, 0]  # 1 + 57 + 1 + 4 errors, 1 sense-key warning
    assert sdb.last_event_type == "BLK_IO_ERROR"
    assert sdb.worst is Severity.Error
    # The kmsg overrun belongs to no device: counted, but no row.
    assert len(model.devices) == 5


def test_same_event_again_counts_once_and_a_grown_storm_counts_the_difference():
    model = loaded_model()
    events = load_events()
    assert model.ingest(events) == 0  # the seeding query overlapping the follower
    storm = dataclasses.replace(events[4], count=60)  # the x57 storm, 3 more since
    assert model.ingest([storm]) == 1
    assert model.devices[SDB_WWID].counts[1] == 66
    shown = [e for e in model.visible_events(50) if e.event_id == storm.event_id]
    assert [e.count for e in shown] == [60]


def test_rate_spreads_a_storm_over_its_duration():
    model = TopModel("h", "s")
    # 100 occurrences over 100 s: 10 of them in the last 10 s -> 1/s, not 10/s.
    storm = disk_event("sdq", seconds_ago=100, count=100, last_timestamp=NOW)
    model.ingest([storm])
    assert model.rate(NOW) == pytest.approx(1.0, abs=0.11)
    assert model.rate(NOW + dt.timedelta(minutes=5)) == 0


def test_trend_counts_errors_per_slot_oldest_first():
    model = TopModel("h", "s")
    model.ingest([disk_event("sdq", seconds_ago=1), disk_event("sdq", seconds_ago=2), disk_event("sdq", seconds_ago=95)])
    model.ingest([disk_event("sdq", Severity.Warning, seconds_ago=1)])  # not an error
    # NOW is on a slot boundary: errors 1-2 s before it are in the slot
    # before NOW's; the last cell is the slot still filling.
    trend = model.devices["wwid-sdq"].trend(NOW)
    assert len(trend) == 20
    assert trend[-2:] == [2, 0] and sum(trend) == 3
    assert model.devices["wwid-sdq"].trend(NOW - dt.timedelta(seconds=1), per_cell=2)[-1] == 2


def test_identity_follows_the_newest_event():
    model = TopModel("h", "s")
    newer = disk_event("sdq", seconds_ago=1)
    newer.cur_blk_info.mount_point = "/mnt/new"
    older = disk_event("sdq", seconds_ago=50, event_type="FS_ERROR")
    model.ingest([newer, older])
    stats = model.devices["wwid-sdq"]
    assert stats.mount_point == "/mnt/new"
    assert stats.last_event_type == "BLK_IO_ERROR"


# -- rows -----------------------------------------------------------------------------


def test_rows_worst_first_with_stacked_device_under_its_disk():
    assert row_paths(loaded_model()) == [
        "/dev/sdb",
        "  /dev/mapper/vg0-data",
        "/dev/nvme0n1",
        "/dev/sdc",
        "/dev/loop0",
    ]


def test_stacked_device_goes_under_the_nearest_owner():
    # An LV on a multipath map on two paths: owners are flattened lists.
    def ev(kdev, wwid, owners, sev=Severity.Error):
        info = BlkInfo(wwid=wwid, blk_path=f"/dev/{kdev}", preferred_blk_path=f"/dev/{kdev}", owners_wwids=owners)
        return StorageEvent(event_type="X", sub_system="block", severity=sev, kdev=kdev, cur_blk_info=info, timestamp=NOW)

    model = TopModel("h", "s")
    model.ingest([
        ev("lv", "w-lv", ["w-mp", "w-a", "w-b"], Severity.Critical),
        ev("mp", "w-mp", ["w-a", "w-b"]),
        ev("a", "w-a", []),
        ev("b", "w-b", [], Severity.Warning),
    ])
    # Worst subtree first: the path holding the critical LV.
    assert row_paths(model) == ["/dev/a", "  /dev/mp", "    /dev/lv", "/dev/b"]


def test_owner_cycle_still_lists_every_device_once():
    a = StorageEvent(event_type="X", sub_system="block", kdev="a", timestamp=NOW,
                     cur_blk_info=BlkInfo(wwid="wa", blk_path="/dev/a", owners_wwids=["wb"]))
    b = StorageEvent(event_type="X", sub_system="block", kdev="b", timestamp=NOW,
                     cur_blk_info=BlkInfo(wwid="wb", blk_path="/dev/b", owners_wwids=["wa"]))
    model = TopModel("h", "s")
    model.ingest([a, b])
    assert sorted(p.strip() for p in row_paths(model)) == ["/dev/a", "/dev/b"]


def test_sort_modes_cycle_and_order():
    model = loaded_model()
    orders = {}
    for _ in SortMode:
        orders[model.view.sort] = [p.strip() for p in row_paths(model)]
        handle_key(model, "s", NOW)
    assert model.view.sort is SortMode.WORST  # back to the start
    assert orders[SortMode.RECENT][0] == "/dev/sdb"  # 2 s ago
    assert orders[SortMode.RECENT][-1] == "/dev/loop0"
    assert orders[SortMode.COUNT][0] == "/dev/sdb"
    assert orders[SortMode.NAME] == ["/dev/loop0", "/dev/nvme0n1", "/dev/sdb", "/dev/mapper/vg0-data", "/dev/sdc"]


def test_filter_text_limits_devices_and_events():
    model = loaded_model()
    model.view.filter_text = "nvme"
    assert row_paths(model) == ["/dev/nvme0n1"]
    assert {e.kdev for e in model.visible_events(50)} == {"nvme0n1"}
    model.view.filter_text = "fs_mounted"  # an event type, any case
    assert {e.event_type for e in model.visible_events(50)} == {"FS_MOUNTED"}
    assert {p.strip() for p in row_paths(model)} == {"/dev/loop0", "/dev/mapper/vg0-data"}


def test_visible_events_newest_first_and_limited():
    events = loaded_model().visible_events(3)
    assert [e.event_id[-2:] for e in events] == ["12", "05", "11"]  # the storm's last hit was 8 s ago


# -- keys -> view ---------------------------------------------------------------------


def test_arrow_keys_select_a_device_and_show_only_its_events():
    model = loaded_model()
    handle_key(model, K.DOWN, NOW)
    assert model.view.selected_key == SDB_WWID
    assert {e.kdev for e in model.visible_events(50)} == {"sdb"}
    handle_key(model, K.DOWN, NOW)
    assert model.view.selected_key == LV_WWID
    for _ in range(10):
        handle_key(model, K.DOWN, NOW)  # stops on the last row
    assert model.view.selected_key == model.device_rows()[-1].stats.key
    for _ in range(10):
        handle_key(model, K.UP, NOW)  # past the first row: all devices again
    assert model.view.selected_key is None
    assert len(model.visible_events(50)) == 12


def test_filter_prompt_typing_enter_and_escape():
    model = loaded_model()
    for key in ["/", "s", "d", "x", K.BACKSPACE, "c", K.ENTER]:
        handle_key(model, key, NOW)
    assert model.view.prompt is None and model.view.filter_text == "sdc"
    assert model.view.requery  # the app reads the store again with it
    model.view.requery = False
    handle_key(model, "f", NOW)
    assert model.view.prompt == ""  # a fresh filter, never appended to the old one
    handle_key(model, "q", NOW)  # typed into the prompt, not quitting
    assert not model.view.quit and model.view.prompt == "q"
    handle_key(model, K.ESCAPE, NOW)
    assert model.view.filter_text == "sdc" and not model.view.requery
    handle_key(model, K.ESCAPE, NOW)  # outside the prompt: clear the filter
    assert model.view.filter_text == "" and model.view.requery
    handle_key(model, "q", NOW)
    assert model.view.quit


def test_tab_enter_open_an_event_and_escape_goes_back():
    model = loaded_model()
    handle_key(model, K.DOWN, NOW)  # select sdb
    handle_key(model, K.ENTER, NOW)  # its events, cursor on the newest
    assert model.view.focus == "events" and model.view.event_cursor == 0
    handle_key(model, K.DOWN, NOW)
    handle_key(model, K.END, NOW)
    sdb_events = model.visible_events()
    assert model.view.event_cursor == len(sdb_events) - 1
    handle_key(model, K.HOME, NOW)
    handle_key(model, K.PAGE_DOWN, NOW, page=2)
    assert model.view.event_cursor == 2
    handle_key(model, K.ENTER, NOW)
    assert model.view.detail_event_id == sdb_events[2].event_id
    handle_key(model, K.DOWN, NOW)  # scrolls the detail, does not move the cursor
    assert model.view.detail_offset == 1 and model.view.event_cursor == 2
    handle_key(model, K.ESCAPE, NOW)
    assert model.view.detail_event_id is None and model.view.focus == "events"
    handle_key(model, K.TAB, NOW)
    assert model.view.focus == "devices"
    handle_key(model, K.ESCAPE, NOW)
    assert model.view.selected_key is None


def test_help_opens_and_any_key_closes_it():
    model = loaded_model()
    handle_key(model, "?", NOW)
    assert model.view.help
    handle_key(model, "s", NOW)
    assert not model.view.help and model.view.sort is SortMode.WORST  # the key only closed the help
    handle_key(model, "?", NOW)
    handle_key(model, "q", NOW)
    assert model.view.quit


def test_root_cause_chain_follows_ids_and_stops_at_an_unknown_one():
    model = loaded_model()
    remount = next(e for e in model.recent if e.event_type == "FS_REMOUNT_READ_ONLY")
    chain = model.root_cause_chain(remount)
    assert [e.event_type for e in chain] == ["FS_IO_ERROR", "BLK_IO_ERROR"]
    asked = []
    model.by_id.pop(chain[1].event_id)
    model.lookup = lambda event_id: asked.append(event_id)
    chain = model.root_cause_chain(remount)
    assert asked == [remount_cause_of_cause(model, remount)] and isinstance(chain[-1], str)


def remount_cause_of_cause(model, remount):
    return model.by_id[remount.root_cause_event_id].root_cause_event_id


def test_model_as_json_carries_rows_state_and_events():
    from tests.test_top_panels import sample_states

    model = loaded_model()
    model.update_state(sample_states())
    data = json.loads(json.dumps(model.to_dict(NOW)))
    rows = {row["name"]: row for row in data["devices"]}
    assert rows["/dev/mapper/mpatha"]["state"]["multipath"]["up"] == 1
    assert rows["/dev/md0"]["state_summary"] == "degraded 1/2 recover 45%"
    assert rows["/dev/sdb"]["state"]["io"]["iops"] == pytest.approx(155.5)
    assert rows["/dev/sdb"]["counts"]["err"] == 63 and rows["/dev/sdb"]["wwid"] == SDB_WWID
    assert data["events"][0]["event_type"] == "BLK_IO_ERROR" and data["daemon"]["running"] is False


def test_pause_holds_new_events_until_resumed():
    model = TopModel("h", "s")
    handle_key(model, "p", NOW)
    assert model.view.paused_at == NOW
    model.offer([disk_event("sdq")])
    assert model.devices == {} and len(model.pending) == 1
    handle_key(model, "p", NOW)
    assert not model.view.paused and model.pending == []
    assert model.devices["wwid-sdq"].counts[1] == 1


# -- key decoding and the terminal ----------------------------------------------------


def test_decode_keys():
    assert decode_keys(b"q") == ["q"]
    assert decode_keys(b"\x1b[A\x1b[B\x1bOA\x1bOB") == [K.UP, K.DOWN, K.UP, K.DOWN]
    assert decode_keys(b"\x1b") == [K.ESCAPE]
    assert decode_keys(b"\r\n\x7f\x08") == [K.ENTER, K.ENTER, K.BACKSPACE, K.BACKSPACE]
    assert decode_keys(b"\x1b[15~s") == ["s"]  # F5 skipped whole
    assert decode_keys(b"\x1b[5~\x1b[6~\x1b[H\x1b[F\x1b[1~\x1b[4~\t") == [
        K.PAGE_UP, K.PAGE_DOWN, K.HOME, K.END, K.HOME, K.END, K.TAB]
    assert decode_keys("é/".encode()) == ["é", "/"]
    assert decode_keys(b"\x01") == []  # Ctrl-A: not printable


def test_key_reader_sets_cbreak_and_restores_even_on_error():
    parent, child = pty.openpty()
    try:
        before = termios.tcgetattr(child)
        assert before[3] & termios.ICANON
        with pytest.raises(RuntimeError):
            with KeyReader(child) as reader:
                during = termios.tcgetattr(child)
                assert not during[3] & termios.ICANON and not during[3] & termios.ECHO
                os.write(parent, b"\x1b[Bq")
                assert reader.read() == [K.DOWN, "q"]
                raise RuntimeError("boom")
        assert termios.tcgetattr(child) == before
    finally:
        os.close(parent)
        os.close(child)


def test_key_reader_ignores_a_non_terminal(tmp_path):
    with open(tmp_path / "f", "w+") as handle, KeyReader(handle.fileno()) as reader:
        assert reader.fileno() is None


# -- daemon status ---------------------------------------------------------------------


def write_status(path: Path, pid: int) -> None:
    path.write_text(json.dumps({
        "pid": pid, "started": "2025-11-26T11:00:00.000000+00:00", "store": "journal",
        "sources": ["kmsg", "journal", "bpf"],
        "bpf": {"attached": ["block:block_rq_error"], "skipped": {"scsi:scsi_dispatch_cmd_timeout": "not in this kernel"}},
    }))


def test_daemon_status_of_a_live_daemon(tmp_path):
    write_status(tmp_path / "status.json", os.getpid())
    status = read_daemon_status(tmp_path / "status.json")
    assert status.running and status.pid == os.getpid()
    assert status.sources == ("kmsg", "journal", "bpf")
    assert status.bpf_attached == ("block:block_rq_error",)
    assert "scsi:scsi_dispatch_cmd_timeout" in status.bpf_skipped


def test_daemon_status_store_keys_shown_when_present_tolerated_when_absent(tmp_path):
    path = tmp_path / "status.json"
    write_status(path, os.getpid())
    status = read_daemon_status(path)
    assert (status.store_ok, status.store_error, status.spool_depth) == (None, None, None)
    data = json.loads(path.read_text())
    data.update(store_ok=False, store_error="journald socket: connection refused", spool_depth=17)
    path.write_text(json.dumps(data))
    status = read_daemon_status(path)
    assert (status.store_ok, status.store_error, status.spool_depth) == (False, "journald socket: connection refused", 17)


def test_daemon_status_with_a_dead_pid_is_not_running(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: the pid no longer exists
    write_status(tmp_path / "status.json", child.pid)
    status = read_daemon_status(tmp_path / "status.json")
    assert not status.running and status.reason == "daemon not running"


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2]", '{"pid": "x"}'])
def test_daemon_status_missing_or_broken_file_is_not_running(tmp_path, content):
    path = tmp_path / "status.json"
    if content is not None:
        path.write_text(content)
    status = read_daemon_status(path)
    assert not status.running and status.reason


def test_read_only_and_shutdown_from_events_until_the_next_mount():
    """Linux 6.6-6.14 ext4 remount-ro and XFS shutdown leave no trace in
    mountinfo: the events say it, until the filesystem is mounted again."""
    def fs_event(event_type, minute):
        return StorageEvent(event_type=event_type, sub_system="xfs", severity=Severity.Critical, kdev="sdq",
                            cur_blk_info=BlkInfo(wwid="wwid-sdq", blk_path="/dev/sdq"),
                            timestamp=NOW - dt.timedelta(minutes=minute))

    model = TopModel("h", "s")
    model.ingest([fs_event("FS_MOUNTED", 30), fs_event("FS_REMOUNT_READ_ONLY", 20), fs_event("FS_SHUTDOWN", 10)])
    stats = model.devices["wwid-sdq"]
    assert stats.state_summary == "ro shutdown" and stats.alarming
    model.ingest([fs_event("FS_MOUNTED", 1)])
    assert stats.state_summary == "" and not stats.fs_shutdown and not stats.fs_read_only_by_event
