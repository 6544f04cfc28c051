"""Event stores: journald and SQLite behind one contract (``EventStore``),
an on-disk spool for when the store is down, and ``open_store`` to pick one.
"""

from ..errors import StoreError
from .base import EventStore, Follower
from .factory import SPEC_HELP, StoreSpec, open_store, parse_store_spec
from .filter import EventFilter
from .spool import Spool, SpoolingStore

__all__ = [
    "EventFilter",
    "EventStore",
    "Follower",
    "SPEC_HELP",
    "Spool",
    "SpoolingStore",
    "StoreError",
    "StoreSpec",
    "open_store",
    "parse_store_spec",
]
