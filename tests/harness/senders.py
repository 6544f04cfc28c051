"""Processes that write to the journal as a given sender: a genuine daemon
(root, the daemon's comm), or a forger (another comm, another user)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
from pathlib import Path

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-systemd; readable by nobody

_SEND = """
import ctypes, sys
from systemd import journal
if len(sys.argv) > 3:
    ctypes.CDLL(None).prctl(15, sys.argv[3].encode(), 0, 0, 0)  # PR_SET_NAME: the comm
journal.send(sys.argv[2], SYSLOG_IDENTIFIER=sys.argv[1])
print("sent", flush=True)
sys.stdin.read()  # stay alive until told: journald reads _COMM from /proc
"""


class Sender:
    """A process that sends one journal line and stays alive until closed.
    ``argv0_dir`` runs it through a symlink named after the daemon, which is
    what the kernel records as its comm (``exec -a`` changes only argv)."""

    def __init__(self, identifier: str, message: str, *, comm: str | None = None, nobody: bool = False,
                 via_link: Path | None = None):
        python = str(via_link) if via_link else SYSTEM_PYTHON
        args = [python, "-c", _SEND, identifier, message] + ([comm] if comm else [])
        self.proc = subprocess.Popen((AS_NOBODY if nobody else []) + args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "sent"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def genuine_daemon_link(tmp_path: Path, name: str) -> Path:
    """/usr/bin/python3 reached through a link called ``name``: journald
    records ``_COMM=name`` for it, as for the real daemon."""
    link = tmp_path / "bin" / name
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(os.path.realpath(SYSTEM_PYTHON))
    return link


@contextlib.contextmanager
def comm_of_this_process(name: str = "peripetyd"):
    """Run the block with this process's comm set to ``name`` (PR_SET_NAME),
    so journald records entries it sends as ``_COMM=name``: how a test
    writes events that readers accept as peripetyd's. Keep the block open
    until the entries were read back: journald takes _COMM from /proc when
    it handles each entry."""
    old = Path("/proc/self/comm").read_text().strip()
    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)
    try:
        yield
    finally:
        ctypes.CDLL(None).prctl(15, old.encode(), 0, 0, 0)
