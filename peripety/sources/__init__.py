"""Where records come from: saved log files (``prpt parse``); the live
sources (kmsg, journal) live in their own packages."""

from .logfile import LogFile, LogFileStats, from_text, read_records
from .logformats import FORMAT_NAMES, detect_format

__all__ = ["FORMAT_NAMES", "LogFile", "LogFileStats", "detect_format", "from_text", "read_records"]
