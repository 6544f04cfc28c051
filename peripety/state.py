"""Where the daemon stopped reading, kept on disk so a restart (also after
``kill -9``) neither loses nor duplicates events of the same boot."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

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
            data = json.loads(self.path.read_text())
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
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".position.")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(asdict(position), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        self._last = ReadPosition(**asdict(position))


def _where(position: ReadPosition) -> tuple:
    return position.boot_id, position.kmsg_seq, position.journal_cursor
