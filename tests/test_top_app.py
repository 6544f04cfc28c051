"""The live loop in process: a pty as keyboard and a follower with a file
descriptor (as the journal store's), without tmux."""

from __future__ import annotations

import datetime as dt
import io
import os
import pty
import signal
import termios

from rich.console import Console

from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.top.app import run_live
from peripety.top.model import TopModel

NOW = dt.datetime(2025, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)


class PipeFollower:
    """Follower test double whose fileno() turns readable when events wait."""

    def __init__(self):
        self._read_fd, self._write_fd = os.pipe()
        self._waiting: list[StorageEvent] = []
        self.closed = False

    def push(self, *events: StorageEvent) -> None:
        self._waiting.extend(events)
        os.write(self._write_fd, b"x")

    def fileno(self) -> int:
        return self._read_fd

    def read(self) -> list[StorageEvent]:
        os.read(self._read_fd, 4096)
        events, self._waiting = self._waiting, []
        return events

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)


def event(kdev: str) -> StorageEvent:
    return StorageEvent(event_type="BLK_IO_ERROR", sub_system="block", severity=Severity.Error, kdev=kdev,
                        cur_blk_info=BlkInfo(wwid=f"w-{kdev}", blk_path=f"/dev/{kdev}"), timestamp=NOW)


def test_keys_and_follower_events_drive_the_loop_and_everything_is_restored():
    keyboard, terminal = pty.openpty()
    follower = PipeFollower()
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=80, height=24, color_system=None)
    model = TopModel("h", "s")
    model.ingest([event("sda")])
    attrs_before = termios.tcgetattr(terminal)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    try:
        follower.push(event("sdb"))
        os.write(keyboard, b"s\x1b[Bq")  # sort, select the first device, quit
        run_live(model, follower, console, status_path="/nonexistent", clock=lambda: NOW, stdin_fd=terminal)
        assert model.view.quit
        assert set(model.devices) == {"w-sda", "w-sdb"}
        assert model.view.sort.value == "recent"
        assert model.view.selected_key is not None
        assert "Devices (1)" in output.getvalue()  # the first frame, before sdb arrived
        assert termios.tcgetattr(terminal) == attrs_before
        assert signal.getsignal(signal.SIGTERM) is sigterm_before
    finally:
        follower.close()
        os.close(keyboard)
        os.close(terminal)
