"""JSON lines of the events matched records stand for, the events never built.

``prpt parse --jsonl`` only ever writes its events out, so it writes
``event.to_json()`` of each straight from the record and the match
(byte-identical: tests check). Each (rule, extension keys) gets a
``FreshLayout`` once: the JSON with everything the rule fixes written in,
and its message as one %-format; a line then costs a printable test and two
% operations. Lines with text to escape, or a message the layout cannot
render, take ``fresh_event_json`` and ``Match.message``.

``JsonLines.kernel`` goes one step further for a saved log's usual kmsg
record: from the rule engine's groups (``RuleSet.first``) to the JSON line,
with no record, Match or extension dict made on the way, in one %
operation (the rule's sentence is written into its JSON layout).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import operator
from operator import is_

from json.encoder import ESCAPE as _JSON_ESCAPE
from json.encoder import encode_basestring as _json_str

from .event import Severity, local_hostname, new_event_id, now
from .event_json import FreshLayout, _timestamp_json, fresh_event_json
from .record import LogRecord
from .rules import Match
from .rules.engine import match_from_groups

CLOCK_EVERY = 4096
"""A saved log's kernel lines may carry no wall-clock time (dmesg, short-
monotonic): unless the boot time is given, their events get the time they
were parsed, re-read every so many events for long-running pipes; their
kernel time stays in kernel_usec."""

_SEVERITY_NAMES = {s: s.name for s in Severity}  # Enum.name is a slow property
_LEVEL_NAMES = tuple(Severity(level).name for level in range(8))
_FILE_SOURCE = "file"
_NONE = itertools.repeat(None)


class JsonLines:
    """Turns matches into the JSON lines of their events, in order. The
    output zone (--utc) must be set before the first line: a time object
    seen last renders the same."""

    def __init__(self, hostname: str | None = None, boot_time: _dt.datetime | None = None):
        self.host_json = _json_str(hostname or local_hostname())
        self.boot_time = boot_time
        self.default_time = now()
        self.count = 0
        self._encoded: dict[str, str] = {}  # sub-systems, event types, sources: a few dozen strings
        self._layouts: dict[tuple, FreshLayout] = {}
        self._fast: dict[int, tuple | None] = {}
        """id(bucket entry) -> ``_fast_entry``."""
        self._entries: list[tuple] = []  # (those entries, kept so that no id is reused)
        self._last_time, self._last_time_json = None, ""
        self._file_json = self._enc(_FILE_SOURCE)

    def _enc(self, value: str) -> str:
        text = self._encoded.get(value)
        if text is None:
            if len(self._encoded) > 10_000:  # host names from a file: keep it bounded
                self._encoded.clear()
            text = self._encoded[value] = _json_str(value)
        return text

    def _tick(self) -> None:
        self.count += 1
        if self.count % CLOCK_EVERY == 0:
            self.default_time = now()

    def pair(self, record: LogRecord, match: Match) -> str:
        """``event_from_match(record, match, ...).to_json() + "\\n"``."""
        self._tick()
        return self._pair(record, match)

    def _layout(self, rule, keys: tuple) -> FreshLayout:
        key = (id(rule), *keys)
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) > 10_000:
                self._layouts.clear()
            # (the layout holds the rule: its id is not reused while the key lives)
            layout = self._layouts[key] = FreshLayout(rule, keys, self._enc(rule.sub_system),
                                                      self._enc(rule.event_type))
        return layout

    def _time_json(self, timestamp: _dt.datetime) -> str:
        if timestamp is not self._last_time:  # lines of one stretch share one time object
            self._last_time, self._last_time_json = timestamp, _timestamp_json(timestamp)
        return self._last_time_json

    def _pair(self, record: LogRecord, match: Match) -> str:
        text = record.text
        host = record.hostname
        timestamp = record.wallclock
        if timestamp is None:  # (record_time, inlined for a saved log's lines)
            if self.boot_time is None and record.source != "kmsg":
                timestamp = self.default_time
            else:
                from .classify import record_time  # (classify imports this module)

                timestamp = record_time(record, self.default_time, self.boot_time)
        time_json = self._time_json(timestamp)
        extension = match.extension
        values = tuple(extension.values())
        kdev = match.kdev
        layout = self._layout(match.rule, tuple(extension))
        if layout.generic:
            msg = text
        elif layout.message is not None:
            args = layout.pick((*values, kdev))
            msg = layout.message % args if "" not in args else (match.message() or text)
        else:
            msg = match.message() or text
        usec = record.kernel_usec
        host_json = self.host_json if host is None else self._enc(host)
        joined = "".join((text, msg, kdev, *values))
        # No JSON escape needed? Printable text without quote or backslash
        # never needs one (isprintable is a C loop, several times faster than
        # encode_basestring's ESCAPE regex, which decides other text).
        if (joined.isprintable() and '"' not in joined and "\\" not in joined) or _JSON_ESCAPE.search(joined) is None:
            return layout.json % (
                host_json, _SEVERITY_NAMES[match.severity], time_json, "null" if usec is None else usec,
                new_event_id(), kdev, msg, text, *values, self._enc(record.source))
        return fresh_event_json(
            host_json, _SEVERITY_NAMES[match.severity], self._enc(match.sub_system), timestamp,
            self._enc(match.event_type), kdev, msg, text, extension, self._enc(record.source), usec,
        ) + "\n"

    def kernel(self, text: str, usec: int, level: int, seq: int | None, entry: tuple, groups: tuple) -> str:
        """The JSON line of a saved log's trusted kernel record (source
        ``file``, no wall-clock time or host of its own) that the bucket
        entry ``entry`` matched with ``groups`` (``RuleSet.first``)."""
        self.count += 1
        if not self.count % CLOCK_EVERY:  # (_tick, inlined: once per event)
            self.default_time = now()
        fast = self._fast.get(id(entry), False)
        if fast is False:
            fast = self._fast[id(entry)] = self._fast_entry(entry)
            self._entries.append(entry)
        # Every group is a part of text, and the layout's own words need no
        # escape: printable text without quote or backslash needs none at all.
        if fast is not None and text.isprintable() and '"' not in text and "\\" not in text:
            line, severity, no_device, partial = fast
            values = groups[2:]
            if None in values:  # optional groups that took no part: not in the extension
                absent = tuple(map(is_, values, _NONE))
                line = partial.get(absent, False)
                if line is False:
                    line = partial[absent] = self._kernel_line(entry, absent)
            # (an empty value would make the sentence say "?": the general path)
            if line is not None and "" not in values:
                if self.boot_time is None:
                    timestamp = self.default_time
                    time_json = self._last_time_json if timestamp is self._last_time else \
                        self._time_json(timestamp)
                else:
                    time_json = self._time_json(self.boot_time + _dt.timedelta(microseconds=usec))
                fmt, arrange = line
                return fmt % arrange((severity or _LEVEL_NAMES[level], time_json, usec, new_event_id(),
                                      "" if no_device else groups[1], text, *values))
        record = LogRecord(text, _FILE_SOURCE, True, usec, None, seq, level, 0)
        return self._pair(record, match_from_groups(entry, groups, text, level))

    def _fast_entry(self, entry: tuple) -> tuple | None:
        """(the %-format of its lines and what arranges their values, or None,
        severity name or None, no_device, {which groups are absent: the same})
        of a bucket entry; None where its lines take ``pair`` (a deriving rule)."""
        _, _, rule, severity, _, names = entry
        if rule.derive:
            return None  # fields added from the groups: the general path
        line = self._kernel_line(entry, (False,) * len(names))
        return line, None if severity is None else _SEVERITY_NAMES[severity], rule.no_device, {}

    def _kernel_line(self, entry: tuple, absent: tuple) -> tuple | None:
        """(%-format, arrange) of the whole JSON line of ``entry``'s matches
        whose groups flagged in ``absent`` took no part: the rule's
        ``FreshLayout`` with its sentence written in, so a line is one
        % operation on ``arrange((severity, time JSON, usec, event id, kdev,
        text, *groups))``. None where the layout renders no sentence."""
        names = tuple(name for name, gone in zip(entry[5], absent) if not gone)
        layout = self._layout(entry[2], names)
        # The layout filled with markers (NUL: never in JSON text), then cut at them.
        values = tuple(f"\0{6 + n}\0" for n, gone in enumerate(absent) if not gone)
        kdev, text = "\0" "4\0", "\0" "5\0"
        if layout.generic:
            msg = text
        elif layout.message is not None:
            msg = layout.message % layout.pick((*values, kdev))
        else:
            return None
        filled = layout.json % (self.host_json, "\0" "0\0", "\0" "1\0", "\0" "2\0", "\0" "3\0", kdev, msg, text,
                                *values, self._file_json)
        pieces = filled.split("\0")
        fmt = "".join(piece.replace("%", "%%") if n % 2 == 0 else "%s" for n, piece in enumerate(pieces))
        return fmt, operator.itemgetter(*map(int, pieces[1::2]))


def json_lines_from_matches(pairs, hostname: str | None = None, boot_time: _dt.datetime | None = None):
    """``event.to_json() + "\\n"`` of each event ``classify.events_from_matches``
    would yield for ``(record, match)`` pairs, without building the events."""
    lines = JsonLines(hostname, boot_time)
    pair = lines.pair
    for record, match in pairs:
        yield pair(record, match)
