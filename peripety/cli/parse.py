"""``prpt parse``: storage events from saved kernel logs, no daemon needed."""

from __future__ import annotations

import atexit
import functools
import gc
import io
import itertools
import logging
import sys
from dataclasses import replace

import click

from ..errors import PeripetyError
from ..sources.logfile import LogFile, LogFileStats
from ..sources.logformats import FORMAT_NAMES, format_list
from ..sources.parallel import default_workers, merge_stats, render_parts, worth_splitting
from .filters import time_value
from .options import (OUTPUT_JSON, OUTPUT_JSONL, config_option, load_rules, output_options, utc_option,
                      verbose_option)
from .output import EventWriter, quiet_broken_pipe

log = logging.getLogger("peripety.cli.parse")

HELP = """Find storage events in saved logs.

Reads FILE... (or standard input for - or no FILE) and prints one event per
storage line a rule matches, with the line itself as raw_msg. Devices are
not looked up unless --resolve is given.

\b
Formats (--format, default auto: detected from the first lines; gzip, xz
and bzip2 files are decompressed on the fly):
  dmesg         dmesg output, with or without stamps (-T, --time-format iso):
                  [  309.330781] I/O error, dev loop0, sector 8 ...
                  [Tue Nov 25 03:44:01 2025] EXT4-fs (loop1): mounted ...
                  2025-11-25T03:44:01,123456+00:00 EXT4-fs (loop1): ...
  kmsg          dmesg -r, or records copied from /dev/kmsg (a facility other
                than kernel, as /dev/kmsg records show for lines user space
                wrote, is never a kernel event; dmesg -r prints none):
                  <3>[  309.330781] I/O error, dev loop0, sector 8 ...
                  3,1234,309330781,-;I/O error, dev loop0, sector 8 ...
  syslog        /var/log/messages, kern.log, journalctl -o short, short-precise,
                short-iso[-precise], short-full, short-monotonic; the host in
                the line becomes the event's hostname:
                  Nov 25 03:44:01 host kernel: I/O error, dev loop0, ...
                  2025-11-25T03:44:01.123456+00:00 host multipathd[811]: ...
                  [  309.330781] host kernel: I/O error, dev loop0, ...
  journal-json  journalctl -o json (only _TRANSPORT=kernel is the kernel;
                _HOSTNAME, the realtime and monotonic stamps kept: the
                sender's _SOURCE_* ones where present, as journalctl shows)

\b
Times: a line's wall-clock time becomes the event's timestamp. A kernel
stamp ([  309.330781], kmsg usec, journald's monotonic time) is kept in the
event's kernel_usec field (microseconds since that boot) and shown in text
as dmesg shows it. A line with only a kernel stamp (dmesg, short-monotonic)
gets the time of parsing as timestamp (text shows its kernel stamp alone),
unless --boot-time says when the logged system booted. Events are written
in the order of the input, which is the order of the kernel's clock within
one boot. Several FILEs are read one after the other, oldest first by their
first line's wall-clock time (rotated logs given as kern.log*), or as given
when one has no such time. Text shows local time (UTC with --utc), with the
date when not today; JSON has RFC 3339 with the offset.

\b
Damaged input: a run of NUL bytes (a log cut short by a crash) is skipped
with the cut-off text before it on its line, a line longer than any log
line (64 KiB; 1 MiB for journal-json) is skipped, a compressed file that
ends early is read up to that point; each place is named on stderr
(FILE:LINE), the rest is read. Input with lines but no record of its
format is an error naming the formats known.

\b
Examples:
  prpt parse /var/log/kern.log
  dmesg -r | prpt parse --jsonl -
  journalctl -k -b -1 -o json | prpt parse -J --stats -
  journalctl -k -o short-monotonic | prpt parse -
  prpt parse /var/log/kern.log.2.gz
  prpt parse --boot-time "$(uptime -s)" dmesg.txt

Exit status: 0 when the input was read (with or without events), 1 when a
file cannot be read or holds no record of its format, 2 on a usage error.
"""


@click.command("parse", help=HELP, no_args_is_help=False)
@click.argument("files", nargs=-1, metavar="[FILE...|-]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("auto",) + FORMAT_NAMES),
    default="auto",
    show_default=True,
    help="Format of the input (see above).",
)
@output_options
@config_option
@click.option("--resolve", is_flag=True, help="Describe each event's device as it is now (udev, sysfs); "
              "events a log names another host for are left unresolved.")
