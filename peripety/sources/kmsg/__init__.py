"""The kernel log as records: parse ``/dev/kmsg`` records and read them live."""

from .clock import boot_id, kernel_usec_to_wallclock, realtime_offset
from .reader import KMSG_PATH, KmsgReader
from .record import KmsgStats, decode_escapes, parse_record

__all__ = [
    "KMSG_PATH",
    "KmsgReader",
    "KmsgStats",
    "boot_id",
    "decode_escapes",
    "kernel_usec_to_wallclock",
    "parse_record",
    "realtime_offset",
]
