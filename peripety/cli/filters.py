"""Event filter options shared by ``prpt query``, ``prpt monitor`` and
``prpt top``: defined once here, turned into an ``EventFilter`` by
``build_filter``."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import glob
import logging
import os
from typing import Iterable

import click

from ..errors import PeripetyError
from ..event import Severity, canonical_sub_system

log = logging.getLogger("peripety.cli.filters")


def _severity(ctx, param, value):
    if value is None:
        return None
    try:
        return Severity.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _sub_systems(ctx, param, values):
    try:
        return tuple(canonical_sub_system(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


class UnresolvedType(str):
    """An --event-type value neither built in nor from this host's
    /etc/peripetyd.conf: it may still be in the store (a user rule's type
    of another host's config, events read with --directory), which
    ``resolve_event_types`` asks once the store is open."""


def _event_types(ctx, param, values):
    if not values:
        return ()
    from ..event_types import EVENT_TYPES

    builtin = {info.name for info in EVENT_TYPES}
    if all(value in builtin for value in values):
        # A built-in type, spelled exactly: what the site's rules add cannot
        # change the answer, and reading them compiles every rule (0.1 s).
        return tuple(values)
    try:
        return parse_event_types(values, known_event_types(), unresolved=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def parse_event_types(values: Iterable[str], known: set[str], *, unresolved: bool = False) -> tuple[str, ...]:
    """Each value as the event type it names (ValueError names an unknown
    one, with the close matches; with ``unresolved`` an unknown one is an
    ``UnresolvedType`` for ``resolve_event_types`` to look up in the store)."""
    upper = {name.upper(): name for name in known}
    chosen = []
    for value in values:
        # Built-in types are upper case; accept "fs_error". A user rule's own
        # type is matched as written first.
        name = value if value in known else upper.get(value.upper())
        if name is None and unresolved:
            name = UnresolvedType(value)  # resolve_event_types asks the store
        if name is None:
            raise ValueError(f"unknown event type {value!r}.{_close_matches(value, known)} "
                             f"Known types: {', '.join(sorted(known))}")
        chosen.append(name)
    return tuple(chosen)


def resolve_event_types(ctx: click.Context, store, flt):
    """``flt`` with each unresolved --event-type named as the store has it;
    a usage error listing the closest known names when the store has none
    of that name either."""
    pending = [t for t in flt.event_types if isinstance(t, UnresolvedType)]
    if not pending:
        return flt
    try:
        stored = store.event_types()
    except PeripetyError as exc:
        log.warning("%s; cannot tell which event types it holds", exc)
        stored = set()
    stored_upper = {name.upper(): name for name in stored}
    resolved = []
    for value in flt.event_types:
        if isinstance(value, UnresolvedType):
            name = value if value in stored else stored_upper.get(value.upper())
            if name is None:
                raise click.BadParameter(_unknown_type(value, known_event_types() | stored, store),
                                         ctx, param_hint="'--event-type'")
            value = name
        resolved.append(str(value))
    return dataclasses.replace(flt, event_types=tuple(resolved))


def _close_matches(value: str, names: set[str]) -> str:
    """`` Did you mean A or B?`` for the names close to ``value``, or ""."""
    upper = {name.upper(): name for name in names}
    close = difflib.get_close_matches(value.upper(), list(upper), n=3, cutoff=0.75)
    return f" Did you mean {' or '.join(upper[c] for c in close)}?" if close else ""


def _unknown_type(value: str, names: set[str], store) -> str:
    hint = _close_matches(value, names)
    return (f"unknown event type {value!r}: not a built-in type, not a type of /etc/peripetyd.conf's rules, "
            f"and no event of that type in {getattr(store, 'name', 'the store')}.{hint} "
            f"Known types: {', '.join(sorted(names))}")


def known_event_types() -> set[str]:
    """Every built-in event type, and those the site's rules in
    /etc/peripetyd.conf add (a broken config only costs its own types)."""
    from ..config import load_config
    from ..event_types import EVENT_TYPES

    known = {info.name for info in EVENT_TYPES}
    try:
        rules = load_config().rules.rules
    except PeripetyError as exc:
        log.warning("%s; only built-in event types are known", exc)
        return known
    return known | {rule.event_type for rule in rules}


def check_time_range(ctx: click.Context, since, until) -> None:
    """--since after --until is a usage error: nothing could ever match."""
    from ..timespec import check_range

    try:
        check_range(since, until)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from None


def time_value(ctx, param, value):
    """Click callback: a time option's text (see peripety.timespec) as a datetime."""
    if value is None or isinstance(value, _dt.datetime):
        return value
    from ..timespec import parse_time  # late: only commands with times need it

    try:
        return parse_time(value)
    except (ValueError, PeripetyError) as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


blk_option = click.option(
    "--blk",
    "blk",
    multiple=True,
    metavar="DEVICE",
    help="Only events about DEVICE or devices stacked on it: a kernel name (sdb, dm-1), "
    "a path (/dev/mapper/mpatha), major:minor, a WWID or a filesystem UUID. Repeatable.",
)
severity_option = click.option(
    "--severity",
    callback=_severity,
    metavar="SEVERITY",
    help="Only events this severe or worse: Emergency, Alert, Critical, Error, Warning, "
    "Notice, Info, Debug (or err, warn, crit, 0-7).",
)
sub_system_option = click.option(
    "--sub-system",
    "sub_systems",
    multiple=True,
    callback=_sub_systems,
    metavar="NAME",
    help="Only events from this sub-system (SCSI, block, ata, NVMe, Multipath, ext4, xfs, ...; "
    "an unknown name is an error listing them all). Repeatable.",
)
event_type_option = click.option(
    "--event-type",
    "event_types",
    multiple=True,
    callback=_event_types,
    metavar="TYPE",
    help="Only events of this type (FS_ERROR, BLK_IO_ERROR, ...; any case). Built-in types, those "
    "of /etc/peripetyd.conf's rules and any type the store holds (another host's rules) are known; "
    "an unknown type is an error naming the closest ones. Repeatable.",
)
store_option = click.option(
    "--store",
    "store_spec",
    default="auto",
    show_default=True,
    envvar="PRPT_STORE",
    metavar="SPEC",
    help="Where to read events: auto (the journal where journald runs, else SQLite), "
    "journal (alias journald), journal:NAMESPACE, sqlite or sqlite:PATH. For journal files "
    "(a sosreport, systemd-journal-remote's output) use --directory or --file.",
)
directory_option = click.option(
    "-D",
    "--directory",
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Read the journal files in DIR and its subdirectories instead of the local store, as "
    "journalctl -D does: a sosreport's var/log/journal, or what systemd-journal-remote wrote "
    "(/var/log/journal/remote). They may hold many hosts: text output gains a host column.",
)
file_option = click.option(
    "--file",
    "files",
    multiple=True,
    metavar="FILE",
    help="Read this journal file instead of the local store, as journalctl --file does; a glob "
    "('remote/*.journal', quoted) is expanded. Repeatable.",
)
host_option = click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="HOSTNAME",
    help="Only events of this host: journald's _HOSTNAME of the entry (in the journal) or the "
    "event's hostname (SQLite). Repeatable.",
)