@click.option("--stats", is_flag=True, help="Print lines read, matched and skipped (malformed) to stderr.")
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None,
    help="Processes for a large file (default: one per CPU for files of 16 MB or more; "
    "standard input, compressed files and --resolve always use one). Output stays in file order.",
)
@click.option(
    "--boot-time", callback=time_value, metavar="TIME",
    help="When the logged system booted (e.g. \"$(uptime -s)\" for this one): lines with only a "
    "kernel stamp get it plus their stamp as timestamp. Same forms as prpt query --since.",
)
@utc_option
@verbose_option
def command(files, fmt, output_format, config_path, resolve, stats, jobs, boot_time):
    _quick_exit()
    if not files:
        if sys.stdin.isatty():
            raise click.UsageError("no FILE given (use - to read standard input)")
        files = ("-",)
    workers = _workers(jobs, resolve)
    rules = _Rules(config_path)
    if len(files) != 1 or not worth_splitting(files[0], workers):
        rules()  # (a file split across processes: each loads the rules at once, see parallel)
    # A pipe may be live (journalctl -f | prpt parse -): show each event at once.
    live = "-" in files
    writer = EventWriter(sys.stdout, output_format, flush_each=live)
    resolver = _DeviceCache() if resolve else None
    unread = []
    try:
        for name in _oldest_first(files, fmt):
            with _open(name, fmt) as logfile:
                try:
                    if logfile.compressed is None and worth_splitting(name, workers):
                        _write_parts(logfile, rules, stats, writer, workers, boot_time)
                    elif output_format == OUTPUT_JSONL and resolver is None:
                        _write_json_lines(logfile, rules(), stats, writer, boot_time)
                    else:
                        _write_events(logfile, rules(), stats, writer, resolver, boot_time)
                except PeripetyError as exc:
                    raise click.ClickException(str(exc)) from None
                if not _report(logfile, stats):
                    unread.append(logfile.name)
        writer.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
        sys.exit(1)
    if unread:
        raise click.ClickException(f"no records read from {', '.join(unread)}: see above")


def _quick_exit() -> None:
    """At exit, the cycle collector's last passes over every object (the
    rules, their regexes, every module: 10 ms, 2 % of parsing a large log)
    are skipped: ``prpt parse`` leaves no cycle whose finalizer matters
    (files are closed by ``with``, stdout flushed before)."""
    global _QUICK_EXIT
    if not _QUICK_EXIT:
        _QUICK_EXIT = True
        atexit.register(gc.freeze)


_QUICK_EXIT = False


class _Rules:
    """The rule set, loaded on first use and kept (``--config``'s rules and
    the built-in ones)."""

    def __init__(self, config_path):
        self._config_path = config_path
        self._ruleset = None

    def __call__(self):
        if self._ruleset is None:
            self._ruleset = load_rules(self._config_path)
        return self._ruleset


def _oldest_first(files, fmt: str):
    """Several files in the order of their first wall-clock time (rotated
    logs given as kern.log*: kern.log.2.gz, kern.log.1, kern.log), when each
    has one; else, or with standard input among them, as given."""
    if len(files) < 2 or "-" in files:
        return files
    firsts = []
    for name in files:
        try:
            with LogFile.open(name, fmt) as logfile:
                head = itertools.islice(logfile.records(), _FIRST_TIME_WITHIN)
                first = next((r.wallclock for r in head if r.wallclock is not None), None)
        except PeripetyError:
            return files  # the real pass says what is wrong
        if first is None:
            return files
        firsts.append(first)
    order = sorted(range(len(files)), key=firsts.__getitem__)
    if order != list(range(len(files))):
        log.info("reading oldest first: %s", ", ".join(files[i] for i in order))
    return tuple(files[i] for i in order)


_FIRST_TIME_WITHIN = 1000
"""Records read at most to find a file's first wall-clock time."""


def _workers(jobs: int | None, resolve: bool) -> int:
    # --resolve caches one lookup per device for the whole run; debug logs
    # name line numbers of the whole file: both want one process.
    if resolve or logging.getLogger("peripety").isEnabledFor(logging.DEBUG):
        return 1
    return jobs if jobs is not None else default_workers()


def _write_events(logfile: LogFile, ruleset, stats: bool, writer: EventWriter, resolver, boot_time) -> None:
    from ..classify import events_from_matches

    for event in events_from_matches(logfile.matches(ruleset, count_malformed=stats), boot_time=boot_time):
        writer.write(event if resolver is None else resolver.resolved(event))


def _write_json_lines(logfile: LogFile, ruleset, stats: bool, writer: EventWriter, boot_time) -> None:
    """--jsonl without --resolve: each event is only ever written, so its JSON
    is built straight from the match (the 1M lines/s path)."""
    out = writer.stream
    lines = logfile.json_lines(ruleset, count_malformed=stats, boot_time=boot_time)
    if writer.flush_each:
        for line in lines:
            out.write(line)
            out.flush()
            writer.written += 1
        return
    # A batch: one write call per few thousand events rather than one each.
    while batch := list(itertools.islice(lines, 4096)):
        out.write("".join(batch))
        writer.written += len(batch)


