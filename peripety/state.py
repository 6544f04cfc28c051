"""Where the daemon stopped reading, kept on disk so a restart (also after
``kill -9``) neither loses nor duplicates events of the same boot."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .safefiles import check_private_dir, open_private, write_atomically

log = logging.getLogger("peripety.state")

DEFAULT_STATE_DIR = Path("/var/lib/peripety")


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
