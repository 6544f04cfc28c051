"""Exactly once across restarts: where the daemon stopped reading and what
it already stored (doc/design.md, "Read position and resume").

- ``ReadPosition``/``PositionFile``: the last kmsg seq fully handled (and
  the journal cursor), saved atomically, of this boot only.
- ``InFlight``: kmsg seqs read whose events are not stored yet; the saved
  position never passes one of them.
- ``ResumeIndex``: what a previous run of this boot already stored, so a
  record read again after a restart is stored once.
- Event ids of kmsg events (and of storm aggregates) are deterministic from
  (boot id, seq): the same record always makes the same id.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from .errors import PeripetyError
from .event import StorageEvent
from .safefiles import check_private_dir, open_private, write_atomically
from .stores.filter import EventFilter

log = logging.getLogger("peripety.position")

DEFAULT_STATE_DIR = Path("/var/lib/peripety")
# How far back to look for events already stored when resuming: covers the
# longest time an event can be held in memory (storm window, merge hold).
RESUME_LOOKBACK = _dt.timedelta(minutes=5)

# Event ids of kmsg-derived events are derived from (boot id, kmsg seq): a
# record replayed after a crash gets the same id, so the daemon can tell
# what it already stored and never writes an event twice.
_EVENT_ID_NAMESPACE = uuid.UUID("b7f5d0a2-6f57-4c53-8a8e-53c0d6f1e8a1")


def kmsg_event_id(boot_id: str, seq: int, line_no: int = 0) -> str:
    """Id of the event of kmsg record ``seq``; ``line_no`` > 0 for the
    further lines of a multi-line record (each its own event)."""
    suffix = f":{line_no}" if line_no else ""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{boot_id}:{seq}{suffix}"))


def storm_event_id(boot_id: str, first_seq: int) -> str:
    """Id of a storm aggregate whose first member is kmsg record
    ``first_seq``: deterministic (a resume can prove the aggregate is of this
    boot) and never equal to a single event's id."""
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{boot_id}:storm:{first_seq}"))


@dataclass
class ReadPosition:
    boot_id: str = ""
    kmsg_seq: int = -1
    """Every kmsg record up to this seq is handled: its events are stored,
    folded into a stored storm aggregate or merged into a stored event, or
    it was in the ring before the first start (a first start saves the end
    of the ring, never 0). -1: none of this boot (resume from the oldest)."""
    journal_cursor: str = ""
    saved_at_usec: int = 0
    """Wall clock (µs) of the save; bounds the duplicate check on resume."""


class PositionFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._last: ReadPosition | None = None

    def load(self) -> ReadPosition | None:
        try:
            fd = open_private(self.path, os.O_RDONLY)
            with os.fdopen(fd, "rb") as fh:
                data = json.loads(fh.read())
            return ReadPosition(**{k: data[k] for k in ReadPosition.__dataclass_fields__ if k in data})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: cannot read the saved read position (%s); starting at the end", self.path, exc)
            return None

    def save(self, position: ReadPosition) -> None:
        """Atomically replace the file (write, fsync, rename) when the
        position moved; an idle daemon writes nothing."""
        if self._last is not None and _where(position) == _where(self._last):
            return
        check_private_dir(self.path.parent)
        write_atomically(self.path, json.dumps(asdict(position)).encode())
        self._last = ReadPosition(**asdict(position))


def _where(position: ReadPosition) -> tuple:
    return position.boot_id, position.kmsg_seq, position.journal_cursor


class ResumeIndex:
    """What a previous run of this boot already stored, so that records read
    again after a restart are stored exactly once.

    The rule ("exactly once" across kill -9): a record is re-read when the
    saved position is before it. Its event is dropped when the store already
    holds it: as a single event (same deterministic id from boot id and kmsg
    seq) or inside a storm aggregate of the same type and device whose
    ``extension.kmsg_seq_range`` contains its seq (an aggregate is appended
    whole, in one store write, so it is either stored with all its members or
    not at all). A storm slice that was still in memory when the daemon died
    was never stored; its records are re-read and counted by the new run. A
    BPF hit that was in memory is lost (the kernel does not replay
    tracepoints); its kernel line, if one was printed, is re-read.
    """

    def __init__(self, boot_id: str = "", events: Iterable[StorageEvent] = ()):
        self.ids: set[str] = set()
        self._ranges: dict[str, list[tuple[int, int, str, str]]] = {}
        for event in events:
            self.ids.add(event.event_id)
            lo_hi = event.extension.get("kmsg_seq_range", "")
            lo, _, hi = lo_hi.partition("-")
            if not (lo.isdigit() and hi.isdigit()):
                continue
            # only aggregates of this boot: their id proves it
            if event.event_id == storm_event_id(boot_id, int(lo)):
                self._ranges.setdefault(event.event_type, []).append(
                    (int(lo), int(hi), event.dev_num or "", event.kdev or ""))

    def covers(self, event: StorageEvent) -> bool:
        seq = event.origin_seq
        if seq is None:
            return False
        if event.event_id in self.ids:
            return True
        return any(
            lo <= seq <= hi and ((dev_num and dev_num == event.dev_num) or (kdev and kdev == event.kdev))
            for lo, hi, dev_num, kdev in self._ranges.get(event.event_type, ())
        )

    def __len__(self) -> int:
        return len(self.ids)


class InFlight:
    """kmsg sequence numbers whose events are not stored yet.

    The daemon persists ``safe_seq()``: every record up to it is fully
    handled, so a restart resumes right after it.
    """

    def __init__(self):
        self._counts: Counter[int] = Counter()
        self.last_read = -1
        """Highest kmsg seq read (or skipped at start-up): -1 before any."""

    def hold(self, seq: int | None) -> None:
        if seq is not None:
            self._counts[seq] += 1

    def release(self, seq: int | None) -> None:
        if seq is None:
            return
        self._counts[seq] -= 1
        if self._counts[seq] <= 0:
            del self._counts[seq]

    def safe_seq(self) -> int:
        if self._counts:
            return min(self._counts) - 1
        return self.last_read


def resume_point(position_file: PositionFile, boot_id: str) -> ReadPosition | None:
    """The saved position to resume from: only one of this boot."""
    position = position_file.load()
    # kmsg_seq -1 of this boot: saved when the ring was empty, resume from its start
    if position is None or position.boot_id != boot_id or position.kmsg_seq < -1:
        return None
    log.info("resuming after kmsg seq %d of this boot", position.kmsg_seq)
    return position


def already_stored(store, boot_id: str, position: ReadPosition) -> ResumeIndex:
    """Events ``store`` got shortly before ``position`` was saved: a record
    read again whose event is among them (alone or inside a storm
    aggregate) is not written again (see ``ResumeIndex``)."""
    since = _dt.datetime.fromtimestamp(position.saved_at_usec / 1e6).astimezone() - RESUME_LOOKBACK
    try:
        return ResumeIndex(boot_id, store.query(EventFilter(since=since)))
    except PeripetyError as exc:
        log.warning("cannot read back recent events (%s): a restart may duplicate a few", exc)
        return ResumeIndex()
