"""The journald message catalog for peripety's MESSAGE_IDs, so that
``journalctl -x`` explains each event. Generated from ``event_types.toml``;
``systemd/peripety.catalog`` in the source tree is this text."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from ..errors import StoreError
from ..event_types import EVENT_TYPES

log = logging.getLogger("peripety.stores.catalog")

CATALOG_DIR = Path("/usr/lib/systemd/catalog")
CATALOG_NAME = "peripety.catalog"


def catalog_text() -> str:
    return EVENT_TYPES.catalog()


def write_catalog(path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        path.write_text(catalog_text())
    except OSError as exc:
        raise StoreError(f"cannot write the journal catalog {path}: {exc.strerror}") from exc
    return path


def install_catalog(directory: str | os.PathLike = CATALOG_DIR) -> Path:
    """Write the catalog where journald looks and rebuild its index
    (``journalctl --update-catalog``). Needs root."""
    path = write_catalog(Path(directory) / CATALOG_NAME)
    result = subprocess.run(["journalctl", "--update-catalog"], capture_output=True, text=True)
    if result.returncode != 0:
        raise StoreError(f"journalctl --update-catalog failed after writing {path}: "
                         f"{result.stderr.strip() or result.returncode}")
    log.info("installed the journal catalog %s", path)
    return path


if __name__ == "__main__":  # python -m peripety.stores.catalog [PATH]: regenerate the shipped file
    import sys

    print(write_catalog(sys.argv[1] if len(sys.argv) > 1 else "systemd/peripety.catalog"))