def _write_parts(logfile: LogFile, rules: _Rules, stats: bool, writer: EventWriter, workers: int,
                 boot_time) -> None:
    """A large file: parts rendered by worker processes, written in order.
    Each process loads the rules itself, when they are not loaded yet."""
    out = writer.stream
    out.flush()
    binary = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None) or "utf-8"
    errors = getattr(out, "errors", None) or "strict"
    render = functools.partial(_render_part, rules, writer.output_format, stats, boot_time)
    first = writer.written == 0
    for part in render_parts(logfile, render, workers, encoding, errors):
        if binary is not None and not (writer.output_format == OUTPUT_JSON and first) and part.send_to(binary):
            first = first and not part.size()
            part = replace(part, fd=None)  # (its output is out)
        for data in part.chunks():
            if writer.output_format == OUTPUT_JSON and first:
                data = data[1:]  # every part's events came with the blank line between events
            first = False
            if binary is not None:
                binary.write(data)
            else:
                out.write(data.decode(encoding, errors))
        if part.stats is not None:
            writer.written += part.stats.matched
            merge_stats(logfile.stats, part.stats)


def _render_part(rules: _Rules, output_format: str, stats: bool, boot_time, logfile: LogFile):
    """Output text of one part of a file (runs in a worker process)."""
    try:
        ruleset = rules()
    except click.ClickException as exc:  # a bad --config: a worker reports it as the caller does
        raise PeripetyError(exc.format_message()) from None
    if output_format == OUTPUT_JSONL:
        return logfile.json_lines(ruleset, count_malformed=stats, boot_time=boot_time)
    from ..classify import events_from_matches

    pairs = logfile.matches(ruleset, count_malformed=stats)
    buffer = io.StringIO()
    writer = EventWriter(buffer, output_format, flush_each=False)
    writer.written = 1  # not the first event of the output: pretty JSON gets its blank line
    for event in events_from_matches(pairs, boot_time=boot_time):
        writer.write(event)
    return [buffer.getvalue()]


def _open(name: str, fmt: str) -> LogFile:
    try:
        return LogFile.open(name, fmt)
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None



def _report(logfile: LogFile, stats: bool) -> bool:
    """Say on stderr what was skipped and why; False when the input held no
    record at all although it had lines (then the format is wrong)."""
    s: LogFileStats = logfile.stats
    fmt = logfile.format.name if logfile.format else "?"
    for line, what in logfile.problem_lines():
        log.warning("%s:%d: %s", logfile.name, line, what)
    if s.problem_count > len(s.problems):
        log.warning("%s: %d more damaged place(s) skipped", logfile.name, s.problem_count - len(s.problems))
    if s.malformed:
        first = f" (first: line {s.first_malformed_line})" if s.first_malformed_line else ""
        log.warning("%s: %d line(s) not in %s format skipped%s", logfile.name, s.malformed, fmt, first)
    ok = True
    if s.records_known and s.records == 0:
        if s.malformed:
            log.error("%s: no %s record in %d line(s). %s", logfile.name, fmt, s.lines, format_list())
            ok = False
        else:
            log.warning("%s: no log records (empty input). %s", logfile.name, format_list())
    if stats:
        click.echo(
            f"{logfile.name}: format {fmt}: {s.lines} lines read, {s.matched} matched, "
            f"{s.malformed} skipped (malformed)",
            err=True,
        )
    return ok


class _DeviceCache:
    """``--resolve``: one lookup per device name for the whole run. Only
    this host's events: sdb in another host's log is not our sdb."""

    def __init__(self):
        from ..devices import resolve
        from ..event import local_hostname

        self._resolve = resolve
        self._here = local_hostname()
        from ..devices.sysfs import logical_block_size
        from ..rules.derived import sector_from_lba

        self._logical_block_size = logical_block_size
        self._sector_from_lba = sector_from_lba
        self._known: dict[str, object] = {}
        self._block_sizes: dict[str, int | None] = {}
        self._elsewhere: set[str] = set()

    def resolved(self, event):
        """``event`` with the device its name has now, when it names one
        (events of other hosts, named by the log, are left as they are)."""
        if event.hostname != self._here:
            if event.hostname not in self._elsewhere:
                self._elsewhere.add(event.hostname)
                log.info("%s: events logged on host %s are left unresolved", event.kdev, event.hostname)
            return event
        if event.kdev not in self._known:
            try:
                self._known[event.kdev] = self._resolve(event.kdev)
            except PeripetyError as exc:
                log.debug("%s: left unresolved: %s", event.kdev, exc)
                self._known[event.kdev] = None
        info = self._known[event.kdev]
        if info is None:
            return event
        extension = event.extension
        if "lba" in extension and "sector" not in extension:
            # A printed CDB's LBA in 512-byte sectors, now the disk is known.
            extension = dict(extension)
            self._sector_from_lba(extension, self._block_size(event.kdev))
        return replace(event, cur_blk_info=info, dev_num=info.dev_num, extension=extension)

    def _block_size(self, kdev: str) -> int | None:
        if kdev not in self._block_sizes:
            self._block_sizes[kdev] = self._logical_block_size(kdev)
        return self._block_sizes[kdev]
