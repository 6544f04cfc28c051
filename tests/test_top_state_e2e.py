"""``prpt top``'s live state on real loop devices: I/O load shows as IOPS and
latency, a read-only remount and ext4's recorded errors show in the State
column; ``--once -J`` carries the same figures. (md and multipath exist only
in the qemu lab; their readers are tested on the recorded sysfs trees.)

Run under the live lock: loop devices and FUSE are shared on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from peripety.stores.sqlite import SqliteStore
from tests.harness.tmux import TmuxTerminal, assert_quits_cleanly

pytestmark = pytest.mark.root

PRPT = Path(sys.executable).with_name("prpt")


@pytest.fixture
def empty_store(tmp_path) -> str:
    SqliteStore(tmp_path / "events.db", write=True).close()
    return f"sqlite:{tmp_path / 'events.db'}"


@pytest.fixture
def mounted(faulty_disk, tmp_path):
    faulty_disk.mkfs("ext4")
    mnt = faulty_disk.mount(tmp_path / "mnt", "errors=continue")
    return faulty_disk, mnt


def test_ext4_error_under_remount_ro_shows_read_only(faulty_disk, tmp_path, empty_store):
    """ext4 errors=remount-ro: Linux 6.15+ marks it emergency_ro in mountinfo, not ro."""
    faulty_disk.mkfs("ext4")
    faulty_disk.mount(tmp_path / "mnt", "errors=remount-ro")
    Path(f"/sys/fs/ext4/{faulty_disk.name}/trigger_fs_error").write_text("1\n")
    row = row_of(once_json(empty_store), faulty_disk.name)
    assert row is not None and row["state"]["mount"]["read_only"]
    assert row["state_summary"].startswith("ro fserr ")


@pytest.fixture
def io_load(mounted):
    """Direct writes to a file on the mounted filesystem until stopped."""
    disk, mnt = mounted
    writer = subprocess.Popen(
        ["sh", "-c", f"while :; do dd if=/dev/zero of={mnt}/load bs=64k count=64 oflag=direct conv=notrunc "
                     "status=none || exit 1; done"],
        start_new_session=True,
    )
    yield writer
    stop(writer)


def stop(writer: subprocess.Popen) -> None:
    """The shell and its running dd: nothing may keep the mount busy."""
    if writer.poll() is None:
        os.killpg(writer.pid, signal.SIGTERM)
        writer.wait(timeout=10)


def once_json(store: str, *args: str) -> dict:
    result = subprocess.run([str(PRPT), "top", "--once", "-J", "--store", store, "--status-file", "/nonexistent",
                             "--interval", "1", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def row_of(data: dict, name: str) -> dict | None:
    return next((row for row in data["devices"] if row["name"] == f"/dev/{name}"), None)


def test_once_json_shows_io_then_read_only_and_ext4_errors(mounted, io_load, empty_store):
    disk, mnt = mounted
    row = row_of(once_json(empty_store), disk.name)
    assert row is not None, "a loop device under I/O load has no row"
    io = row["state"]["io"]
    assert io["write_iops"] > 0 and io["write_bps"] > 0 and io["await_ms"] is not None
    assert row["state"]["mount"]["mount_point"] == str(mnt) and not row["state"]["mount"]["read_only"]

    stop(io_load)
    Path(f"/sys/fs/ext4/{disk.name}/trigger_fs_error").write_text("1\n")  # ext4's own error path
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    row = row_of(once_json(empty_store), disk.name)
    assert row is not None, "a read-only filesystem with no I/O must still be listed"
    assert row["state"]["mount"]["read_only"] and row["state"]["ext4_errors"] >= 1
    assert row["state_summary"].startswith("ro fserr ")

    # Filtered views list the store's devices only.
    assert row_of(once_json(empty_store, "--severity", "err"), disk.name) is None


def test_live_view_shows_io_then_the_read_only_remount(mounted, io_load, empty_store, tmp_path):
    disk, mnt = mounted
    command = [str(PRPT), "top", "--interval", "0.5", "--store", empty_store, "--status-file",
               str(tmp_path / "none.json")]

    def state_row(screen: str) -> str | None:
        lines = screen.rstrip("\n").splitlines()
        if not lines or not lines[-1].startswith("q quit"):
            return None
        return next((line for line in lines if f" {disk.name} " in line and line.startswith("│")), None)

    def io_shown(screen: str) -> bool:
        row = state_row(screen)
        return row is not None and "ms" in row  # await of the completed writes

    with TmuxTerminal(command, width=160, height=45) as term:
        screen = term.wait_for(io_shown, timeout=30)
        heading = next(line for line in screen.splitlines() if "Device" in line and "IOPS" in line)
        assert "await" in heading and "util" in heading
        stop(io_load)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        screen = term.wait_for(lambda s: (state_row(s) or "").split("│")[1].split()[1:2] == ["ro"], timeout=30)
        heading = next(line for line in screen.splitlines() if "Device" in line and "IOPS" in line)
        assert heading.split()[1:3] == ["Device", "State"]
        assert_quits_cleanly(term)
