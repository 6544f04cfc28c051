"""The running daemon's status file, read by ``prpt top`` and ``prpt``
commands to show which sources are active."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .safefiles import check_private_dir, write_atomically

DEFAULT_STATUS_PATH = Path("/run/peripety/status.json")


def write_status(path: Path, status: dict) -> None:
    """Replace the status file (readable by all: ``prpt top`` runs as anyone);
    its directory is checked like every state directory (safefiles.py)."""
    path = Path(path)
    check_private_dir(path.parent, mode=0o755)
    write_atomically(path, json.dumps(status, indent=2).encode(), 0o644, fsync=False)


def read_status(path: Path = DEFAULT_STATUS_PATH) -> dict | None:
    """The status of a running daemon, or None when none runs."""
    try:
        status = json.loads(Path(path).read_text())
        os.kill(int(status["pid"]), 0)
    except PermissionError:
        return status  # alive, only not ours to signal
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status


def remove_status(path: Path) -> None:
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass
