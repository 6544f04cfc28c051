"""Start the system services the tests need (journald, udevd) when none runs.

They are started once and left running: other tests and the developer's
shell may use them too. Readiness is awaited through sd_notify (journald) or
the daemon's own fork-when-ready (udevd --daemon), never by sleeping.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
JOURNALD = "/lib/systemd/systemd-journald"
UDEVD = "/lib/systemd/systemd-udevd"


def _pids_of(name: str) -> list[int]:
    """Live processes called ``name`` (zombies excluded: a killed daemon
    stays a zombie until its parent reaps it, and is not running)."""
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True).stdout
    pids = []
    for pid in map(int, out.split()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            pids.append(pid)
    return pids


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def _pid_of(name: str) -> bool:
    return bool(_pids_of(name))


def _system_journald_pids() -> list[int]:
    # the system instance only: namespace instances run as "systemd-journald NS"
    return [pid for pid in _pids_of("systemd-journal") if _argv(pid)[1:] == []]


def journald_running() -> bool:
    return JOURNAL_SOCKET.exists() and bool(_system_journald_pids())


def _link_dev_log() -> None:
    """/dev/log -> journald's syslog socket, as systemd-journald-dev-log.socket
    sets up on a systemd host (logger(1) and syslog(3) write there)."""
    if not os.path.lexists("/dev/log"):
        os.symlink("/run/systemd/journal/dev-log", "/dev/log")


SYSTEMD_DGRAM_QLEN = 512


def _raise_dgram_qlen() -> None:
    """net.unix.max_dgram_qlen to at least 512 before journald makes its
    sockets, as systemd (PID 1) does at boot (src/core/main.c,
    bump_unix_max_dgram_qlen) and scripts/start-services.sh does here."""
    path = "/proc/sys/net/unix/max_dgram_qlen"
    try:
        with open(path) as f:
            if int(f.read()) >= SYSTEMD_DGRAM_QLEN:
                return
        with open(path, "w") as f:
            f.write(str(SYSTEMD_DGRAM_QLEN))
    except (OSError, ValueError):
        pass  # not root, or no such sysctl: journald keeps the kernel's queue


def ensure_journald(timeout: float = 30.0) -> None:
    """Start systemd-journald if it is not running; return once it is READY."""
    _link_dev_log()
    if journald_running():
        return
    if not os.path.exists(JOURNALD):
        raise RuntimeError(f"{JOURNALD} not found: apt-get install systemd")
    _raise_dgram_qlen()
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


def stop_journald(timeout: float = 30.0) -> None:
    """Stop systemd-journald and return once it has exited (its socket file
    stays behind, so the process is what tells whether it runs)."""
    pids = _system_journald_pids()
    for pid in pids:
        os.kill(pid, 15)
    for pid in pids:
        # pidfd becomes readable when the process exits: no polling.
        # A pidfd becomes readable when the process exits (also when it is
        # only a zombie, not reaped by its parent): no polling.
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], timeout)[0]:
                raise RuntimeError(f"systemd-journald ({pid}) did not exit in {timeout}s")
        finally:
            os.close(fd)


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


@contextlib.contextmanager
def private_journald(namespace: str, timeout: float = 30.0):
    """Run a journald of its own for ``namespace`` (``systemd-journald NS``),
    so tests and benchmarks neither see nor fill the shared system journal.

    A namespace journald exits when idle; the varlink connection held here
    keeps it up. Everything it wrote is removed afterwards.
    """
    run_dir = Path(f"/run/systemd/journal.{namespace}")
    machine_id = Path("/etc/machine-id").read_text().strip()
    data_dirs = [Path(base) / f"{machine_id}.{namespace}" for base in ("/var/log/journal", "/run/log/journal")]
    with tempfile.TemporaryDirectory() as tmp:
        notify_path = os.path.join(tmp, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(timeout)
        proc = subprocess.Popen(
            [JOURNALD, namespace],
            env=dict(os.environ, NOTIFY_SOCKET=notify_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        keepalive = None
        try:
            try:
                while "READY=1" not in notify.recv(4096).decode(errors="replace").split("\n"):
                    pass
            except socket.timeout:
                raise RuntimeError(f"systemd-journald {namespace} did not report READY=1") from None
            keepalive = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            keepalive.connect(str(run_dir / "io.systemd.journal"))
            yield namespace
        finally:
            notify.close()
            if keepalive is not None:
                keepalive.close()
            proc.terminate()
            proc.wait(timeout)
            for path in [run_dir, *data_dirs]:
                shutil.rmtree(path, ignore_errors=True)
