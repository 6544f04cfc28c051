"""Large saved logs parsed on every core, output kept in input order.

One Python process turns a large kernel log into events at about half a
million lines a second; a file of a few hundred megabytes (a fleet's kern.log)
then takes minutes. Records are independent of each other, so the file is cut
at record boundaries into parts of ``PART_SIZE`` bytes, worker processes
(forked: they inherit the loaded rules) each read and render their own part,
and the parent writes the parts' output in file order.

Only regular files of at least ``PARALLEL_MIN_SIZE`` bytes go this way:
standard input may be a live pipe whose events must appear at once, and on a
small file starting workers costs more than it saves.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import LogFormatError
from .logfile import SNIFF_SIZE, LogFile, LogFileStats

PARALLEL_MIN_SIZE = 16 << 20
PART_SIZE = 4 << 20
MAX_WORKERS = 8
_BOUNDARY_PROBE = 64 << 10
"""Bytes read after a cut point to find the next record start."""

Render = Callable[[LogFile], Iterable[str]]
"""Turns a part of the log into output text (one string per event)."""


@dataclass
class Part:
    """The output of one part of the file, with what was seen reading it."""

    data: bytes
    stats: LogFileStats


def default_workers() -> int:
    """One worker per CPU this process may run on, at most MAX_WORKERS."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def worth_splitting(name: str, workers: int) -> bool:
    """Is ``name`` a regular file large enough for ``workers`` processes?"""
    if workers < 2 or name == "-":
        return False
    try:
        st = os.stat(name)
    except OSError:
        return False  # LogFile.open reports it
    return st.st_size >= PARALLEL_MIN_SIZE and Path(name).is_file()


def render_parts(
    logfile: LogFile, render: Render, workers: int, encoding: str, errors: str
) -> Iterator[Part]:
    """Each part of ``logfile``'s file rendered by ``render`` in a worker,
    encoded with ``encoding``/``errors`` (those of the output stream), in
    file order. The format is detected (and the head checked) here first."""
    head = logfile.stream.read(SNIFF_SIZE)
    logfile.check_head(head)
    fmt = logfile.format
    size = os.fstat(logfile.stream.fileno()).st_size
    ranges = _ranges(logfile.stream, size, fmt.multiline)
    job = (logfile.name, fmt.name, render, encoding, errors)
    # fork: workers inherit the rules and render (closures cannot be pickled).
    context = multiprocessing.get_context("fork")
    with context.Pool(min(workers, len(ranges)), initializer=_init_worker, initargs=(job,)) as pool:
        yield from pool.imap(_render_part, ranges)


def _ranges(stream, size: int, multiline: bool) -> list[tuple[int, int]]:
    """(start, end) byte ranges of about PART_SIZE, each cut just before a
    record starts (for multi-line formats: a line not starting with a space)."""
    cuts = [0]
    target = PART_SIZE
    while target < size:
        cut = _record_start_after(stream, target, multiline)
        if cut is not None and cuts[-1] < cut < size:
            cuts.append(cut)
        target = max(cut or 0, target) + PART_SIZE
    cuts.append(size)
    return list(zip(cuts, cuts[1:]))


def _record_start_after(stream, offset: int, multiline: bool) -> int | None:
    """Offset of the first record start after ``offset``; None if none
    within _BOUNDARY_PROBE bytes (the part then grows past it)."""
    stream.seek(offset)
    probe = stream.read(_BOUNDARY_PROBE)
    pos = probe.find(b"\n")
    while 0 <= pos < len(probe) - 1:
        if not (multiline and probe[pos + 1] == 0x20):  # a space continues the record
            return offset + pos + 1
        pos = probe.find(b"\n", pos + 1)
    return None


_job = None


def _init_worker(job) -> None:
    global _job
    _job = job


def _render_part(span: tuple[int, int]) -> Part:
    name, fmt_name, render, encoding, errors = _job
    start, end = span
    try:
        with open(name, "rb") as f:
            f.seek(start)
            data = f.read(end - start)
    except OSError as exc:
        raise LogFormatError(f"{name}: cannot read: {exc.strerror}") from None
    part = LogFile.part(io.BytesIO(data), name, fmt_name, start)
    text = "".join(render(part))
    return Part(text.encode(encoding, errors), part.stats)


def merge_stats(total: LogFileStats, part: LogFileStats) -> None:
    """Add a later part's counts; its line numbers start at total.lines + 1."""
    if part.first_malformed_line is not None and total.first_malformed_line is None:
        total.first_malformed_line = total.lines + part.first_malformed_line
    for line, offset, what in part.problems:
        total.add_problem((None if line is None else total.lines + line, offset), what)
    total.problem_count += part.problem_count - len(part.problems)
    total.lines += part.lines
    total.matched += part.matched
    total.malformed += part.malformed
    total.records += part.records
    total.records_known = total.records_known and part.records_known
