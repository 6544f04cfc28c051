"""What the daemon asks of the system: one instance per host, and telling
systemd (sd_notify) where it is."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from systemd import daemon as sd_daemon

from ..errors import PeripetyError
from ..safefiles import check_private_dir, open_private

log = logging.getLogger("peripety.daemon")

# One daemon per host reads /dev/kmsg: two would store every event twice
# (with the same deterministic event ids).
INSTANCE_LOCK = Path("/run/peripety/peripetyd.lock")


def take_instance_lock(path: Path = INSTANCE_LOCK):
    """Hold an exclusive lock for the daemon's lifetime (released by the
    kernel when the process dies, also on kill -9)."""
    check_private_dir(path.parent, mode=0o755)
    fh = os.fdopen(open_private(path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        other = fh.read().strip() or "?"
        fh.close()
        raise PeripetyError(f"another peripetyd (pid {other}) is already running ({path} is locked)") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def sd_notify(state: str) -> None:
    """READY=1, RELOADING=1, STOPPING=1, STATUS=...: only under systemd."""
    if os.environ.get("NOTIFY_SOCKET"):
        sd_daemon.notify(state)
