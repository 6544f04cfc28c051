"""How events are shown: a readable line, pretty JSON, or JSON lines."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from ..event import StorageEvent
from ..event_json import compact_json
from ..timespec import human_time
from .options import OUTPUT_JSON, OUTPUT_JSONL, OUTPUT_TEXT


def event_line(event: StorageEvent, now=None, show_host: bool = False) -> str:
    """``TIME [HOST] [KERNEL TIME] SEVERITY SUB_SYSTEM EVENT_TYPE kdev: msg``
    (one line). TIME is local (UTC with --utc), with the date when not
    today; HOST (``show_host``) is the event's hostname, ``-`` when it has
    none, where syslog puts it; the kernel time is shown as dmesg prints
    it, where the event has one. A saved line that had no wall-clock time
    shows no TIME (its timestamp is only when it was parsed): just the
    kernel stamp, or ``-``."""
    parts = [] if event.clockless else [human_time(event.timestamp, now)]
    if show_host:
        parts.append(event.hostname or "-")
    if event.kernel_usec is not None:
        seconds, usec = divmod(event.kernel_usec, 1_000_000)
        parts.append(f"[{seconds:5d}.{usec:06d}]")
    stamp = " ".join(parts) or "-"
    line = (
        f"{stamp} {event.severity.name} {event.sub_system} "
        f"{event.event_type} {event.kdev}: {event.msg}"
    )
    if event.count > 1:
        line += f" (x{event.count})"
    if event.untrusted_writer is not None:
        sender = " ".join(f"{k}={v}" for k, v in event.untrusted_writer.items() if k != "exe")
        line = f"UNTRUSTED({sender or 'unknown sender'}) {line}"
    return line.replace("\n", " ")


class EventWriter:
    """Writes events to a stream in one of the output formats.

    ``flush_each`` makes every event visible at once (monitor, pipes); a
    batch job over a file leaves it off and calls :meth:`flush` itself.
    """

    def __init__(self, stream: TextIO | None = None, output_format: str = OUTPUT_TEXT, flush_each: bool = True,
                 show_host: bool = False):
        if output_format not in (OUTPUT_TEXT, OUTPUT_JSON, OUTPUT_JSONL):
            raise ValueError(f"unknown output format {output_format!r}")
        self.stream = stream if stream is not None else sys.stdout
        self.output_format = output_format
        self.flush_each = flush_each
        self.show_host = show_host
        """Text lines name the host (JSON always has ``hostname``)."""
        self.written = 0

    def write(self, event: StorageEvent) -> None:
        if self.output_format == OUTPUT_JSONL:
            text = compact_json(event) + "\n"
        elif self.output_format == OUTPUT_JSON:
            text = ("\n" if self.written else "") + event.to_json(pretty=True) + "\n"
        else:
            text = event_line(event, show_host=self.show_host) + "\n"
        self.stream.write(text)
        self.written += 1
        if self.flush_each:
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()


def quiet_broken_pipe() -> None:
    """The reader went away (``prpt parse x | head``): stop without a
    traceback and without another EPIPE when Python flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(1)  # the output is incomplete: say so to scripts, as SIGPIPE would
