"""Debian's systemd-journal-remote and -upload, really run: journal files
received over a local pipe or over HTTP on 127.0.0.1, as a central log host
collects them from a fleet. Plus the journal export format, parsed and
rewritten to make a second host out of this one's entries."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import tempfile
from pathlib import Path

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
JOURNAL_UPLOAD = "/lib/systemd/systemd-journal-upload"


def available() -> bool:
    return os.access(JOURNAL_REMOTE, os.X_OK) and os.access(JOURNAL_UPLOAD, os.X_OK)


Entry = list[tuple[bytes, bytes]]


def parse_export(data: bytes) -> list[Entry]:
    """Entries of a journal export stream (systemd's JOURNAL_EXPORT_FORMATS):
    ``NAME=value`` lines, or ``NAME`` newline, a little-endian 64-bit size,
    the bytes and a newline for values that are binary; a blank line ends
    an entry."""
    entries: list[Entry] = []
    entry: Entry = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        pos = end + 1
        if not line:
            entries.append(entry)
            entry = []
        elif b"=" in line:
            name, _, value = line.partition(b"=")
            entry.append((name, value))
        else:
            (size,) = struct.unpack_from("<Q", data, pos)
            entry.append((line, data[pos + 8 : pos + 8 + size]))
            pos += 8 + size + 1
    if entry:
        entries.append(entry)
    return entries


def format_export(entries: list[Entry]) -> bytes:
    out = bytearray()
    for entry in entries:
        for name, value in entry:
            if b"\n" in value:
                out += name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
            else:
                out += name + b"=" + value + b"\n"
        out += b"\n"
    return bytes(out)


def as_other_host(entries: list[Entry], hostname: str, machine_id: str, boot_id: str) -> list[Entry]:
    """The entries as another machine's journald would have written them:
    its ``_HOSTNAME``, ``_MACHINE_ID`` and ``_BOOT_ID`` (the cursor, which
    names this machine's file, is left out; journal-remote makes its own)."""
    replace = {b"_HOSTNAME": hostname.encode(), b"_MACHINE_ID": machine_id.encode(), b"_BOOT_ID": boot_id.encode()}
    return [[(n, replace.get(n, v)) for n, v in entry if n != b"__CURSOR"] for entry in entries]


def export(*journalctl_args: str) -> bytes:
    return subprocess.run(["journalctl", "-o", "export", *journalctl_args], check=True, capture_output=True,
                          timeout=60).stdout


def receive_by_pipe(output: Path, *journalctl_args: str) -> None:
    """``journalctl -o export ARGS | systemd-journal-remote -o OUTPUT -``."""
    jctl = subprocess.Popen(["journalctl", "-o", "export", *journalctl_args], stdout=subprocess.PIPE)
    try:
        subprocess.run([JOURNAL_REMOTE, "-o", str(output), "-"], stdin=jctl.stdout, check=True,
                       capture_output=True, timeout=60)
    finally:
        jctl.stdout.close()
        assert jctl.wait(60) == 0


@contextlib.contextmanager
def http_receiver(output: Path, timeout: float = 30.0):
    """systemd-journal-remote listening on 127.0.0.1 (plain HTTP) and
    writing what it receives to ``output``; yields its URL. Readiness is
    its sd_notify READY=1; on exit it is stopped (SIGTERM) and has closed
    the file."""
    with tempfile.TemporaryDirectory() as tmp:
        notify_path = os.path.join(tmp, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(timeout)
        port = _free_port()
        proc = subprocess.Popen(
            [JOURNAL_REMOTE, f"--listen-http=127.0.0.1:{port}", "--split-mode=none", "-o", str(output)],
            env=dict(os.environ, NOTIFY_SOCKET=notify_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            try:
                while "READY=1" not in notify.recv(4096).decode(errors="replace").split("\n"):
                    pass
            except socket.timeout:
                raise RuntimeError("systemd-journal-remote did not report READY=1") from None
            yield f"http://127.0.0.1:{port}"
        finally:
            notify.close()
            proc.terminate()
            _, err = proc.communicate(timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"systemd-journal-remote exited {proc.returncode}: {err.decode()}")


def upload(url: str, export_file: Path, state: Path) -> None:
    """systemd-journal-upload sends an export file to ``url`` and waits for
    the answer (202 Accepted)."""
    subprocess.run([JOURNAL_UPLOAD, "-u", url, f"--save-state={state}", str(export_file)], check=True,
                   capture_output=True, timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
