"""Saved logs (dmesg, ``dmesg -r``, /dev/kmsg dumps, syslog, journal JSON)
read back as records and rule matches.

The file is read in large chunks cut at record boundaries. :meth:`LogFile.matches`
is the fast path used by ``prpt parse``: for the kmsg and dmesg formats it
searches each chunk for ``lead + rule prefix`` and builds a record only for
the lines found (see :mod:`.prefilter`); other formats parse every line.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import LogFormatError
from ..record import LogRecord
from ..rules import Match, RuleSet
from .logformats import FORMAT_NAMES, FORMATS, LogFormat, detect_format
from .prefilter import candidate_regex, kernel_prefixes

log = logging.getLogger("peripety.sources.logfile")

CHUNK_SIZE = 4 << 20
SNIFF_SIZE = 64 << 10
"""Bytes at the head of a file checked for binary data and its format."""

# Lines of a kmsg dump that are neither a record head nor a dictionary line.
_KMSG_BAD_LINE = re.compile(r"\n(?!\d+,\d+,\d+,[^;\n]*;| |\n|\Z)")
_DMESG_RAW_BAD_LINE = re.compile(r"\n(?!<\d+>| |\n|\Z)")


@dataclass
class LogFileStats:
    lines: int = 0
    matched: int = 0
    malformed: int = 0
    """Lines not in the file's format, skipped."""
    first_malformed_line: int | None = None

    def add_malformed(self, count: int, line_number: int) -> None:
        if count and self.first_malformed_line is None:
            self.first_malformed_line = line_number
        self.malformed += count


