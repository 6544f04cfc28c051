"""``prpt top`` in a real terminal (tmux, 160x45) following a real SQLite
store that the test writes to while it runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from peripety.event import BlkInfo, Severity, StorageEvent, now
from peripety.stores.sqlite import SqliteStore
from tests.harness.tmux import TmuxTerminal, assert_quits_cleanly

PRPT = Path(sys.executable).with_name("prpt")



def disk_event(kdev: str, event_type: str, severity: Severity, count: int = 1) -> StorageEvent:
    info = BlkInfo(wwid=f"naa.test{kdev}", blk_type="SCSI", blk_path=f"/dev/{kdev}",
                   preferred_blk_path=f"/dev/{kdev}", mount_point=f"/mnt/{kdev}")
    when = now()
    return StorageEvent(
        event_type=event_type, sub_system="block", severity=severity, kdev=kdev, cur_blk_info=info,
        msg=f"{event_type.lower()} on {kdev}", timestamp=when - dt.timedelta(seconds=count - 1),
        last_timestamp=when if count > 1 else None, count=count,
    )


def frame_with(*texts: str):
    """A whole frame (footer drawn) showing every one of ``texts``: the
    screen may be read while a frame is half written."""

    def complete(screen: str) -> bool:
        lines = screen.rstrip("\n").splitlines()
        footers = ("q quit", "filter (", "any key closes", "Esc back")
        return bool(lines) and lines[-1].startswith(footers) and all(t in screen for t in texts)

    return complete


@pytest.fixture
def store(tmp_path):
    store = SqliteStore(tmp_path / "events.db", write=True)
    store.append(disk_event("loop7", "FS_MOUNTED", Severity.Info))  # history to seed from
    yield store
    store.close()


def test_live_view_follows_the_store_and_q_restores_the_terminal(store, tmp_path):
    command = [str(PRPT), "top", "--no-state", "--store", f"sqlite:{store.path}", "--status-file", str(tmp_path / "none.json")]
    with TmuxTerminal(command, width=160, height=45) as term:
        screen = term.wait_for(frame_with("Devices (1)"))
        assert "loop7" in screen and "daemon not running" in screen
        assert term.pane_flag("alternate_on") == "1"
        lines = screen.splitlines()
        assert lines[0].startswith("prpt top") and "q quit" in lines[44]  # uses all 45 rows

        store.append(disk_event("sdz", "BLK_IO_ERROR", Severity.Error))
        screen = term.wait_for(frame_with("Devices (2)"))
        device_lines = [line for line in screen.splitlines() if "/mnt/" in line]
        assert "sdz" in device_lines[0] and "loop7" in device_lines[1]  # the failing disk first

        store.append(disk_event("sdz", "BLK_IO_ERROR", Severity.Error, count=42))
        screen = term.wait_for(frame_with("×42"))
        assert "err 43" in screen  # header totals follow

        # Select the failing disk: the event list narrows to it.
        term.send_keys("Down")
        screen = term.wait_for(frame_with("Recent events · sdz"))
        assert "FS_MOUNTED" not in screen.split("Recent events")[1]

        # Enter: into the device's events; Enter again: the newest one in full.
        term.send_keys("Enter")
        term.wait_for(frame_with("↑↓ events"))
        term.send_keys("Enter")
        screen = term.wait_for(frame_with("Event detail", "Raw line", "Root cause"))
        assert '"event_type": "BLK_IO_ERROR"' in screen and "blk_io_error on sdz" in screen
        term.send_keys("Escape")
        term.wait_for(frame_with("Recent events · sdz"))
        term.send_keys("Tab")
        term.wait_for(frame_with("↑↓ devices"))

        # Help, closed by any key.
        term.send_keys("?")
        screen = term.wait_for(frame_with("Help", "paths up/total"))
        assert "Devices (" not in screen
        term.send_keys("x")
        term.wait_for(frame_with("Devices (2)"))

        # Filter prompt: type a device name, Enter applies it.
        term.send_keys("/")
        term.wait_for(frame_with("filter (device"))
        term.send_text("loop")
        term.send_keys("Enter")
        screen = term.wait_for(frame_with("filter 'loop'"))
        assert "Devices (1)" in screen

        # A second filter starts empty: typing replaces, never appends.
        term.send_keys("f")
        term.wait_for(frame_with("filter (device"))
        term.send_text("sdz")
        term.send_keys("Enter")
        screen = term.wait_for(frame_with("filter 'sdz'"))
        assert "Devices (1)" in screen and "loop7" not in screen

        assert_quits_cleanly(term)


def test_filter_reads_the_store_not_what_was_on_screen(tmp_path):
    """More events than the view keeps (500 recent): a filter still finds
    every matching one, because it queries the store again."""
    store = SqliteStore(tmp_path / "events.db", write=True)
    store.append(disk_event("sdw", "SCSI_CMD_FAILED", Severity.Error))  # oldest: long off the recent buffer
    for n in range(600):
        store.append(disk_event(f"noise{n % 40}", "BLK_IO_ERROR", Severity.Warning))
    command = [str(PRPT), "top", "--no-state", "--store", f"sqlite:{store.path}", "--status-file",
               str(tmp_path / "none.json")]
    with TmuxTerminal(command, width=160, height=45) as term:
        term.wait_for(frame_with("Devices (41)"))
        term.send_keys("f")
        term.send_text("sdw")
        term.send_keys("Enter")
        screen = term.wait_for(frame_with("filter 'sdw'", "Devices (1)"))
        assert "SCSI_CMD_FAILED" in screen.split("Recent events")[1]
        assert_quits_cleanly(term)
    store.close()


def test_pause_freezes_the_view_until_resumed(store, tmp_path):
    command = [str(PRPT), "top", "--no-state", "--store", f"sqlite:{store.path}", "--status-file", str(tmp_path / "none.json")]
    with TmuxTerminal(command, width=80, height=24) as term:
        term.wait_for(frame_with("Devices (1)"))
        term.send_keys("p")
        term.wait_for(frame_with("PAUSED +0"))
        store.append(disk_event("sdy", "SCSI_CMD_FAILED", Severity.Error))
        screen = term.wait_for(frame_with("PAUSED +1"))
        assert "Devices (1)" in screen and "sdy" not in screen
        term.send_keys("p")
        screen = term.wait_for(frame_with("Devices (2)"))
        assert "sdy" in screen and "PAUSED" not in screen
        term.send_keys("q")
        assert term.wait_exit() == 0


def test_sigterm_restores_the_terminal_and_daemon_sources_show(store, tmp_path):
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"pid": os.getpid(), "started": "2025-11-26T11:00:00+00:00", "store": "sqlite",
                                  "sources": ["kmsg", "journal"], "bpf": {"attached": [], "skipped": {}}}))
    command = [str(PRPT), "top", "--no-state", "--store", f"sqlite:{store.path}", "--status-file", str(status)]
    with TmuxTerminal(command, width=100, height=30) as term:
        screen = term.wait_for(frame_with("Devices (1)"))
        assert f"daemon kmsg journal (pid {os.getpid()})" in screen
        os.kill(term.command_pid(), signal.SIGTERM)
        assert term.wait_exit() == 128 + signal.SIGTERM
        assert term.stty_after == term.stty_before
        assert term.pane_flag("alternate_on") == "0" and term.pane_flag("cursor_flag") == "1"
