"""Large saved logs parsed on every core, output kept in input order.

Records are independent of each other, so a large regular file is cut at
record boundaries into one part per process, of about equal size. The
calling process renders the first part itself, writing as it goes, while
forked worker processes each render one later part into a file in memory
(memfd) as they go, and say through a pipe when they are done; the caller
copies each worker's output in file order once the parts before it are out.
One part per process, rather than many small parts through a pool, keeps
the cost of the split to a fork, a pipe and one copy of the output.

Workers are forked as soon as the parts are known, before anything the
render needs is made: ``render`` loads the rules on its first call, in
each process at once, rather than once in the caller before the fork while
the other cores wait (``prpt parse``: rules loaded before the fork are
inherited, not loaded again).

Only regular files of at least ``PARALLEL_MIN_SIZE`` bytes go this way:
standard input may be a live pipe whose events must appear at once, and on a
small file starting workers costs more than it saves.
"""

from __future__ import annotations

import errno
import gc
import itertools
import os
import pickle
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import LogFormatError, PeripetyError
from .logfile import SNIFF_SIZE, LogFile, LogFileStats

PARALLEL_MIN_SIZE = 16 << 20
MAX_WORKERS = 8
_BOUNDARY_PROBE = 64 << 10
"""Bytes read after a cut point to find the next record start."""
_BATCH = 4096
"""Events of the calling process's own part written per write call."""

Render = Callable[[LogFile], Iterable[str]]
"""Turns a part of the log into output text (one string per event)."""


@dataclass
class Part:
    """Output of (a piece of) one part of the file: ``data``, or, for a
    worker's part, what it wrote to the memory file ``fd`` (``chunks()``
    reads it; the caller closes it). ``stats`` is what was seen reading the
    part, given with its last piece (else None)."""

    data: bytes
    stats: LogFileStats | None
    fd: int | None = None

    def size(self) -> int:
        return len(self.data) if self.fd is None else os.fstat(self.fd).st_size

    def send_to(self, out) -> bool:
        """Copy a worker's output to the binary stream ``out`` in the kernel
        (sendfile), after what ``out`` holds; False where that cannot be
        (no memory file, ``out`` has no descriptor or takes no sendfile):
        then use ``chunks()``."""
        if self.fd is None:
            return False
        try:
            target = out.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last
            return False
        out.flush()
        offset, size = 0, self.size()
        while offset < size:
            try:
                sent = os.sendfile(target, self.fd, offset, size - offset)
            except OSError as exc:
                if offset == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    return False
                raise
            if sent == 0:
                raise OSError(errno.EIO, f"sendfile wrote nothing at {offset} of {size} bytes")
            offset += sent
        return True

    def chunks(self, size: int = 1 << 20) -> Iterator[bytes]:
        if self.fd is None:
            if self.data:
                yield self.data
            return
        os.lseek(self.fd, 0, os.SEEK_SET)
        while block := os.read(self.fd, size):
            yield block


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
    """The output of ``render`` over each part of ``logfile``'s file,
    encoded with ``encoding``/``errors`` (those of the output stream), in
    file order: first the calling process's own part in pieces, then each
    worker's. The format is detected (and the head checked) here first."""
    head = logfile.stream.read(SNIFF_SIZE)
    logfile.check_head(head)
    fmt = logfile.format
    size = os.fstat(logfile.stream.fileno()).st_size
    ranges = _ranges(logfile.stream, size, fmt.multiline, workers)
    job = (logfile.name, fmt.name, render, encoding, errors)
    children: list[tuple[int, int, int]] = []  # (pid or 0, read end of its pipe, its memory file)
    running: set[int] = set()
    # What exists now is shared with the workers: frozen, their collector
    # never writes to it (no copy of those pages, no pass over them).
    gc.freeze()
    try:
        for span in ranges[1:]:
            receive, send = os.pipe2(os.O_CLOEXEC)
            children.append((0, receive, os.memfd_create("prpt-parse-part", os.MFD_CLOEXEC)))
            output = children[-1][2]
            # (fork: the workers inherit the rules, if loaded, and ``render``: closures cannot be pickled)
            try:
                pid = os.fork()
            except OSError:
                os.close(send)
                raise
            if pid == 0:  # the worker: never returns into the caller's code
                code = 1
                try:
                    os.close(receive)
                    code = _worker(job, span, send, output)
                except BaseException:  # noqa: BLE001 - a bug: say where, then end this process only
                    traceback.print_exc()
                finally:
                    os._exit(code)
            os.close(send)
            children[-1] = (pid, receive, output)
            running.add(pid)
        gc.unfreeze()
        yield from _own_part(job, ranges[0])
        for pid, receive, output in children:
            yield _received(receive, output, logfile.name)
            os.waitpid(pid, 0)
            running.discard(pid)
    finally:
        gc.unfreeze()  # (a fork that failed)
        for pid, receive, output in children:
            os.close(receive)
            os.close(output)
            if pid in running:  # the output went away (broken pipe), or an error: stop the rest
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)


def _ranges(stream, size: int, multiline: bool, count: int) -> list[tuple[int, int]]:
    """``count`` (start, end) byte ranges of about equal size (fewer when
    records are long), each cut just before a record starts (for
    multi-line formats: a line not starting with a space)."""
    cuts = [0]
    for n in range(1, count):
        target = max(size * n // count, cuts[-1])
        cut = _record_start_after(stream, target, multiline)
        if cut is not None and cuts[-1] < cut < size:
            cuts.append(cut)
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


def _open_part(name: str, fmt_name: str, span: tuple[int, int]) -> LogFile:
    start, end = span
    try:
        stream = open(name, "rb")
        stream.seek(start)
    except OSError as exc:
        raise LogFormatError(f"{name}: cannot read: {exc.strerror}") from None
    return LogFile.part(stream, name, fmt_name, start, end)


def _own_part(job, span: tuple[int, int]) -> Iterator[Part]:
    """The first part, rendered here and handed on a batch at a time."""
    name, fmt_name, render, encoding, errors = job
    with _open_part(name, fmt_name, span) as part:
        lines = iter(render(part))
        while True:
            batch = []
            for text in lines:
                batch.append(text)
                if len(batch) == _BATCH:
                    break
            if not batch:
                break
            yield Part("".join(batch).encode(encoding, errors), None)
        yield Part(b"", part.stats)


def _worker(job, span: tuple[int, int], send: int, output: int) -> int:
    """A worker process: render one part into the memory file ``output``
    a batch at a time, then write (error, stats) to the pipe ``send``;
    the exit status."""
    name, fmt_name, render, encoding, errors = job
    try:
        with _open_part(name, fmt_name, span) as part, open(output, "wb", closefd=False) as out:
            lines = iter(render(part))
            while batch := list(itertools.islice(lines, _BATCH)):
                out.write("".join(batch).encode(encoding, errors))
        result = (None, part.stats)
    except PeripetyError as exc:
        result = (str(exc), None)
    except KeyboardInterrupt:
        return 130
    try:
        with open(send, "wb") as pipe:
            pipe.write(pickle.dumps(result))
    except BrokenPipeError:
        pass  # the caller stopped reading
    return 0


def _received(receive: int, output: int, name: str) -> Part:
    with open(receive, "rb", closefd=False) as pipe:
        data = pipe.read()
    if not data:
        raise LogFormatError(f"{name}: a worker process ended without its part of the output")
    error, stats = pickle.loads(data)
    if error is not None:
        raise LogFormatError(error)
    return Part(b"", stats, output)


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
