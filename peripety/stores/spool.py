"""Events the store could not take wait on disk, and are delivered in order
when it is back (doc/design.md, "Stores": nothing is lost).

The spool is one JSON-lines file plus a small file holding how many of its
bytes were already delivered. Choices worth knowing:

- A write reaches the kernel at once (a crash of peripetyd loses nothing);
  it is fsync'd every ``fsync_every`` events and on ``close()``, so only a
  power loss may take the last few.
- A crash can tear the last line: it is cut off with a warning when the
  spool is opened again, and the events before it are delivered.
- Delivery records its progress every ``DELIVERY_BATCH`` events, so a crash
  during delivery re-sends at most that many (the SQLite store ignores
  event ids it already has; the journal would show them twice).
- **When the spool is full, the oldest events are dropped**, counted and
  logged: the newest events describe the current state of the storage,
  which is what someone reading them after an outage needs. Dropping frees
  a quarter of the space at once so a long outage does not rewrite the
  file on every event.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Iterator

from ..errors import EventFormatError, StoreError
from ..event import StorageEvent
from ..event_json import compact_json
from ..safefiles import UnsafePathError, check_private_dir, open_private, write_atomically
from .filter import EventFilter

log = logging.getLogger("peripety.stores.spool")

DEFAULT_SPOOL_DIR = Path("/var/lib/peripety/spool")
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DELIVERY_BATCH = 100
SPOOL_FILE = "events.jsonl"
DELIVERED_FILE = "delivered"


class Spool:
    """An append-only queue of events on disk, oldest first."""

    def __init__(self, directory: str | os.PathLike = DEFAULT_SPOOL_DIR,
                 max_bytes: int = DEFAULT_MAX_BYTES, *, fsync_every: int = 32):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.fsync_every = fsync_every
        self.dropped = 0
        """Events dropped because the spool was full, since it was opened."""
        self.path = self.directory / SPOOL_FILE
        self._delivered_path = self.directory / DELIVERED_FILE
        try:
            check_private_dir(self.directory)
        except UnsafePathError as exc:
            raise StoreError(f"the spool directory: {exc}") from None
        try:
            fd = open_private(self.path, os.O_CREAT | os.O_RDWR | os.O_APPEND, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot open the spool {self.path}: {exc.strerror}") from exc
        self._file = os.fdopen(fd, "ab")
        self._unsynced = 0
        self._cut_torn_tail()
        self._delivered = self._read_delivered()
        self._count = sum(1 for _ in self._lines())

    # -- state ----------------------------------------------------------------
    def __len__(self) -> int:
        """Events waiting for delivery."""
        return self._count

    @property
    def size(self) -> int:
        """Bytes waiting for delivery."""
        return self._file.tell() - self._delivered

    def _cut_torn_tail(self) -> None:
        size = self._file.seek(0, os.SEEK_END)
        if size == 0:
            return
        with os.fdopen(open_private(self.path, os.O_RDONLY), "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end != size:
            log.warning("%s: the last line (%d bytes) was torn by a crash and is dropped",
                        self.path, size - end)
            self._file.truncate(end)
            self._file.seek(end)

    def _read_delivered(self) -> int:
        try:
            with os.fdopen(open_private(self._delivered_path, os.O_RDONLY), "rb") as f:
                text = f.read().decode("ascii", "replace").strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot read {self._delivered_path}: {exc.strerror}") from exc
        size = self._file.tell()
        if not text.isdigit() or int(text) > size:
            log.warning("%s: invalid delivery offset %r; delivering the whole spool again",
                        self._delivered_path, text)
            return 0
        return int(text)

    # -- writing --------------------------------------------------------------
    def put(self, event: StorageEvent) -> None:
        line = compact_json(event).encode("utf-8") + b"\n"
        if len(line) > self.max_bytes:
            self._count_drops(1, f"event {event.event_id} alone is larger than the spool")
            return
        if self.size + len(line) > self.max_bytes:
            self._drop_oldest(keep_bytes=self.max_bytes * 3 // 4 - len(line))
        try:
            self._file.write(line)
            self._file.flush()
        except OSError as exc:
            raise StoreError(f"cannot write the spool {self.path}: {exc.strerror}") from exc
        self._count += 1
        self._unsynced += 1
        if self._unsynced >= self.fsync_every:
            self.sync()

    def sync(self) -> None:
        if self._unsynced:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._unsynced = 0

    def _drop_oldest(self, keep_bytes: int) -> None:
        lines = [line for _end, line in self._lines()]
        kept_size = sum(len(line) for line in lines)
        start = 0
        while start < len(lines) and kept_size > keep_bytes:
            kept_size -= len(lines[start])
            start += 1
        self._rewrite(lines[start:])
        self._count_drops(start, f"the spool {self.path} is full ({self.max_bytes} bytes)")

    def _count_drops(self, n: int, why: str) -> None:
        self.dropped += n
        log.warning("%s: dropped the %d oldest spooled event(s), %d since start", why, n, self.dropped)

    def _rewrite(self, lines: list[bytes]) -> None:
        """Replace the spool by ``lines`` (crash-safe: write aside, then rename)."""
        write_atomically(self.path, b"".join(lines))
        self._file.close()
        self._file = os.fdopen(open_private(self.path, os.O_WRONLY | os.O_APPEND), "ab")
        self._set_delivered(0)
        self._count = len(lines)
        self._unsynced = 0

    # -- delivering -----------------------------------------------------------
    def _lines(self) -> Iterator[tuple[int, bytes]]:
        """(end offset, line) of every line not yet delivered."""
        self._file.flush()
        with os.fdopen(open_private(self.path, os.O_RDONLY), "rb") as f:
            f.seek(self._delivered)
            offset = self._delivered
            for line in f:
                if not line.endswith(b"\n"):
                    return  # a put() in progress; never the case in one thread
                offset += len(line)
                yield offset, line

    def pending(self) -> Iterator[tuple[int, StorageEvent | None]]:
        """(end offset, event) in order; None for a line that cannot be read
        (warned about here; delivering it means skipping it)."""
        for end, line in self._lines():
            try:
                yield end, StorageEvent.from_json(line)
            except EventFormatError as exc:
                log.warning("%s: line ending at byte %d: unreadable spooled event skipped: %s",
                            self.path, end, exc)
                yield end, None

    def mark_delivered(self, end: int, events: int) -> None:
        self._count -= events
        if end >= self._file.tell():
            # All delivered: start the file over instead of growing it forever.
            self._file.truncate(0)
            self._file.seek(0)
            self._count = 0
            self._set_delivered(0)
        else:
            self._set_delivered(end)

    def _set_delivered(self, offset: int) -> None:
        self._delivered = offset
        if offset == 0:
            self._delivered_path.unlink(missing_ok=True)
            return
        write_atomically(self._delivered_path, f"{offset}\n".encode(), fsync=False)

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


class SpoolingStore:
    """A store that never refuses an event: when ``append`` on the wrapped
    store raises StoreError the event goes to the spool, and so does every
    later event until the spool is delivered (events stay in order)."""

    def __init__(self, store, spool_dir: str | os.PathLike = DEFAULT_SPOOL_DIR,
                 max_bytes: int = DEFAULT_MAX_BYTES, *, retry_interval: float = 5.0,
                 fsync_every: int = 32):
        self.store = store
        self.spool = Spool(spool_dir, max_bytes, fsync_every=fsync_every)
        self.retry_interval = retry_interval
        """Seconds after a refusal before the spool is delivered again (``retry``)."""
        self._last_failure = float("-inf")
        self.error: str | None = None
        """Why the store last refused an event, while events are spooled; None when it takes them."""
        self.refusals = 0
        """Times the store refused an event since start (each refusal spools, never loses)."""
        if len(self.spool):
            log.info("%d event(s) waiting in %s from an earlier run", len(self.spool), self.spool.path)

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def spool_depth(self) -> int:
        """Events waiting in the spool."""
        return len(self.spool)

    @property
    def ok(self) -> bool:
        """The store takes events (nothing waits in the spool)."""
        return self.error is None and not len(self.spool)

    def retry(self) -> int:
        """Deliver the spool if it is due: the store refused an event at
        least ``retry_interval`` ago (or events wait from an earlier run).
        The one retry policy, run by ``append`` and by the daemon's tick."""
        if len(self.spool) and time.monotonic() - self._last_failure >= self.retry_interval:
            return self.flush_spool()
        return 0

    def append(self, event: StorageEvent) -> None:
        self.retry()
        if not len(self.spool):
            try:
                self.store.append(event)
                self.error = None
                return
            except StoreError as exc:
                self._last_failure = time.monotonic()
                self.error = str(exc)
                self.refusals += 1
                log.warning("%s; spooling events to %s until it is back", exc, self.spool.path)
        self.spool.put(event)

    def flush_spool(self) -> int:
        """Deliver spooled events in order; return how many were delivered.
        Stops at the first one the store refuses (they stay spooled)."""
        delivered = in_batch = 0
        end = None
        try:
            for end_offset, event in self.spool.pending():
                try:
                    if event is not None:
                        self.store.append(event)
                except StoreError as exc:
                    self._last_failure = time.monotonic()
                    self.error = str(exc)
                    self.refusals += 1
                    log.debug("spool delivery stopped: %s", exc)
                    break
                delivered += 1
                in_batch += 1
                end = end_offset
                if in_batch == DELIVERY_BATCH:
                    self.spool.mark_delivered(end, in_batch)
                    in_batch = 0
        finally:
            if in_batch:
                self.spool.mark_delivered(end, in_batch)
        if not len(self.spool):
            self.error = None
        if delivered:
            log.info("delivered %d spooled event(s) to %s; %d still spooled",
                     delivered, self.store.name, len(self.spool))
        return delivered

    def query(self, flt: EventFilter):
        return self.store.query(flt)

    def follow(self, flt: EventFilter):
        return self.store.follow(flt)

    def sync(self) -> None:
        self.spool.sync()
        self.store.sync()

    def close(self) -> None:
        self.spool.close()
        self.store.close()
