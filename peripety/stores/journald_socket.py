"""Talk to journald directly: its native datagram protocol and its varlink
``Synchronize`` call.

Why not ``systemd.journal.send``: ``sd_journal_sendv`` always writes to
``/run/systemd/journal/socket``, so it cannot reach a journal namespace
(``systemd-journald NS``, used by the benchmark and the isolated contract
tests) or a socket path given in the configuration, and it takes no send
timeout. The protocol is small and documented
(https://systemd.io/JOURNAL_NATIVE_PROTOCOL/): ``KEY=VALUE\\n`` lines, a
binary form for values holding a newline, and a sealed memfd for entries
larger than a datagram. Repeated keys (``OWNERS_WWIDS``) are simply
repeated lines.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import struct
from pathlib import Path

from ..errors import StoreError

log = logging.getLogger("peripety.stores.journald_socket")

RUN_DIR = Path("/run/systemd")
SEND_TIMEOUT = 5.0
"""Seconds a send may wait on a full journald queue before we call the
journal down and spool instead (journald stuck or stopped)."""

_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


def runtime_dir(namespace: str | None = None) -> Path:
    """``/run/systemd/journal`` or ``/run/systemd/journal.NS``."""
    return RUN_DIR / ("journal" if not namespace else f"journal.{namespace}")


def encode_entry(fields: dict[str, object]) -> bytes:
    """One native-protocol datagram; a list value becomes one field per item."""
    out = bytearray()
    for key, value in fields.items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            name = key.encode("ascii")
            if b"\n" in data:
                out += name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
            else:
                out += name + b"=" + data + b"\n"
    return bytes(out)


class JournaldSocket:
    """A connected sender to one journald (system or namespace)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            # Blocking, with a send timeout (SO_SNDTIMEO): a send sleeps in
            # the kernel while journald's queue is full, at most
            # SEND_TIMEOUT, then fails with EAGAIN. One send(2) an event
            # whether or not journald keeps up: no poll(2), no retry (a
            # Python socket timeout would poll(2) before every send).
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                usec = max(1, round(SEND_TIMEOUT * 1_000_000))  # (a zero timeval would wait for ever)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                struct.pack("@ll", usec // 1_000_000, usec % 1_000_000))
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise StoreError(f"cannot connect to journald at {self.path}: {exc.strerror}") from exc
            self._sock = sock
        return self._sock

    def send(self, fields: dict[str, object]) -> None:
        self.send_entry(encode_entry(fields))

    def send_entry(self, data: bytes) -> None:
        """One entry already encoded (``encode_entry``): one send(2)."""
        sock = self._sock
        if sock is not None:
            # The common case, connected, in one call; anything else
            # (nothing was sent) takes the way below.
            try:
                sock.send(data)
                return
            except BlockingIOError:  # journald's queue stayed full for SEND_TIMEOUT
                self._fail(TimeoutError("timed out"))
            except (ConnectionRefusedError, FileNotFoundError, ConnectionResetError):
                # journald restarted since we connected: its socket is a new
                # one (this one is now unconnected, and would say ENOTCONN).
                self.close()
            except OSError:
                pass  # too large for a datagram: sent as a memfd below
        try:
            try:
                self._send(data)
            except (ConnectionRefusedError, FileNotFoundError, ConnectionResetError):
                # journald restarted since we connected: its socket is a new one.
                self.close()
                self._send(data)
        except StoreError:
            raise
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        # journald restarted (new socket inode), is gone or stuck: reconnect next time.
        self.close()
        reason = "timed out" if isinstance(exc, (TimeoutError, BlockingIOError)) else exc.strerror
        raise StoreError(f"journald at {self.path} did not take the event: {reason}") from exc

    def _send(self, data: bytes) -> None:
        sock = self._connect()
        try:
            sock.send(data)
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            self._send_memfd(data)

    def _send_memfd(self, data: bytes) -> None:
        # Larger than a datagram: journald accepts a sealed memfd instead.
        fd = os.memfd_create("peripety-journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.write(fd, data)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            self._connect().sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def synchronize(namespace: str | None = None, timeout: float = 30.0) -> bool:
    """Ask journald to write out everything it has received (what
    ``journalctl --sync`` does). False when we may not ask (not root)."""
    path = runtime_dir(namespace) / "io.systemd.journal"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except PermissionError:
            log.debug("no permission to ask %s to synchronize", path)
            return False
        except OSError as exc:
            raise StoreError(f"cannot reach journald at {path}: {exc.strerror}") from exc
        sock.sendall(json.dumps({"method": "io.systemd.Journal.Synchronize", "parameters": {}}).encode() + b"\0")
        reply = bytearray()
        while not reply.endswith(b"\0"):
            chunk = sock.recv(4096)
            if not chunk:
                raise StoreError(f"journald at {path} closed the connection before it synchronized")
            reply += chunk
    answer = json.loads(reply[:-1])
    if "error" in answer:
        raise StoreError(f"journald at {path} refused to synchronize: {answer['error']}")
    return True
