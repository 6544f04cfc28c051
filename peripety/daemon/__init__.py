"""``peripetyd``: live kernel storage messages turned into stored events.

The parts (doc/design.md, "The daemon"):

- ``cli/peripetyd.py``   the click command (options beside the ``prpt`` ones)
- ``service.py``         the composition root: config, store, timeline,
                         pipeline and sources wired together; reload, status
- ``loop.py``            the one selector loop over sources and signals
- ``system.py``          the instance lock and sd_notify
- ``check.py``           ``--check``: what would run, validated
- ``position.py`` (in the package root) read position, resume, exactly once
"""

from __future__ import annotations

from .service import Daemon, DaemonOptions

__all__ = ["Daemon", "DaemonOptions"]


def __getattr__(name: str):
    # ``peripetyd`` console scripts installed before the command moved to
    # cli/peripetyd.py import ``peripety.daemon:cli_main``. Imported on use:
    # the command imports this package, so a top-level import would be a cycle.
    if name in ("cli_main", "main"):
        from ..cli import peripetyd

        return getattr(peripetyd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
