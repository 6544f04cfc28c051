"""Saved logs (dmesg, ``dmesg -r``, /dev/kmsg dumps, syslog, journal JSON)
read back as records and rule matches.

The file is read in large chunks cut at record boundaries. :meth:`LogFile.matches`
is the fast path used by ``prpt parse``: for the kmsg and dmesg formats it
searches each chunk for ``lead + rule prefix`` and builds a record only for
the lines found (see :mod:`.prefilter`); other formats parse every line.

gzip, xz and bzip2 files (rotated logs, sosreports) are read through the
standard library's decompressors, told by their magic bytes, not their names.
A log cut short by a crash often holds a run of NUL bytes where the last
blocks were never written, or garbage without newlines: that part is skipped,
the rest read, and each place is listed in ``stats.problems``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import logging
import lzma
import os
import re
import select
import stat
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from ..errors import LogFormatError
from ..record import KERNEL_FACILITY, LogRecord, record_lines
from .logformats import FORMAT_NAMES, FORMATS, LogFormat, detect_format, format_list, iso_stamped
from .logformats import SOURCE as FILE_SOURCE
from .prefilter import candidate_regex, kernel_prefixes

if TYPE_CHECKING:  # (the rules are loaded after a large file's workers are forked: see parallel)
    from ..rules import Match, RuleSet

log = logging.getLogger("peripety.sources.logfile")

CHUNK_SIZE = 4 << 20
SNIFF_SIZE = 64 << 10
"""Bytes at the head of a file checked for binary data and its format."""
MAX_LINE = 64 << 10
"""A longer line is not a log line (the kernel prints at most 1 KiB, rsyslog
8 KiB, journald 48 KiB): it is skipped as garbage."""
MAX_LINE_JSON = 1 << 20
"""journalctl -o json --all may print large fields: a wider limit."""
LIVE_PAUSE = 0.2
"""Seconds a live pipe may be quiet before what was read is shown."""
MAX_PROBLEMS = 100
"""Problem places kept per file (the count goes on)."""

# Lines of a kmsg dump that are neither a record head nor a dictionary line.
_KMSG_BAD_LINE = re.compile(rb"\n(?!\d+,\d+,\d+,[^;\n]*;| |\n|\Z)")
_DMESG_RAW_BAD_LINE = re.compile(rb"\n(?!<\d+>| |\n|\Z)")
_NULS = re.compile(rb"\0+")
_JOURNAL_FILE_MAGIC = b"LPKSHHRH"
# Magic bytes -> (name, opener) of the compressed formats the stdlib reads.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
    (b"\xfd7zXZ\x00", "xz", lambda f: lzma.LZMAFile(f, "rb")),
    (b"BZh", "bzip2", lambda f: bz2.BZ2File(f, "rb")),
)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_FAST_FORMATS = ("kmsg", "dmesg")
"""Formats read through the prefilter: lines are found, not walked."""


@dataclass
class LogFileStats:
    lines: int = 0
    matched: int = 0
    malformed: int = 0
    """Lines not in the file's format, skipped."""
    first_malformed_line: int | None = None
    records: int = 0
    """Records read (counted where every line is parsed: see ``records_known``)."""
    records_known: bool = True
    """False once the prefilter fast path skipped lines unparsed."""
    problems: list[tuple[int | None, int, str]] = field(default_factory=list)
    """(line number, byte offset, what was skipped there): NUL runs,
    over-long lines, a compressed stream ending early. The line is None
    where lines were not counted (see ``LogFile.problem_lines``). At most
    MAX_PROBLEMS are kept."""
    problem_count: int = 0

    def add_malformed(self, count: int, line_number: int | None) -> None:
        if count and self.first_malformed_line is None:
            self.first_malformed_line = line_number
        self.malformed += count

    def add_problem(self, where: tuple[int | None, int], what: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append((*where, what))


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
        self.compressed: str | None = None
        """gzip, xz or bzip2 when the stream is decompressed on the fly."""
        self._head_checked = False
        self._base = 0
        """Byte offset of the stream's start in the file (a part's start)."""
        self._seekable_file = False
        """A regular file read as is: problem places can be turned into line
        numbers afterwards, so lines need not be counted while reading."""
        self._live = False
        """A pipe, terminal or socket that may pause (journalctl -f | prpt parse -)."""
        self._regex_cache: tuple | None = None
        """(ruleset, lead, candidate regex, the regex for "\\x0a"-continued
        lines or None) of the last chunk."""
        self._remaining: int | None = None
        """Bytes left to read in a part of a file (None: read to the end)."""

    @classmethod
    def part(cls, stream: BinaryIO, name: str, fmt: str, start: int = 0, end: int | None = None) -> "LogFile":
        """A part of the regular file ``name`` whose head was checked and
        format detected (see ``parallel``): ``stream`` is positioned
        ``start`` bytes into the file, at a record boundary; the part ends
        at ``end`` (another record boundary) or the end of the file."""
        logfile = cls(stream, name, fmt)
        logfile._head_checked = True
        logfile._base = start
        logfile._seekable_file = True
        if end is not None:
            logfile._remaining = end - start
        return logfile

    @classmethod
    def open(cls, path: str | Path, fmt: str = "auto") -> "LogFile":
        """Open a file, or standard input for ``-``."""
        if str(path) == "-":
            return cls._decompressing(sys.stdin.buffer, "<stdin>", fmt)
        try:
            stream = open(path, "rb")
        except OSError as exc:
            raise LogFormatError(f"{path}: cannot read: {exc.strerror}") from None
        return cls._decompressing(stream, str(path), fmt)

    @classmethod
    def _decompressing(cls, stream, name: str, fmt: str) -> "LogFile":
        """A LogFile over ``stream``, through a decompressor if its first
        bytes are a gzip, xz or bzip2 header."""
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(stream)  # e.g. a BytesIO standing in for stdin
        try:
            magic = stream.peek(8)[:8]
        except OSError:
            magic = b""  # the first read reports it
        if magic.startswith(_ZSTD_MAGIC):
            raise LogFormatError(f"{name}: zstd-compressed; read it with: zstdcat {name} | prpt parse -")
        for head, kind, opener in _COMPRESSED:
            if magic.startswith(head):
                logfile = cls(opener(stream), name, fmt)
                logfile.compressed = kind
                logfile._raw = stream
                return logfile
        logfile = cls(stream, name, fmt)
        try:
            regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return logfile  # no descriptor: a stream in memory, read to its end at once
        logfile._seekable_file = regular and stream is not sys.stdin.buffer
        logfile._live = not regular
        return logfile

    def close(self) -> None:
        raw = getattr(self, "_raw", None)
        if raw is not None:
            self.stream.close()
            self.stream = raw
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
            yield from self._parse_lines(chunk.decode("utf-8", "replace"), first_line)

    def matches(self, ruleset: RuleSet, count_malformed: bool = True) -> Iterator[tuple[LogRecord, Match]]:
        """Records a rule matches, with the match.

        ``count_malformed=False`` skips counting malformed lines where that
        is a pass of its own (the kmsg and dmesg fast path: ~25 % of the time
        on a large file).
        """
        for chunk, first_line, fast in self._scanned(ruleset, count_malformed):
            for record in self._records(chunk, first_line, fast):
                if type(record) is tuple:  # the usual kmsg record, read in place
                    record = _kmsg_record(*record)
                yield from self._matched(record, ruleset)

    def json_lines(self, ruleset: RuleSet, count_malformed: bool = True, hostname: str | None = None,
                   boot_time=None) -> Iterator[str]:
        """``json_lines_from_matches(self.matches(ruleset, count_malformed))``,
        the same text (tests check), faster: the usual kmsg record goes from
        its bytes to its JSON line with no record or match object made on the
        way (``JsonLines.kernel``), when ``ruleset.first`` allows."""
        from ..json_lines import JsonLines

        out = JsonLines(hostname, boot_time)
        direct = ruleset.first is not None
        for chunk, first_line, fast in self._scanned(ruleset, count_malformed):
            if direct and fast is not None and self._plain_kmsg(fast):
                yield from self._kmsg_json_lines(chunk, fast, ruleset, out)
                continue
            for record in self._records(chunk, first_line, fast):
                if type(record) is tuple:
                    record = _kmsg_record(*record)
                for line, match in self._matched(record, ruleset):
                    yield out.pair(line, match)

    def _scanned(self, ruleset: RuleSet, count_malformed: bool) -> Iterator[tuple[bytes, int | None,
                                                                             re.Pattern | None]]:
        """(chunk, its first line number, the regex finding its candidate
        lines or None: read every line) of each chunk."""
        # The fast path searches the raw bytes and decodes only the records
        # found: UTF-8 decoding ("replace") of a line is the same alone as
        # within its chunk, a newline byte being never part of a character.
        for chunk, first_line in self._chunks(count_lines=count_malformed):
            fast = self._candidate_regex(chunk, ruleset)
            if fast is not None:
                self.stats.records_known = False
                if count_malformed:
                    self._count_malformed(chunk, first_line)
            yield chunk, first_line, fast

    def _records(self, chunk: bytes, first_line: int | None, fast: re.Pattern | None) -> Iterator[LogRecord | tuple]:
        """The chunk's records (see ``_parse_candidates`` for the tuples)."""
        if fast is None:
            return self._parse_lines(chunk.decode("utf-8", "replace"), first_line)
        return self._parse_candidates(chunk, fast)

    def _matched(self, record: LogRecord, ruleset: RuleSet) -> Iterator[tuple[LogRecord, Match]]:
        """(line, match) for each line of ``record`` a rule matches."""
        if "\n" in record.text:  # one record, several lines: each its own (as the daemon does)
            for _, line in record_lines(record):
                match = ruleset.match_record(line)
                if match is not None:
                    self.stats.matched += 1
                    yield line, match
            return
        # (ruleset.match_record, one call less: a kernel record meets the kernel rules)
        match = ruleset.match(record.text, record.level) if record.trusted_kernel else ruleset.match_record(record)
        if match is not None:
            self.stats.matched += 1
            yield record, match

    # -- chunks -------------------------------------------------------------
    def _read(self, size: int, where: tuple[int | None, int]) -> bytes:
        if self._remaining is not None:
            size = min(size, self._remaining)
            if size <= 0:
                return b""
        read1 = getattr(self.stream, "read1", None)
        try:
            data = read1(size) if read1 else self.stream.read(size)
            if self._remaining is not None:
                self._remaining -= len(data)
            return data
        except (EOFError, lzma.LZMAError, zlib.error, OSError) as exc:
            if self.compressed is None or (isinstance(exc, OSError) and exc.errno is not None):
                raise LogFormatError(f"{self.name}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
            # A compressed log cut short (a crash, a partial copy): keep what came before.
            self.stats.add_problem(where, f"{self.compressed} data ends early or is corrupt ({exc}); "
                                                "the rest of the file is lost")
            return b""

    def _read_after(self, carry: bytes, size: int, where: tuple[int | None, int]) -> bytearray:
        """``carry + self._read(size)`` for a regular file read as it is
        (not decompressed): one new buffer holding ``carry``, read into in
        place, so no copy of a whole chunk is made to join it to the carry
        or to cut the carry off again (half the time of reading a log)."""
        if self._remaining is not None:
            size = max(0, min(size, self._remaining))
        buf = bytearray(len(carry) + size)
        buf[: len(carry)] = carry
        got = 0
        if size:
            readinto = getattr(self.stream, "readinto1", None) or self.stream.readinto
            try:
                with memoryview(buf) as view, view[len(carry):] as free:
                    got = readinto(free) or 0
            except OSError as exc:
                raise LogFormatError(f"{self.name}: cannot read: {exc.strerror or exc}") from None
        del buf[len(carry) + got:]
        if self._remaining is not None:
            self._remaining -= got
        return buf

    def _chunks(self, count_lines: bool = True) -> Iterator[tuple[bytes, int | None]]:
        """Raw text ending at a record boundary, with its first line
        number. Lines are counted when ``count_lines``, or where a problem
        could not be placed afterwards (a pipe, a compressed stream), or the
        format is read line by line anyway; else the number is None (counting
        costs ~6 % of the kmsg fast path) and problems keep byte offsets."""
        carry = b""
        line_number: int | None = 1
        read_total = 0
        first = True
        skipping: list | None = None
        """[line number, byte offset, bytes] of an over-long line being skipped."""
        while True:
            # A live pipe that pauses: what is held back (the last record, in
            # case continuation lines follow; the lines kept for format
            # detection) is all there is for now, show it.
            paused = bool(carry) and carry.endswith(b"\n") and self._live and self._paused()
            where = (line_number, self._base + read_total - len(carry))
            if skipping is None and self._seekable_file and self.compressed is None:
                buf = self._read_after(carry, CHUNK_SIZE, where)
                read_total += len(buf) - len(carry)
                eof = len(buf) == len(carry)
            else:
                data = b"" if paused else self._read(CHUNK_SIZE, where)
                read_total += len(data)
                eof = not data and not paused
                if skipping is not None:
                    end = data.find(b"\n")
                    if end < 0 and not eof:
                        skipping[2] += len(data)
                        continue
                    skipping[2] += len(data) if end < 0 else end
                    self._skipped_long_line(*skipping)
                    data = b"" if end < 0 else data[end + 1:]
                    if line_number is not None:
                        line_number += 1
                    skipping = None
                buf = carry + data
            if first and not eof and not paused and buf.count(b"\n") < 40 and len(buf) < SNIFF_SIZE:
                carry = buf  # format detection wants a few lines
                continue
            if not buf:
                return
            if first:
                if not self._head_checked:
                    self.check_head(buf)
                first = False
                if not count_lines and self._seekable_file and self.format.name in _FAST_FORMATS:
                    line_number = None
            offset = self._base + read_total - len(buf)
            cut = len(buf) if eof or paused else self._boundary(buf)
            garbage = 0
            if cut <= 0 and len(buf) > self._max_line() + CHUNK_SIZE:
                # No record end in sight: the last line is garbage, what comes
                # before it is whole.
                cut = buf.rfind(b"\n") + 1
                garbage = len(buf) - cut
            if cut <= 0 and not garbage:
                carry = buf
                continue
            if type(buf) is bytearray:  # (read in place: the carry is copied out, the chunk is not)
                carry = b"" if garbage else bytes(buf[cut:])
                del buf[cut:]
                chunk_bytes = buf
            else:
                chunk_bytes, carry = buf[:cut], (b"" if garbage else buf[cut:])
            lines = None
            if line_number is not None:
                lines = chunk_bytes.count(b"\n") + (0 if chunk_bytes.endswith(b"\n") or not chunk_bytes else 1)
                self.stats.lines += lines
            if garbage:
                skipping = [None if line_number is None else line_number + lines, offset + cut, garbage]
                if not cut:
                    continue
            if b"\0" in chunk_bytes:
                chunk_bytes = self._drop_nul_runs(chunk_bytes, line_number, offset)
            if len(chunk_bytes) > self._max_line():
                chunk_bytes = self._drop_long_lines(chunk_bytes, line_number, offset)
            yield chunk_bytes, line_number
            if line_number is not None:
                line_number += lines
            if eof:
                return

    def _paused(self) -> bool:
        """Nothing more to read from the live stream for a moment. (read1
        returned everything buffered, so the descriptor tells.)"""
        try:
            return not select.select([self.stream.fileno()], [], [], LIVE_PAUSE)[0]
        except (OSError, ValueError, io.UnsupportedOperation):
            return False

    # -- damaged parts ------------------------------------------------------
    def _max_line(self) -> int:
        return MAX_LINE_JSON if self.format is not None and self.format.name == "journal-json" else MAX_LINE

    def _drop_nul_runs(self, chunk: bytes, first_line: int | None, offset: int) -> bytes:
        """Remove each run of NUL bytes with the cut-off text before it on its
        line; what follows the run on that line is kept (a new line written
        after the crash). No newline is removed: line numbers stay true."""
        spans = _nul_spans(chunk)
        places = _Places(chunk, first_line, offset)
        for start, nul_start, end in spans:
            cut = nul_start - start
            self.stats.add_problem(
                places.at(start), f"{end - nul_start} NUL byte(s) skipped"
                + (f" with the {cut} byte(s) of cut-off text before them" if cut else "")
                + " (a log truncated by a crash?)")
        return _without(chunk, spans)

    def _drop_long_lines(self, chunk: bytes, first_line: int | None, offset: int) -> bytes:
        """Empty every line longer than the format allows. A line that long
        spans a whole probe window of half that size, so probing one window
        in each finds them all in a few ``find`` calls per chunk."""
        limit = self._max_line()
        window = limit // 2
        find = chunk.find
        spans = []
        pos = 0
        while pos + window <= len(chunk):
            if find(b"\n", pos, pos + window) >= 0:
                pos += window
                continue
            start = chunk.rfind(b"\n", 0, pos) + 1
            end = find(b"\n", pos + window)
            end = len(chunk) if end < 0 else end
            if end - start > limit:
                spans.append((start, end))
            pos = end + 1
        if not spans:
            return chunk
        places = _Places(chunk, first_line, offset)
        parts, last = [], 0
        for start, end in spans:
            self._skipped_long_line(*places.at(start), end - start)
            parts.append(chunk[last:start])
            last = end
        parts.append(chunk[last:])
        return b"".join(parts)

    def _skipped_long_line(self, line_number: int | None, offset: int, size: int) -> None:
        self.stats.add_problem(
            (line_number, offset), f"line of {size} bytes skipped: longer than any log line "
            f"({self._max_line() // 1024} KiB), garbage in a damaged log?")

    def problem_lines(self) -> list[tuple[int, str]]:
        """``stats.problems`` as (line number, what), placing those read
        without line counting by counting the file's newlines up to them."""
        found = self.stats.problems
        unplaced = sorted({offset for line, offset, _ in found if line is None})
        lines_at: dict[int, int] = {}
        if unplaced:
            try:
                with open(self.name, "rb") as f:
                    pos, newlines = 0, 0
                    for target in unplaced:
                        while pos < target:
                            block = f.read(min(CHUNK_SIZE, target - pos))
                            if not block:
                                break
                            newlines += block.count(b"\n")
                            pos += len(block)
                        lines_at[target] = newlines + 1
            except OSError as exc:
                log.debug("%s: cannot re-read to place problems: %s", self.name, exc)
        return [(line if line is not None else lines_at.get(offset, 0), what) for line, offset, what in found]

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
        """Refuse binary input; detect the format when it is ``auto``, check
        it fits when it was given."""
        self._head_checked = True
        head = head[:SNIFF_SIZE]
        if head.startswith(_JOURNAL_FILE_MAGIC):
            raise LogFormatError(
                f"{self.name}: a binary journal file, not a text log; export it with: "
                f"journalctl --file {self.name} -o json | prpt parse -"
            )
        if _looks_binary(head):
            raise LogFormatError(f"{self.name}: binary data, not a text log")
        # The head's whole lines (the last may be cut): short-monotonic
        # journal output is told from dmesg by votes over many lines.
        sample = _without(head, _nul_spans(head)).decode("utf-8", "replace").splitlines()
        if len(head) == SNIFF_SIZE and len(sample) > 1:
            sample.pop()
        content = [l for l in sample[:40] if l.strip() and not l.startswith("-- ")]
        if not content:
            # Nothing but blank lines or journalctl's "-- No entries --": any
            # line-by-line format reads that (as nothing).
            self.format = self.format or FORMATS["syslog"]
            return
        if self.format is None:
            name = detect_format(sample)
            if name is None:
                raise LogFormatError(
                    f"{self.name}: cannot tell the log format from its first lines "
                    f"(line 1: {content[0][:60]!r}); pass --format. {format_list()}"
                )
            self.format = FORMATS[name]
            log.debug("%s: detected format %s", self.name, name)
        elif self.format.name != "dmesg" and not any(self.format.looks_like(l) for l in content):
            # (dmesg without stamps is any text at all)
            guess = detect_format(sample)
            hint = f" (it looks like {guess}: --format {guess} or auto)" if guess else ""
            raise LogFormatError(
                f"{self.name}: no {self.format.name} record in the first {len(content)} line(s){hint}; "
                f"line 1: {content[0][:60]!r}. {format_list()}"
            )

    # -- lines --------------------------------------------------------------
    def _parse_lines(self, chunk: str, first_line: int | None) -> Iterator[LogRecord]:
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
                where = None if first_line is None else first_line + start
                self.stats.add_malformed(i - start, where)
                log.debug("%s:%s: not a %s line: %r", self.name, where or "?", fmt.name, line[:80])
                continue
            self.stats.records += 1
            yield record

    def _candidate_regex(self, chunk: bytes, ruleset: RuleSet) -> re.Pattern | None:
        lead = self._lead(chunk)
        if lead is None:
            return None
        cache = self._regex_cache
        if cache is None or cache[0] is not ruleset or cache[1] != lead:
            prefixes = kernel_prefixes(ruleset)
            regex = None if prefixes is None else candidate_regex(lead, prefixes)
            # A /dev/kmsg record of several lines shows each newline as
            # "\x0a": a second regex finds the later lines' prefixes (run
            # only on chunks that hold one; an alternation in the first
            # would cost 5x on every line).
            escaped = candidate_regex(r"\\x0a", prefixes) if regex is not None and lead == ";" else None
            cache = self._regex_cache = (ruleset, lead, regex, escaped)
        return cache[2]

    def _lead(self, chunk: bytes) -> str | None:
        """What precedes the message text in this chunk's lines, when it is
        uniform enough to search for (else None: parse every line)."""
        name = self.format.name
        head = chunk[:200].decode("utf-8", "replace").lstrip("\n")
        if name == "kmsg":
            if head.startswith("<"):
                return r"\] " if head[1:8].find(">[") >= 0 else ">"
            return ";"
        if name == "dmesg":
            if head.startswith("["):
                return r"\] "
            if iso_stamped(head):
                return r"[+-]\d\d:?\d\d "  # the end of --time-format iso's stamp
            return "\n"
        return None

    def _plain_kmsg(self, regex: re.Pattern) -> bool:
        """Are the lines ``regex`` finds /dev/kmsg records, their text after ";"?"""
        return self.format.name == "kmsg" and regex.pattern.startswith(b";")

    def _hits(self, chunk: bytes, regex: re.Pattern) -> Iterator[re.Match]:
        """Where ``regex`` finds a rule prefix in ``chunk``, in order (and the
        "\\x0a"-continued lines of kmsg records, where the chunk has any)."""
        hits = regex.finditer(chunk)
        escaped = self._regex_cache[3] if self._regex_cache else None
        if escaped is not None and b"\\x0a" in chunk:
            hits = sorted(itertools.chain(hits, escaped.finditer(chunk)), key=_start)
        return hits

    def _parse_candidates(self, chunk: bytes, regex: re.Pattern) -> Iterator[LogRecord | tuple]:
        """The records of the lines ``regex`` finds in ``chunk``; the usual
        /dev/kmsg record as a tuple (text, prio, usec, seq), for the caller
        to make its LogRecord if it needs one."""
        if regex.pattern.startswith(b"\n"):
            chunk = b"\n" + chunk  # the first line has no newline before it
        find, rfind, startswith = chunk.find, chunk.rfind, chunk.startswith
        # The usual /dev/kmsg record ("prio,seq,usec,-;text", no escapes, no
        # dictionary) is read right here, as parse_kmsg reads it: a large
        # saved log spends much of its time on this line.
        plain_kmsg = self._plain_kmsg(regex)
        done = -1
        for m in self._hits(chunk, regex):
            pos = m.start()
            if pos < done:
                continue  # a second hit inside a line already handled
            start = pos + 1 if chunk[pos] == 10 else rfind(b"\n", 0, pos) + 1
            end = find(b"\n", pos + 1)
            if end < 0:
                end = len(chunk)
            if plain_kmsg and chunk[pos] == 59 and not startswith(b" ", end + 1) and find(b"\\", pos, end) < 0:
                head = chunk[start:pos].split(b",")
                if len(head) == 4 and head[3] == b"-" and head[0].isdigit() and head[1].isdigit() \
                        and head[2].isdigit():
                    done = end
                    yield chunk[pos + 1 : end].decode("utf-8", "replace"), int(head[0]), int(head[2]), int(head[1])
                    continue
            record, done = self._record_at(chunk, start, end)
            if record is not None:
                yield record

    def _kmsg_json_lines(self, chunk: bytes, regex: re.Pattern, ruleset: RuleSet, out) -> Iterator[str]:
        """``json_lines`` of a kmsg chunk: ``_parse_candidates``, with the
        usual record's text matched (``ruleset.first``) and written
        (``out.kernel``) in place, no record or match made."""
        find, rfind, startswith = chunk.find, chunk.rfind, chunk.startswith
        first, kernel, stats = ruleset.first, out.kernel, self.stats
        done = -1
        for m in self._hits(chunk, regex):
            pos = m.start()
            if pos < done:
                continue  # a second hit inside a line already handled
            start = rfind(b"\n", 0, pos) + 1
            end = find(b"\n", pos + 1)
            if end < 0:
                end = len(chunk)
            if chunk[pos] == 59 and not startswith(b" ", end + 1) and find(b"\\", pos, end) < 0:
                head = chunk[start:pos].split(b",")
                if len(head) == 4 and head[3] == b"-" and head[0].isdigit() and head[1].isdigit() \
                        and head[2].isdigit():
                    done = end
                    prio = int(head[0])
                    if prio >> 3 != KERNEL_FACILITY:
                        continue  # user space wrote it: never a kernel event
                    text = chunk[pos + 1 : end].decode("utf-8", "replace")
                    found = first(text)
                    if found is not None:
                        stats.matched += 1
                        yield kernel(text, int(head[2]), prio & 7, int(head[1]), *found)
                    continue
            record, done = self._record_at(chunk, start, end)
            if record is not None:
                for line, match in self._matched(record, ruleset):
                    yield out.pair(line, match)

    def _record_at(self, chunk: bytes, start: int, end: int) -> tuple[LogRecord | None, int]:
        """(the record of the line at ``start``..``end`` with its
        continuation lines, or None; where it ends)."""
        if self.format.multiline:
            while chunk.startswith(b" ", end + 1):
                nxt = chunk.find(b"\n", end + 1)
                end = nxt if nxt >= 0 else len(chunk)
        if chunk.startswith(b" ", start):
            return None, end  # inside a continuation line of a record not found
        return self.format.parse(chunk[start:end].decode("utf-8", "replace")), end

    def _count_malformed(self, chunk: bytes, first_line: int) -> None:
        name = self.format.name
        if name != "kmsg":
            return  # any line is a dmesg message
        head = chunk[:200].lstrip(b"\n")
        bad = _DMESG_RAW_BAD_LINE if head.startswith(b"<") else _KMSG_BAD_LINE
        text = b"\n" + chunk
        count = 0
        first_pos = None
        for m in bad.finditer(text):
            count += 1
            if first_pos is None:
                first_pos = m.start()
        if count:
            self.stats.add_malformed(count, first_line + text.count(b"\n", 0, first_pos))


def _kmsg_record(text: str, prio: int, usec: int, seq: int) -> LogRecord:
    """The record of a usual kmsg line read in place (``_parse_candidates``)."""
    return LogRecord(text, FILE_SOURCE, prio >> 3 == KERNEL_FACILITY, usec, None, seq, prio & 7, prio >> 3)


def _start(m: re.Match) -> int:
    return m.start()


class _Places:
    """Where positions in a chunk are: line numbers counted on from the
    chunk's first line, or byte offsets in the file when lines are not counted."""

    def __init__(self, chunk: bytes, first_line: int | None, offset: int):
        self.chunk, self.line, self.offset, self.counted = chunk, first_line, offset, 0

    def at(self, pos: int) -> tuple[int | None, int]:
        if self.line is not None:
            self.line += self.chunk.count(b"\n", self.counted, pos)
            self.counted = pos
        return self.line, self.offset + pos


def _nul_spans(data: bytes) -> list[tuple[int, int, int]]:
    """(line start or end of the previous span, first NUL, end) of every run
    of NUL bytes: the run and the cut-off text before it on its line."""
    spans = []
    if b"\0" not in data:
        return spans
    last = 0
    for m in _NULS.finditer(data):
        start = max(data.rfind(b"\n", 0, m.start()) + 1, last)
        spans.append((start, m.start(), m.end()))
        last = m.end()
    return spans


def _without(data: bytes, spans) -> bytes:
    if not spans:
        return data
    parts, last = [], 0
    for start, _, end in spans:
        parts.append(data[last:start])
        last = end
    parts.append(data[last:])
    return b"".join(parts)


def _looks_binary(head: bytes) -> bool:
    """Control bytes other than whitespace, or NULs scattered rather than in
    the few long runs a crash leaves, in more than 1 % of the head."""
    if not head:
        return False
    runs = head.count(b"\0") and len(_NULS.findall(head))
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return runs > 16 or (controls > 8 and controls * 100 > len(head))


_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\x1b\0") + b"\x7f"


def read_records(path: str | Path, fmt: str = "auto") -> list[LogRecord]:
    """All records of a saved log (for tests and small files)."""
    with LogFile.open(path, fmt) as logfile:
        return list(logfile.records())


def from_text(text: str, fmt: str = "auto", name: str = "<text>") -> LogFile:
    """A LogFile over a string (tests, pasted lines)."""
    return LogFile(io.BytesIO(text.encode("utf-8")), name, fmt)
