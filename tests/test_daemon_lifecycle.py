"""peripetyd's life cycle on the real system: readiness notification, SIGHUP
config reload, kmsg overrun, user-space daemons' lines from the journal."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.daemon import PERIPETYD, DaemonProcess, since_now, wait_for_events
from tests.harness.senders import Sender, genuine_daemon_link

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]

SITE_RULE = '''
[[collector.regexs]]
starts_with = "EXT4-fs ("
regex = \'\'\'(?x)
    ^EXT4-fs\\s\\((?P<kdev>[^\\s)]+)\\):\\s
    mounted\\ filesystem
\'\'\'
sub_system = "ext4"
event_type = "SITE_EXT4_MOUNT"
'''


def wait_for_log(daemon: DaemonProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the daemon log:\n{daemon.log_text()[-3000:]}")
        time.sleep(0.1)


def test_ready_is_notified_to_systemd(tmp_path):
    notify_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(60)
    proc = subprocess.Popen(
        [PERIPETYD, "--store", f"sqlite:{tmp_path}/events.db", "--no-blk-info-dump",
         "--state-dir", str(tmp_path / "state"), "--status-file", str(tmp_path / "status.json")],
        env=dict(os.environ, NOTIFY_SOCKET=notify_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        message = sock.recv(4096).decode()
        assert "READY=1" in message.splitlines()
        status = (tmp_path / "status.json").read_text()
        assert '"kmsg"' in status and str(proc.pid) in status
        proc.terminate()
        assert proc.wait(30) == 0
        assert "STOPPING=1" in sock.recv(4096).decode()
        assert not (tmp_path / "status.json").exists()
    finally:
        proc.kill()
        sock.close()


def test_sighup_reloads_rules_and_keeps_them_when_the_new_file_is_invalid(tmp_path, faulty_disk_factory):
    disk = faulty_disk_factory()
    disk.mkfs("ext4")
    config = tmp_path / "peripetyd.conf"
    config.write_text("[daemon]\nstorm_window = 5.0\n")
    daemon = DaemonProcess(tmp_path / "d", args=("--config", str(config))).start()
    try:
        t0 = since_now()
        disk.umount(disk.mount(tmp_path / "m1"))
        wait_for_events(("--since", t0, "--blk", disk.loopdev), lambda evs: any(
            e["event_type"] == "FS_MOUNTED" for e in evs), what="built-in FS_MOUNTED")

        config.write_text(SITE_RULE)
        daemon.signal(signal.SIGHUP)
        wait_for_log(daemon, "config reloaded")
        t1 = since_now()
        disk.umount(disk.mount(tmp_path / "m2"))
        wait_for_events(("--since", t1, "--blk", disk.loopdev), lambda evs: any(
            e["event_type"] == "SITE_EXT4_MOUNT" for e in evs), what="the site rule's event")

        config.write_text(SITE_RULE + "\n[[collector.regexs]]\nregex = '(unclosed'\n")
        daemon.signal(signal.SIGHUP)
        wait_for_log(daemon, "config not reloaded")
        log_text = daemon.log_text()
        assert f"{config}: collector.regexs[1]" in log_text
        assert "line" in log_text.split("config not reloaded", 1)[1]
        t2 = since_now()
        disk.umount(disk.mount(tmp_path / "m3"))
        events = wait_for_events(("--since", t2, "--blk", disk.loopdev), lambda evs: any(
            e["event_type"] == "SITE_EXT4_MOUNT" for e in evs), what="the old rules still in force")
        assert not [e for e in events if e["event_type"] == "FS_MOUNTED"]
    finally:
        daemon.stop()


@pytest.fixture
def unlimited_devkmsg():
    """User writes to /dev/kmsg are rate-limited by default; lift that so the
    ring buffer can be overrun on purpose, and restore it afterwards."""
    knob = Path("/proc/sys/kernel/printk_devkmsg")
    old = knob.read_text().strip()
    knob.write_text("on\n")
    yield
    knob.write_text(old + "\n")


def ring_buffer_size() -> int:
    """The kernel's log_buf_len (syslog(2) SYSLOG_ACTION_SIZE_BUFFER)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = libc.klogctl(10, None, 0)
    assert size > 0, os.strerror(ctypes.get_errno())
    return size


def test_kmsg_overrun_is_reported_and_reading_goes_on(tmp_path, unlimited_devkmsg):
    daemon = DaemonProcess(tmp_path / "d").start()
    try:
        t0 = since_now()
        daemon.signal(signal.SIGSTOP)
        line = "peripety overrun filler " + "x" * 200 + "\n"
        with open("/dev/kmsg", "w") as kmsg:
            for _ in range(4 * ring_buffer_size() // len(line) + 1000):
                kmsg.write(line)
                kmsg.flush()
        daemon.signal(signal.SIGCONT)
        events = wait_for_events(("--since", t0, "--event-type", "PERIPETY_KMSG_OVERRUN"),
                                 lambda evs: len(evs) >= 1, what="the overrun event")
        assert int(events[0]["extension"]["missed"]) > 0
        assert events[0]["sub_system"] == "Peripety"
        assert daemon.proc.poll() is None  # still running
    finally:
        daemon.stop()


def test_user_space_storage_daemon_lines_come_from_the_journal(tmp_path):
    """A line multipathd really sent (root, comm multipathd: python run
    through a link of that name, alive until journald has read its /proc)
    becomes an event; the same words claimed by "kernel" do not."""
    daemon = DaemonProcess(tmp_path / "d").start()
    sender = None
    try:
        t0 = since_now()
        subprocess.run(["logger", "-t", "kernel", "checker failed path 8:48 in map mpathz"], check=True)
        sender = Sender("multipathd", "checker failed path 8:32 in map mpathz",
                        via_link=genuine_daemon_link(tmp_path, "multipathd"))
        events = wait_for_events(("--since", t0, "--event-type", "DM_MPATH_PATH_FAILED"),
                                 lambda evs: any(e["kdev"] == "8:32" for e in evs), what="multipathd event")
        event = next(e for e in events if e["kdev"] == "8:32")
        assert event["sources"] == ["journal"]
        assert event["extension"]["map"] == "mpathz"
        assert not [e for e in events if e["kdev"] == "8:48"]
    finally:
        if sender:
            sender.close()
        daemon.stop()


def test_a_second_daemon_refuses_to_start(tmp_path):
    first = DaemonProcess(tmp_path / "a").start()
    try:
        second = subprocess.run(
            [PERIPETYD, "--store", f"sqlite:{tmp_path}/b.db", "--state-dir", str(tmp_path / "b")],
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 1
        assert f"another peripetyd (pid {first.proc.pid}) is already running" in second.stderr
    finally:
        first.stop()
