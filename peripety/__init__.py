"""peripety: storage events from kernel logs and block/SCSI tracepoints.

The public surface is re-exported here; modules whose names start with an
underscore, and anything not listed in ``__all__``, are internal.
"""

from .errors import (
    ConfigError,
    DeviceNotFound,
    EventFormatError,
    LogFormatError,
    PeripetyError,
    StoreError,
)
from .event import SUB_SYSTEMS, BlkInfo, Severity, StorageEvent, canonical_sub_system
from .event_types import EVENT_TYPES

__version__ = "0.1.0"

__all__ = [
    "BlkInfo",
    "ConfigError",
    "DeviceNotFound",
    "EVENT_TYPES",
    "EventFormatError",
    "LogFormatError",
    "PeripetyError",
    "Severity",
    "StorageEvent",
    "StoreError",
    "SUB_SYSTEMS",
    "canonical_sub_system",
]
