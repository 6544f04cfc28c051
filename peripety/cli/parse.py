"""``prpt parse``: storage events from saved kernel logs, no daemon needed."""

from __future__ import annotations

import functools
import io
import itertools
import logging
import sys
from dataclasses import replace

import click

from ..errors import PeripetyError
from ..sources.logfile import LogFile, LogFileStats
from ..sources.logformats import FORMAT_NAMES
from ..sources.parallel import default_workers, merge_stats, render_parts, worth_splitting
from .options import OUTPUT_JSON, OUTPUT_JSONL, config_option, output_options, verbose_option
from .output import EventWriter, quiet_broken_pipe

log = logging.getLogger("peripety.cli.parse")

HELP = """Find storage events in saved logs.

Reads FILE... (or standard input for - or no FILE) and prints one event per
storage line a rule matches, with the line itself as raw_msg. Devices are
not looked up unless --resolve is given.

\b
Formats (--format, default auto: detected from the first lines):
  dmesg         dmesg output, with or without stamps:
                  [  309.330781] I/O error, dev loop0, sector 8 ...
                  [Tue Nov 25 03:44:01 2025] EXT4-fs (loop1): mounted ...
  kmsg          dmesg -r, or records copied from /dev/kmsg (a facility other
                than kernel, as /dev/kmsg records show for lines user space
                wrote, is never a kernel event; dmesg -r prints none):
                  <3>[  309.330781] I/O error, dev loop0, sector 8 ...
                  3,1234,309330781,-;I/O error, dev loop0, sector 8 ...
  syslog        /var/log/messages, kern.log, journalctl -o short[-precise|-iso]:
                  Nov 25 03:44:01 host kernel: I/O error, dev loop0, ...
                  2025-11-25T03:44:01.123456+00:00 host multipathd[811]: ...
  journal-json  journalctl -o json (only _TRANSPORT=kernel is the kernel)

\b
Examples:
  prpt parse /var/log/kern.log
  dmesg -r | prpt parse --jsonl -
  journalctl -k -b -1 -o json | prpt parse -J --stats -

Exit status: 0 when the input was read (with or without events), 1 when a
file cannot be read or its format not recognised, 2 on a usage error.
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
@click.option("--resolve", is_flag=True, help="Describe each event's device as it is now (udev, sysfs).")
@click.option("--stats", is_flag=True, help="Print lines read, matched and skipped (malformed) to stderr.")
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None,
    help="Processes for a large file (default: one per CPU for files of 16 MB or more; "
    "standard input and --resolve always use one). Output stays in file order.",
)
@verbose_option
def command(files, fmt, output_format, config_path, resolve, stats, jobs):
    if not files:
        if sys.stdin.isatty():
            raise click.UsageError("no FILE given (use - to read standard input)")
        files = ("-",)
    ruleset = _load_rules(config_path)
    # A pipe may be live (journalctl -f | prpt parse -): show each event at once.
    live = "-" in files
    writer = EventWriter(sys.stdout, output_format, flush_each=live)
    resolver = _DeviceCache() if resolve else None
    workers = _workers(jobs, resolve)
    try:
        for name in files:
            with _open(name, fmt) as logfile:
                try:
                    if worth_splitting(name, workers):
                        _write_parts(logfile, ruleset, stats, writer, workers)
                    elif output_format == OUTPUT_JSONL and resolver is None:
                        _write_json_lines(logfile, ruleset, stats, writer)
                    else:
                        _write_events(logfile, ruleset, stats, writer, resolver)
                except PeripetyError as exc:
                    raise click.ClickException(str(exc)) from None
                _report(logfile, stats)
        writer.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
        sys.exit(1)


def _workers(jobs: int | None, resolve: bool) -> int:
    # --resolve caches one lookup per device for the whole run; debug logs
    # name line numbers of the whole file: both want one process.
    if resolve or logging.getLogger("peripety").isEnabledFor(logging.DEBUG):
        return 1
    return jobs if jobs is not None else default_workers()


def _write_events(logfile: LogFile, ruleset, stats: bool, writer: EventWriter, resolver) -> None:
    from ..classify import events_from_matches

    for event in events_from_matches(logfile.matches(ruleset, count_malformed=stats)):
        writer.write(event if resolver is None else resolver.resolved(event))


def _write_json_lines(logfile: LogFile, ruleset, stats: bool, writer: EventWriter) -> None:
    """--jsonl without --resolve: each event is only ever written, so its JSON
    is built straight from the match (the 1M lines/s path)."""
    from ..classify import json_lines_from_matches

    out = writer.stream
    lines = json_lines_from_matches(logfile.matches(ruleset, count_malformed=stats))
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


def _write_parts(logfile: LogFile, ruleset, stats: bool, writer: EventWriter, workers: int) -> None:
    """A large file: parts rendered by worker processes, written in order."""
    out = writer.stream
    out.flush()
    binary = getattr(out, "buffer", None)
    encoding = getattr(out, "encoding", None) or "utf-8"
    errors = getattr(out, "errors", None) or "strict"
    render = functools.partial(_render_part, ruleset, writer.output_format, stats)
    for part in render_parts(logfile, render, workers, encoding, errors):
        data = part.data
        if writer.output_format == OUTPUT_JSON and writer.written == 0:
            data = data[1:]  # every part's events came with the blank line between events
        if binary is not None:
            binary.write(data)
        else:
            out.write(data.decode(encoding, errors))
        writer.written += part.stats.matched
        merge_stats(logfile.stats, part.stats)


def _render_part(ruleset, output_format: str, stats: bool, logfile: LogFile):
    """Output text of one part of a file (runs in a worker process)."""
    from ..classify import events_from_matches, json_lines_from_matches

    pairs = logfile.matches(ruleset, count_malformed=stats)
    if output_format == OUTPUT_JSONL:
        return json_lines_from_matches(pairs)
    buffer = io.StringIO()
    writer = EventWriter(buffer, output_format, flush_each=False)
    writer.written = 1  # not the first event of the output: pretty JSON gets its blank line
    for event in events_from_matches(pairs):
        writer.write(event)
    return [buffer.getvalue()]


def _open(name: str, fmt: str) -> LogFile:
    try:
        return LogFile.open(name, fmt)
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None


def _load_rules(config_path):
    if config_path is None:
        from ..rules import RuleSet

        return RuleSet.builtin()
    from ..config import load_config

    try:
        return load_config(config_path).rules
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None


def _report(logfile: LogFile, stats: bool) -> None:
    s: LogFileStats = logfile.stats
    fmt = logfile.format.name if logfile.format else "?"
    if s.malformed:
        log.warning(
            "%s: %d line(s) not in %s format skipped (first: line %s)",
            logfile.name, s.malformed, fmt, s.first_malformed_line,
        )
    if stats:
        click.echo(
            f"{logfile.name}: format {fmt}: {s.lines} lines read, {s.matched} matched, "
            f"{s.malformed} skipped (malformed)",
            err=True,
        )


class _DeviceCache:
    """``--resolve``: one lookup per device name for the whole run."""

    def __init__(self):
        from ..devices import resolve

        self._resolve = resolve
        self._known: dict[str, object] = {}

    def resolved(self, event):
        """``event`` with the device its name has now, when it names one."""
        if event.kdev not in self._known:
            try:
                self._known[event.kdev] = self._resolve(event.kdev)
            except PeripetyError as exc:
                log.debug("%s: left unresolved: %s", event.kdev, exc)
                self._known[event.kdev] = None
        info = self._known[event.kdev]
        return event if info is None else replace(event, cur_blk_info=info, dev_num=info.dev_num)
