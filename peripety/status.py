"""The running daemon's status file, read by ``prpt top`` and ``prpt``
commands to show which sources are active."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_STATUS_PATH = Path("/run/peripety/status.json")


def write_status(path: Path, status: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(status, indent=2))
    os.replace(tmp, path)


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