def journal_files_options(command):
    """--directory, --file and --host, in that order in --help."""
    for option in (host_option, file_option, directory_option):
        command = option(command)
    return command


def store_to_read(ctx: click.Context, store_spec: str, directory: str | None,
                  files: Iterable[str]) -> str | list[str]:
    """What to open: a store spec (``--store``, or ``journal:DIR`` for
    --directory), or the journal files --file named (globs expanded).
    --directory/--file replace a --store from $PRPT_STORE; naming both on
    the command line is a usage error, as is --directory with --file
    (journalctl refuses that too)."""
    files = tuple(files)
    if not directory and not files:
        return store_spec
    if directory and files:
        raise click.UsageError("give either --directory or --file, not both", ctx)
    if ctx.get_parameter_source("store_spec") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--store names a store; --directory/--file name journal files: give one", ctx)
    if directory:
        return "journal:" + os.path.abspath(directory)
    return expand_journal_files(ctx, files)


def expand_journal_files(ctx: click.Context, patterns: Iterable[str]) -> list[str]:
    """Each --file value as journalctl takes it: a path, or a glob expanded
    in name order; one that names nothing is an error."""
    paths: list[str] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            raise click.BadParameter(f"{pattern}: no such journal file", ctx, param_hint="'--file'")
        for path in found:
            if os.path.isdir(path):
                raise click.BadParameter(f"{path} is a directory: use --directory {path}", ctx,
                                         param_hint="'--file'")
            if path not in paths:
                paths.append(path)
    return paths


