"""Non-blocking reader of ``/dev/kmsg`` for a selector loop.

Each ``read(2)`` on /dev/kmsg returns exactly one record. When the kernel
has overwritten records we had not read yet, ``read`` fails once with EPIPE
and the position jumps to the oldest record still kept; the number lost is
the gap in sequence numbers, which :meth:`KmsgReader.take_missed` counts and
:meth:`KmsgReader.notices` reports as ``PERIPETY_KMSG_OVERRUN``.
"""

from __future__ import annotations

import errno
import logging
import os

from ...record import LogRecord
from ..base import RECORDS, Notice
from .record import KmsgStats, parse_record

log = logging.getLogger("peripety.kmsg")

KMSG_PATH = "/dev/kmsg"
# The kernel's limit for one formatted record is 8 KiB (CONSOLE_EXT_LOG_MAX);
# a smaller buffer makes read() fail with EINVAL forever.
_READ_SIZE = 16384


class KmsgReader:
    """Records from /dev/kmsg; poll :meth:`fileno` and call :meth:`read`
    (a live source: sources/base.py)."""

    name = "kmsg"
    kind = RECORDS

    def __init__(self, path: str = KMSG_PATH, stats: KmsgStats | None = None):
        self.path = path
        self.stats = stats if stats is not None else KmsgStats()
        self.last_seq: int | None = None
        self._missed = 0
        self._pending: list[LogRecord] = []
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "KmsgReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def seek_end(self) -> None:
        """Skip everything logged so far: the next read returns new records only.

        Rather than SEEK_END, read through what is kept (headers only): the
        last sequence number seen is what lets an overrun right after start be
        counted. The kernel keeps at most log_buf_len bytes, so this is short.
        """
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._pending.clear()
        self.last_seq = None
        while True:
            try:
                raw = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten while we skim: skim on
                    continue
                raise
            if not raw:
                return
            try:
                self.last_seq = int(raw.split(b",", 2)[1])
            except (IndexError, ValueError):
                self.stats.malformed += 1

    def seek_start(self) -> None:
        """Go back to the oldest record the kernel still holds."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._pending.clear()
        self.last_seq = None

    def seek_after(self, seq: int) -> None:
        """Resume after record ``seq`` (same boot): records up to it are skipped.

        If the oldest record kept is already past ``seq + 1``, the difference
        is counted as missed.
        """
        self.seek_start()
        self.last_seq = seq
        while True:
            batch = self._read_available(limit=256)
            if not batch:
                return
            newer = [r for r in batch if r.seq > seq]
            if newer:
                self._pending = newer
                return

    def read(self, limit: int | None = None) -> list[LogRecord]:
        """Records available now (never blocks); at most ``limit`` of them."""
        records, self._pending = self._pending, []
        if limit is None or len(records) < limit:
            records += self._read_available(None if limit is None else limit - len(records))
        return records

    def notices(self) -> list[Notice]:
        """Records the kernel overwrote before they were read, since the last call."""
        missed = self.take_missed()
        if not missed:
            return []
        log.warning("kernel overwrote %d /dev/kmsg records before they were read", missed)
        return [Notice("PERIPETY_KMSG_OVERRUN",
                       f"{missed} kernel log records were overwritten before peripetyd read them",
                       {"missed": str(missed)})]

    def take_missed(self) -> int:
        """Records lost to overruns since the last call."""
        missed, self._missed = self._missed, 0
        return missed

    def _read_available(self, limit: int | None) -> list[LogRecord]:
        records: list[LogRecord] = []
        while limit is None or len(records) < limit:
            try:
                raw = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    # Position moved to the oldest kept record; the seq gap counts the loss.
                    log.warning("%s: records were overwritten before they were read", self.path)
                    continue
                raise
            if not raw:
                break
            record = parse_record(raw, self.stats)
            if record is None:
                continue
            self._note_seq(record.seq)
            records.append(record)
        return records

    def _note_seq(self, seq: int) -> None:
        if self.last_seq is not None and seq > self.last_seq + 1:
            gap = seq - self.last_seq - 1
            self._missed += gap
            self.stats.missed += gap
        self.last_seq = seq
