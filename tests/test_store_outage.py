"""A store that fails under the running daemon shows in the status file, and
every spooled event is delivered once it is back: here the SQLite store on a
real, full tmpfs (journald stopped and restarted: test_daemon_e2e)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

import pytest

from tests.harness.daemon import DaemonProcess
from tests.harness.senders import Sender, genuine_daemon_link

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]


@pytest.fixture
def tiny_fs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "peripety-test-tiny", str(mount)],
                   check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def status(daemon) -> dict:
    return json.loads(daemon.status_file.read_text())


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stored_maps(db) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT json FROM events WHERE event_type='DM_MPATH_PATH_FAILED'").fetchall()
    finally:
        conn.close()  # an open database would keep the tmpfs busy
    return [json.loads(text)["extension"]["map"] for (text,) in rows]


def test_full_filesystem_spools_shows_in_status_and_delivers_everything_after(tmp_path, tiny_fs):
    db = tiny_fs / "events.db"
    daemon = DaemonProcess(tmp_path / "d", store=f"sqlite:{db}").start()
    link = genuine_daemon_link(tmp_path, "multipathd")
    senders = []

    def fail_path(n: int) -> None:
        senders.append(Sender("multipathd", f"checker failed path 8:{n} in map full{n}", via_link=link))

    try:
        assert status(daemon)["store_ok"] is True and status(daemon)["spool_depth"] == 0
        fail_path(1)
        wait_until(lambda: stored_maps(db) == ["full1"], "the first event stored")
        filler = tiny_fs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # ENOSPC ends it
        for n in range(2, 7):
            fail_path(n)
        wait_until(lambda: status(daemon)["spool_depth"] == 5, "five events spooled")
        now = status(daemon)
        assert now["store_ok"] is False and "full" in now["store_error"]
        assert stored_maps(db) == ["full1"]
        os.unlink(filler)
        wait_until(lambda: status(daemon)["store_ok"], "the store back in the status file")
        assert (status(daemon)["store_error"], status(daemon)["spool_depth"]) == (None, 0)
        assert stored_maps(db) == [f"full{n}" for n in range(1, 7)]
    finally:
        for sender in senders:
            sender.close()
        daemon.stop()
