"""One verbosity-aware logger to stderr for the command-line tools.

``-v`` shows info, ``-vv`` debug, ``-q`` errors only; the default shows
warnings. Only peripety's own loggers get the handler, so a library's
chatter stays out of a user's terminal.
"""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(levelname)s: %(message)s"
_DEBUG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def level_for(verbosity: int) -> int:
    """0 -> WARNING, 1 -> INFO, 2+ -> DEBUG, negative -> ERROR."""
    if verbosity < 0:
        return logging.ERROR
    return (logging.WARNING, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG


def setup_logging(verbosity: int = 0, stream=None) -> logging.Logger:
    """Send ``peripety.*`` log records to stderr at the level ``verbosity`` picks.

    Calling it again (a second command in one process, CliRunner tests)
    replaces the handler instead of stacking another.
    """
    logger = logging.getLogger("peripety")
    level = level_for(verbosity)
    for handler in list(logger.handlers):
        if getattr(handler, "_peripety_cli", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler._peripety_cli = True
    handler.setFormatter(logging.Formatter(_DEBUG_FORMAT if level <= logging.DEBUG else _FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    return logger
