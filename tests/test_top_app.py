"""The live loop in process: a pty as keyboard and the real journal store's
follower (a file descriptor to poll) on a private journald, without tmux."""

from __future__ import annotations

import datetime as dt
import io
import os
import pty
import signal
import termios
import threading
import time

from rich.console import Console

import pytest

from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.stores import EventFilter, open_store
from peripety.stores.provenance import SenderPolicy
from peripety.top.app import run_live
from peripety.top.model import TopModel
from tests.harness.services import private_journald
from tests.stores_support import namespace_name

NOW = dt.datetime(2025, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)


def event(kdev: str) -> StorageEvent:
    return StorageEvent(event_type="BLK_IO_ERROR", sub_system="block", severity=Severity.Error, kdev=kdev,
                        cur_blk_info=BlkInfo(wwid=f"w-{kdev}", blk_path=f"/dev/{kdev}"), timestamp=NOW)


@pytest.fixture
def journal_store():
    with private_journald(namespace_name("topapp")) as ns:
        # this test writes the events itself: trust this process as their writer
        store = open_store(f"journal:{ns}", write=True, writers=SenderPolicy.this_process())
        yield store
        store.close()


def test_keys_and_follower_events_drive_the_loop_and_everything_is_restored(journal_store):
    keyboard, terminal = pty.openpty()
    follower = journal_store.follow(EventFilter())
    assert follower.fileno() is not None  # the branch under test: a pollable follower
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=80, height=24, color_system=None)
    model = TopModel("h", "s")
    model.ingest([event("sda")])
    attrs_before = termios.tcgetattr(terminal)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    try:
        journal_store.append(event("sdb"))
        journal_store.sync()  # written to the journal file: the follower's fd turns readable
        os.write(keyboard, b"s\x1b[B")  # sort, select the first device
        quit_when_sdb_arrives = threading.Thread(target=_press_q_once, args=(model, keyboard), daemon=True)
        quit_when_sdb_arrives.start()
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


def _press_q_once(model: TopModel, keyboard: int, timeout: float = 30.0) -> None:
    """Quit once the journal's event reached the model (read on the loop's
    thread; this one only watches, with a deadline)."""
    deadline = time.monotonic() + timeout
    while "w-sdb" not in model.devices and time.monotonic() < deadline:
        time.sleep(0.01)
    os.write(keyboard, b"q")
