"""One verbosity-aware logger to stderr for the command-line tools.

``-v`` shows info, ``-vv`` debug; the default shows warnings. Only peripety's own loggers get the handler, so a library's
chatter stays out of a user's terminal.
"""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(levelname)s: %(message)s"
_DEBUG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def setup_logging(verbosity: int = 0, prefix: str = "") -> None:
    """Send ``peripety.*`` log records to stderr at the level ``verbosity``
    picks, each line starting with ``prefix`` (the daemon names itself).

    Calling it again (a second command in one process, CliRunner tests)
    replaces the handler instead of stacking another.
    """
    logger = logging.getLogger("peripety")
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    for handler in list(logger.handlers):
        if getattr(handler, "_peripety_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._peripety_cli = True
    handler.setFormatter(logging.Formatter(prefix + (_DEBUG_FORMAT if level <= logging.DEBUG else _FORMAT)))
    logger.addHandler(handler)
    logger.setLevel(level)