class LogFile:
    """One saved log. ``fmt`` is a name from :data:`FORMAT_NAMES` or ``auto``."""

    def __init__(self, stream: BinaryIO, name: str, fmt: str = "auto"):
        if fmt != "auto" and fmt not in FORMATS:
            raise LogFormatError(f"{name}: unknown log format {fmt!r} (expected auto, {', '.join(FORMAT_NAMES)})")
        self.name = name
        self.stream = stream
        self.requested_format = fmt
        self.format: LogFormat | None = None if fmt == "auto" else FORMATS[fmt]
        self.stats = LogFileStats()
        self._head_checked = False
        self._regex_cache: tuple | None = None
        """(ruleset, lead, candidate regex) of the last chunk."""

    @classmethod
    def part(cls, stream: BinaryIO, name: str, fmt: str) -> "LogFile":
        """A later part of a log whose head was checked and format detected
        (see ``parallel``): it starts at a record boundary."""
        logfile = cls(stream, name, fmt)
        logfile._head_checked = True
        return logfile

    @classmethod
    def open(cls, path: str | Path, fmt: str = "auto") -> "LogFile":
        """Open a file, or standard input for ``-``."""
        if str(path) == "-":
            return cls(sys.stdin.buffer, "<stdin>", fmt)
        try:
            stream = open(path, "rb")
        except OSError as exc:
            raise LogFormatError(f"{path}: cannot read: {exc.strerror}") from None
        return cls(stream, str(path), fmt)

    def close(self) -> None:
        if self.stream is not sys.stdin.buffer:
            self.stream.close()

    def __enter__(self) -> "LogFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------
    def records(self) -> Iterator[LogRecord]:
        """Every record of the file, in order; malformed lines are counted and skipped."""
        for chunk, first_line in self._chunks():
            yield from self._parse_lines(chunk, first_line)

    def matches(self, ruleset: RuleSet, count_malformed: bool = True) -> Iterator[tuple[LogRecord, Match]]:
        """Records a rule matches, with the match.

        ``count_malformed=False`` skips counting lines read and malformed
        lines where that is a pass of its own (the kmsg and dmesg fast path:
        ~25 % of the time on a large file); ``stats.lines`` then stays 0.
        """
        for chunk, first_line in self._chunks(count_lines=count_malformed):
            fast = self._candidate_regex(chunk, ruleset)
            if fast is None:
                records = self._parse_lines(chunk, first_line)
            else:
                records = self._parse_candidates(chunk, fast)
                if count_malformed:
                    self._count_malformed(chunk, first_line)
            for record in records:
                match = ruleset.match_record(record)
                if match is not None:
                    self.stats.matched += 1
                    yield record, match

    # -- chunks -------------------------------------------------------------
    def _read(self, size: int) -> bytes:
        read1 = getattr(self.stream, "read1", None)
        try:
            return read1(size) if read1 else self.stream.read(size)
        except OSError as exc:
            raise LogFormatError(f"{self.name}: cannot read: {exc.strerror or exc}") from None

    def _chunks(self, count_lines: bool = True) -> Iterator[tuple[str, int]]:
        """Decoded text ending at a record boundary, with its first line
        number (when ``count_lines``; else line numbers stay 1)."""
        carry = b""
        line_number = 1
        first = True
        while True:
            data = self._read(CHUNK_SIZE)
            eof = not data
            buf = carry + data
            if first and not eof and buf.count(b"\n") < 40 and len(buf) < SNIFF_SIZE:
                carry = buf  # format detection wants a few lines
                continue
            if not buf:
                return
            if first:
                if not self._head_checked:
                    self.check_head(buf)
                first = False
            cut = len(buf) if eof else self._boundary(buf)
            if cut <= 0:
                carry = buf
                continue
            chunk_bytes, carry = buf[:cut], buf[cut:]
            chunk = chunk_bytes.decode("utf-8", "replace")
            lines = 0
            if count_lines:
                lines = chunk.count("\n") + (0 if chunk.endswith("\n") else 1)
                self.stats.lines += lines
            yield chunk, line_number
            line_number += lines
            if eof:
                return

    def _boundary(self, buf: bytes) -> int:
        """Offset just after the last complete record in ``buf`` (0: none yet)."""
        cut = buf.rfind(b"\n") + 1
        if self.format is not None and self.format.multiline:
            # The next chunk may begin with dictionary lines of the last record.
            cut = buf.rfind(b"\n", 0, max(cut - 1, 0)) + 1 if cut else 0
            while cut > 0 and buf[cut : cut + 1] == b" ":
                cut = buf.rfind(b"\n", 0, cut - 1) + 1
        return cut

    def check_head(self, head: bytes) -> None:
        """Refuse binary input; detect the format when it is ``auto``."""
        self._head_checked = True
        if b"\0" in head[:SNIFF_SIZE]:
            raise LogFormatError(
                f"{self.name}: binary data, not a text log "
                "(a journal file? export it with: journalctl --file FILE -o json)"
            )
        if self.format is None:
            sample = head[:SNIFF_SIZE].decode("utf-8", "replace").splitlines()[:40]
            name = detect_format(sample)
            if name is None:
                first = next((l for l in sample if l.strip()), "")
                raise LogFormatError(
                    f"{self.name}: cannot tell the log format from its first lines "
                    f"(line 1: {first[:60]!r}); pass --format ({', '.join(FORMAT_NAMES)})"
                )
            self.format = FORMATS[name]
            log.debug("%s: detected format %s", self.name, name)

    # -- lines --------------------------------------------------------------
    def _parse_lines(self, chunk: str, first_line: int) -> Iterator[LogRecord]:
        fmt = self.format
        lines = chunk.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        i = 0
        while i < len(lines):
            line, start = lines[i], i
            i += 1
            if not line.strip() or line.startswith("-- "):
                continue  # blank, or a journalctl "-- Boot ... --" marker
            if fmt.multiline:
                while i < len(lines) and lines[i].startswith(" "):
                    i += 1
                line = "\n".join(lines[start:i])
            record = fmt.parse(line)
            if record is None:
                self.stats.add_malformed(i - start, first_line + start)
                log.debug("%s:%d: not a %s line: %r", self.name, first_line + start, fmt.name, line[:80])
                continue
            yield record

    def _candidate_regex(self, chunk: str, ruleset: RuleSet) -> re.Pattern | None:
        lead = self._lead(chunk)
        if lead is None:
            return None
        cache = self._regex_cache
        if cache is None or cache[0] is not ruleset or cache[1] != lead:
            prefixes = kernel_prefixes(ruleset)
            regex = None if prefixes is None else candidate_regex(lead, prefixes)
            cache = self._regex_cache = (ruleset, lead, regex)
        return cache[2]

    def _lead(self, chunk: str) -> str | None:
        """What precedes the message text in this chunk's lines, when it is
        uniform enough to search for (else None: parse every line)."""
        name = self.format.name
        head = chunk[:200].lstrip("\n")
        if name == "kmsg":
            if head.startswith("<"):
                return r"\] " if head[1:8].find(">[") >= 0 else ">"
            return ";"
        if name == "dmesg":
            return r"\] " if head.startswith("[") else "\n"
        return None

    def _parse_candidates(self, chunk: str, regex: re.Pattern) -> Iterator[LogRecord]:
        parse = self.format.parse
        multiline = self.format.multiline
        if regex.pattern.startswith("\n"):
            chunk = "\n" + chunk  # the first line has no newline before it
        find, rfind = chunk.find, chunk.rfind
        done = -1
        for m in regex.finditer(chunk):
            pos = m.start()
            if pos < done:
                continue  # a second hit inside a line already handled
            start = pos + 1 if chunk[pos] == "\n" else rfind("\n", 0, pos) + 1
            end = find("\n", pos + 1)
            if end < 0:
                end = len(chunk)
            if multiline:
                while chunk.startswith(" ", end + 1):
                    nxt = find("\n", end + 1)
                    end = nxt if nxt >= 0 else len(chunk)
            done = end
            if chunk.startswith(" ", start):
                continue  # inside a continuation line of a record not found
            record = parse(chunk[start:end])
            if record is not None:
                yield record

    def _count_malformed(self, chunk: str, first_line: int) -> None:
        name = self.format.name
        if name != "kmsg":
            return  # any line is a dmesg message
        head = chunk[:200].lstrip("\n")
        bad = _DMESG_RAW_BAD_LINE if head.startswith("<") else _KMSG_BAD_LINE
        text = "\n" + chunk
        count = 0
        first_pos = None
        for m in bad.finditer(text):
            count += 1
            if first_pos is None:
                first_pos = m.start()
        if count:
            self.stats.add_malformed(count, first_line + text.count("\n", 0, first_pos))


def read_records(path: str | Path, fmt: str = "auto") -> list[LogRecord]:
    """All records of a saved log (for tests and small files)."""
    with LogFile.open(path, fmt) as logfile:
        return list(logfile.records())


def from_text(text: str, fmt: str = "auto", name: str = "<text>") -> LogFile:
    """A LogFile over a string (tests, pasted lines)."""
    return LogFile(io.BytesIO(text.encode("utf-8")), name, fmt)
