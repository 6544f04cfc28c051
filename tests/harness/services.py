"""Start the system services the tests need (journald, udevd) when none runs.

They are started once and left running: other tests and the developer's
shell may use them too. Readiness is awaited through sd_notify (journald) or
the daemon's own fork-when-ready (udevd --daemon), never by sleeping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
JOURNALD = "/lib/systemd/systemd-journald"
UDEVD = "/lib/systemd/systemd-udevd"


def _pid_of(name: str) -> bool:
    return subprocess.run(["pgrep", "-x", name], capture_output=True).returncode == 0


def journald_running() -> bool:
    return JOURNAL_SOCKET.exists() and _pid_of("systemd-journal")


def ensure_journald(timeout: float = 30.0) -> None:
    """Start systemd-journald if it is not running; return once it is READY."""
    if journald_running():
        return
    if not os.path.exists(JOURNALD):
        raise RuntimeError(f"{JOURNALD} not found: apt-get install systemd")
    with tempfile.TemporaryDirectory() as tmp:
        notify_path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        sock.settimeout(timeout)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        subprocess.Popen(
            [JOURNALD],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while True:
                msg = sock.recv(4096).decode(errors="replace")
                if "READY=1" in msg.split("\n"):
                    break
        except socket.timeout:
            raise RuntimeError("systemd-journald did not report READY=1") from None
        finally:
            sock.close()


def stop_journald() -> None:
    subprocess.run(["pkill", "-x", "systemd-journal"], check=False)
    subprocess.run(["pkill", "-x", "systemd-journald"], check=False)


def ensure_udevd() -> None:
    """Start systemd-udevd if needed and fill the udev database for block devices."""
    if not _pid_of("systemd-udevd"):
        if not os.path.exists(UDEVD):
            raise RuntimeError(f"{UDEVD} not found: apt-get install udev")
        # --daemon forks once the control socket is listening.
        subprocess.run([UDEVD, "--daemon"], check=True, capture_output=True)
        subprocess.run(
            ["udevadm", "trigger", "--subsystem-match=block", "--action=add"], check=True
        )
    subprocess.run(["udevadm", "settle", "--timeout=60"], check=True)
