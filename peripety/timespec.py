"""Time specifications for ``--since``/``--until``, read like journalctl does.

Accepted: ``now``, ``today``, ``yesterday``, ``tomorrow``, ``2018-05-21``,
``2012-10-30 18:17[:16]``, RFC 3339 (``2012-10-30T18:17:16.5+02:00``, ``Z``),
relative times ``-1h``, ``-30m``, ``-2d``, ``-90s``, ``-1h30m``, ``+5min``
(relative to now) and ``@1527000000`` (seconds since the epoch). Times
without an offset are local time. The result always carries its offset.
"""

from __future__ import annotations

import datetime as _dt
import re

_UNITS = {
    "us": 1e-6, "usec": 1e-6,
    "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_RELATIVE = re.compile(r"([+-])\s*((?:\d+\s*[a-z]+\s*)+)")
_RELATIVE_PART = re.compile(r"(\d+)\s*([a-z]+)")
_DAY_WORDS = {"today": 0, "yesterday": -1, "tomorrow": 1}
_LOCAL_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S.%f")

HELP = ("now, today, yesterday, YYYY-MM-DD, 'YYYY-MM-DD HH:MM[:SS]', RFC 3339 "
        "(2018-05-21T10:00:00+02:00), a relative time such as -1h, -30m, -2d, -90s, "
        "or @UNIX_SECONDS")


def parse_time(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """Read a time specification (see module doc); ValueError says what is accepted."""
    if now is None:
        now = _dt.datetime.now().astimezone()
    elif now.tzinfo is None:
        now = now.astimezone()
    spec = str(text).strip().lower()
    if spec == "now":
        return now
    if spec in _DAY_WORDS:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + _dt.timedelta(days=_DAY_WORDS[spec])
    if spec.startswith("@"):
        try:
            return _dt.datetime.fromtimestamp(float(spec[1:]), now.tzinfo)
        except (ValueError, OverflowError, OSError):
            raise _error(text) from None
    relative = _RELATIVE.fullmatch(spec)
    if relative:
        return now + _signed_delta(text, relative.group(1), relative.group(2))
    return _absolute(text, spec, now)


def _signed_delta(text: str, sign: str, body: str) -> _dt.timedelta:
    seconds = 0.0
    for number, unit in _RELATIVE_PART.findall(body):
        if unit not in _UNITS:
            raise ValueError(f"time {text!r}: unknown unit {unit!r} "
                             f"(use s, m/min, h, d or w)")
        seconds += int(number) * _UNITS[unit]
    return _dt.timedelta(seconds=-seconds if sign == "-" else seconds)


def _absolute(text: str, spec: str, now: _dt.datetime) -> _dt.datetime:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", spec):
        try:
            day = _dt.date.fromisoformat(spec)
        except ValueError as exc:
            raise ValueError(f"time {text!r}: {exc}") from None
        return _dt.datetime.combine(day, _dt.time()).astimezone()
    for fmt in _LOCAL_FORMATS:
        try:
            return _dt.datetime.strptime(spec, fmt).astimezone()
        except ValueError:
            pass
    iso = spec.upper()
    if iso.endswith("Z"):
        iso = iso[:-1] + "+00:00"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2})?", iso):
        try:
            ts = _dt.datetime.fromisoformat(iso)
        except ValueError as exc:
            raise ValueError(f"time {text!r}: {exc}") from None
        return ts if ts.tzinfo else ts.astimezone()
    raise _error(text)


def _error(text: str) -> ValueError:
    return ValueError(f"cannot read the time {text!r}; use {HELP}")


def human_time(ts: _dt.datetime, now: _dt.datetime | None = None) -> str:
    """A time for people, in the output zone (local, or UTC with --utc):
    ``HH:MM:SS.mmm`` today, ``YYYY-MM-DD HH:MM:SS.mmm`` on any other day."""
    from .event import output_time  # the one zone rule

    local = output_time(ts)
    today = output_time(now or _dt.datetime.now().astimezone()).date()
    clock = local.strftime("%H:%M:%S") + f".{local.microsecond // 1000:03d}"
    return clock if local.date() == today else f"{local:%Y-%m-%d} {clock}"


def check_range(since: _dt.datetime | None, until: _dt.datetime | None) -> None:
    """ValueError when ``since`` is after ``until`` (nothing could match)."""
    if since is not None and until is not None and since > until:
        raise ValueError(f"--since {since.isoformat()} is after --until {until.isoformat()}: nothing can match")
