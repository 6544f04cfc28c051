"""``prpt parse``: storage events from saved kernel logs, no daemon needed."""

from __future__ import annotations

import logging
import sys

import click

from ..errors import PeripetyError
from ..sources.logfile import LogFile, LogFileStats
from ..sources.logformats import FORMAT_NAMES
from .options import config_option, output_options, verbose_option
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
@verbose_option
def command(files, fmt, output_format, config_path, resolve, stats):
    if not files:
        if sys.stdin.isatty():
            raise click.UsageError("no FILE given (use - to read standard input)")
        files = ("-",)
    ruleset = _load_rules(config_path)
    from ..classify import events_from_matches

    # A pipe may be live (journalctl -f | prpt parse -): show each event at once.
    writer = EventWriter(sys.stdout, output_format, flush_each="-" in files)
    resolver = _DeviceCache() if resolve else None
    try:
        for name in files:
            with _open(name, fmt) as logfile:
                try:
                    for event in events_from_matches(logfile.matches(ruleset, count_malformed=stats)):
                        if resolver is not None:
                            resolver.apply(event)
                        writer.write(event)
                except PeripetyError as exc:
                    raise click.ClickException(str(exc)) from None
                _report(logfile, stats)
        writer.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
        sys.exit(1)


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
    except OSError as exc:
        raise click.ClickException(f"{config_path}: cannot read: {exc.strerror or exc}") from None


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

    def apply(self, event) -> None:
        if event.kdev not in self._known:
            try:
                self._known[event.kdev] = self._resolve(event.kdev)
            except PeripetyError as exc:
                log.debug("%s: left unresolved: %s", event.kdev, exc)
                self._known[event.kdev] = None
        info = self._known[event.kdev]
        if info is not None:
            event.cur_blk_info = info
            event.dev_num = info.dev_num