include_untrusted_option = click.option(
    "--include-untrusted",
    is_flag=True,
    help="Also show journal entries that claim to be peripety events but that journald says "
    "peripetyd (root) did not write, and events of an SQLite file others could have written. "
    "They are marked: UNTRUSTED(uid=... comm=...) in text, an \"untrusted_writer\" object in JSON. "
    "Without it they are skipped (and counted, see -v).",
)


def since_option(default: str | None = None, help: str = "Only events at or after this time."):
    return click.option(
        "--since",
        default=default,
        callback=time_value,
        metavar="TIME",
        help=help + " An RFC 3339 time or a relative one such as -1h.",
    )


def until_option(help: str = "Only events at or before this time (not before --since)."):
    return click.option("--until", callback=time_value, metavar="TIME", help=help)


def filter_options(command):
    """--blk, --severity, --sub-system and --event-type, in that order in --help."""
    for option in (event_type_option, sub_system_option, severity_option, blk_option):
        command = option(command)
    return command


def build_filter(
    blk: str | Iterable[str] | None,
    severity: Severity | str | None,
    sub_systems: Iterable[str] = (),
    event_types: Iterable[str] = (),
    since: _dt.datetime | None = None,
    until: _dt.datetime | None = None,
    event_ids: Iterable[str] = (),
    limit: int | None = None,
    hosts: Iterable[str] = (),
):
    """The ``EventFilter`` the options ask for.

    Each ``--blk`` key is resolved to the device's WWID (so events recorded
    under another name for the same disk match) plus its kernel name. A key
    that names no device present now is still matched as a kernel name and as
    a WWID: the disk may be gone (or on another host), its events are not.
    """
    from ..stores import EventFilter  # late: the store backends are heavy

    keys = (blk,) if isinstance(blk, str) else tuple(blk or ())
    wwids: list[str] = []
    kdevs: list[str] = []
    for key in keys:
        wwid, kdev = _resolve_device(key)
        if wwid and wwid not in wwids:
            wwids.append(wwid)
        if kdev and kdev not in kdevs:
            kdevs.append(kdev)
    return EventFilter(
        event_types=tuple(event_types),
        sub_systems=tuple(sub_systems),
        severity=Severity.parse(severity) if isinstance(severity, (str, int)) else severity,
        wwids=tuple(wwids),
        kdevs=tuple(kdevs),
        event_ids=tuple(event_ids),
        hosts=tuple(hosts),
        since=since,
        until=until,
        limit=limit,
    )


def _resolve_device(key: str) -> tuple[str, str]:
    """(wwid, kernel name) for a --blk key; (key, key) when unresolvable."""
    from ..devices import resolve  # late: pyudev and sysfs only when --blk is used

    try:
        info = resolve(key)
    except PeripetyError as exc:
        log.info("--blk %s: %s; matching it as a WWID or kernel device name", key, exc)
        return key, _kernel_name(key)
    kdev = os.path.basename(info.blk_path) if info.blk_path else ""
    return info.wwid, kdev or _kernel_name(key)


def _kernel_name(key: str) -> str:
    return key[len("/dev/") :] if key.startswith("/dev/") and key.count("/") == 2 else key


# -- the same filter from a Varlink call (io.peripety.Filter) ------------------

FILTER_LIST_FIELDS = ("blk", "sub_systems", "event_types", "wwids", "kdevs", "event_ids", "hosts")
FILTER_TEXT_FIELDS = ("severity", "since", "until")


