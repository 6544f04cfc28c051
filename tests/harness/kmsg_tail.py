"""Read raw /dev/kmsg records written after a chosen moment.

Tests open a tail *before* the action that makes the kernel talk, then wait
for the record they expect. Each record is kept exactly as /dev/kmsg hands it
out (``prio,seq,usec,flags;text`` plus `` KEY=VALUE`` continuation lines) so
the same text can be saved as a recorded fixture.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import time

log = logging.getLogger("peripety.tests.kmsg_tail")

KMSG = "/dev/kmsg"
# One read() returns one whole record; the kernel caps a record well below this.
_RECORD_MAX = 8192


def record_text(record: str) -> str:
    """The message part of a raw record (after ``;``, before the dictionary)."""
    head = record.split("\n", 1)[0]
    return head.split(";", 1)[1] if ";" in head else head


class KmsgTail:
    """Records appended to the kernel log since this object was created."""

    def __init__(self) -> None:
        self._fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # SEEK_END on /dev/kmsg moves to the next record to be written.
        os.lseek(self._fd, 0, os.SEEK_END)
        self.records: list[str] = []

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "KmsgTail":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def drain(self) -> list[str]:
        """Read every record available now; return the new ones."""
        new: list[str] = []
        while True:
            try:
                raw = os.read(self._fd, _RECORD_MAX)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno != errno.EPIPE:
                    raise
                # Records were overwritten before we read them: the next
                # read continues at the oldest record still held.
                log.warning("kmsg ring buffer overran; some records were lost")
                continue
            new.append(raw.decode("utf-8", errors="replace"))
        self.records.extend(new)
        return new

    def wait_for(self, pattern: str | re.Pattern, timeout: float = 10.0) -> str:
        """Return the first record (old or new) whose text matches ``pattern``.

        Waits on the kmsg fd becoming readable, up to ``timeout`` seconds;
        raises ``TimeoutError`` naming the pattern and what was seen.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        checked = 0
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while True:
            self.drain()
            for record in self.records[checked:]:
                if regex.search(record_text(record)):
                    return record
            checked = len(self.records)
            left = deadline - time.monotonic()
            if left <= 0:
                seen = "\n".join(record_text(r) for r in self.records[-10:])
                raise TimeoutError(
                    f"no kernel record matching {regex.pattern!r} within {timeout}s; "
                    f"last records:\n{seen}"
                )
            poller.poll(left * 1000)
