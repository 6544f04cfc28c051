"""Where records come from, behind one interface (``base.py``): the live
sources the daemon polls (kmsg, journal, udev, bpf) and saved log files
(``prpt parse``, ``peripetyd --replay``)."""

from .base import HITS, RECORDS, UEVENTS, LiveSource, Notice
from .logfile import LogFile, LogFileStats, from_text, read_records
from .logformats import FORMAT_NAMES, detect_format

__all__ = ["FORMAT_NAMES", "HITS", "RECORDS", "UEVENTS", "LiveSource", "LogFile", "LogFileStats", "Notice",
           "detect_format", "from_text", "read_records"]