class FilterFieldError(ValueError):
    """A field of a filter given as data is not valid: ``field`` and why."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def filter_from_fields(fields, *, limit=None, known_types: set[str] | None = None):
    """The ``EventFilter`` for a filter given as data (the Varlink
    ``io.peripety.Filter``: the options of ``prpt query`` by name), checked
    and resolved exactly as the options are (``build_filter``); ``wwids``
    and ``kdevs`` are taken as they are. FilterFieldError says which field
    is wrong and why."""
    import dataclasses

    from ..timespec import check_range, parse_time

    fields = {} if fields is None else fields
    if not isinstance(fields, dict):
        raise FilterFieldError("filter", "expected an object")
    unknown = sorted(set(fields) - set(FILTER_LIST_FIELDS) - set(FILTER_TEXT_FIELDS))
    if unknown:
        raise FilterFieldError(unknown[0], "no such filter field (known: "
                               + ", ".join(FILTER_LIST_FIELDS + FILTER_TEXT_FIELDS) + ")")
    lists: dict[str, tuple[str, ...]] = {}
    for name in FILTER_LIST_FIELDS:
        value = fields.get(name)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FilterFieldError(name, "expected a list of strings")
        lists[name] = tuple(value)
    texts: dict[str, str | None] = {}
    for name in FILTER_TEXT_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise FilterFieldError(name, "expected a string")
        texts[name] = value
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise FilterFieldError("limit", "expected a whole number of at least 1")
    try:
        severity = Severity.parse(texts["severity"]) if texts["severity"] is not None else None
    except ValueError as exc:
        raise FilterFieldError("severity", str(exc)) from None
    try:
        sub_systems = tuple(canonical_sub_system(v) for v in lists["sub_systems"])
    except ValueError as exc:
        raise FilterFieldError("sub_systems", str(exc)) from None
    try:
        event_types = parse_event_types(lists["event_types"],
                                        known_types if known_types is not None else known_event_types()) \
            if lists["event_types"] else ()
    except ValueError as exc:
        raise FilterFieldError("event_types", str(exc)) from None
    times = {}
    for name in ("since", "until"):
        try:
            times[name] = parse_time(texts[name]) if texts[name] is not None else None
        except (ValueError, PeripetyError) as exc:
            raise FilterFieldError(name, str(exc)) from None
    try:
        check_range(times["since"], times["until"])
    except ValueError as exc:
        raise FilterFieldError("since", str(exc)) from None
    flt = build_filter(lists["blk"], severity, sub_systems, event_types, since=times["since"],
                       until=times["until"], event_ids=lists["event_ids"], limit=limit, hosts=lists["hosts"])
    return dataclasses.replace(
        flt,
        wwids=flt.wwids + tuple(w for w in lists["wwids"] if w not in flt.wwids),
        kdevs=flt.kdevs + tuple(k for k in lists["kdevs"] if k not in flt.kdevs),
    )


# -- where monitor and top follow events from ---------------------------------

SOURCE_AUTO, SOURCE_VARLINK, SOURCE_STORE = "auto", "varlink", "store"

source_option = click.option(
    "--source",
    type=click.Choice([SOURCE_AUTO, SOURCE_VARLINK, SOURCE_STORE, "journal"]),
    default=SOURCE_AUTO,
    show_default=True,
    envvar="PRPT_SOURCE",
    help="Where to follow events from. varlink: the local peripetyd's Monitor stream (each event as soon as "
    "the daemon stored it); store (alias journal): the store itself (--store), as journalctl -f does; auto: "
    "varlink when the daemon's socket exists and answers as root's peripetyd (root only, unless peripetyd "
    "runs with --varlink-group), the store otherwise or when --store, --directory, --file or "
    "--include-untrusted is given. The events shown are the same either way.",
)
varlink_socket_option = click.option(
    "--varlink-socket",
    "varlink_socket",
    default="/run/peripety/io.peripety",
    show_default=True,
    envvar="PRPT_VARLINK_SOCKET",
    metavar="PATH",
    help="peripetyd's Varlink socket (peripetyd --varlink), for --source varlink or auto.",
)


def source_options(command):
    """--source and --varlink-socket, in that order in --help."""
    for option in (varlink_socket_option, source_option):
        command = option(command)
    return command
