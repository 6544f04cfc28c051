"""What a query or a follower asks for: one filter, understood by every store."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from ..event import Severity, StorageEvent


@dataclass(frozen=True)
class EventFilter:
    """Criteria are AND-ed; values inside one criterion are OR-ed.

    ``since``/``until`` compare with the event's own ``timestamp`` (when it
    happened), not when the store received it. Results come in the order the
    store received the events, which is time order unless events were
    delivered late from the spool.
    """

    event_types: tuple[str, ...] = ()
    sub_systems: tuple[str, ...] = ()
    severity: Severity | None = None
    """This severity or worse (PRIORITY <= severity)."""
    wwids: tuple[str, ...] = ()
    """The event's DEV_WWID, or any of its OWNERS_WWIDS, is one of these."""
    kdevs: tuple[str, ...] = ()
    """Also match KDEV (for devices without a wwid); OR-ed with ``wwids``."""
    event_ids: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    """The host the event happened on: journald's ``_HOSTNAME`` in the
    journal (set by the origin host's journald, kept by journal-remote),
    the event's ``hostname`` in SQLite."""
    since: _dt.datetime | None = None
    until: _dt.datetime | None = None
    limit: int | None = None
    """Only the newest N (still returned oldest first)."""

    def __post_init__(self):
        # Callers pass lists from click; tuples keep the filter hashable.
        for name in ("event_types", "sub_systems", "wwids", "kdevs", "event_ids", "hosts"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        if self.severity is not None and not isinstance(self.severity, Severity):
            object.__setattr__(self, "severity", Severity.parse(self.severity))
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be 0 or more, not {self.limit}")

    @property
    def devices(self) -> tuple[str, ...]:
        return self.wwids + self.kdevs

    def matches(self, event: StorageEvent) -> bool:
        """The whole filter except ``limit``, evaluated in Python (the spool,
        and the checks a store cannot express natively)."""
        if self.event_types and event.event_type not in self.event_types:
            return False
        if self.sub_systems and event.sub_system not in self.sub_systems:
            return False
        if self.severity is not None and event.severity > self.severity:
            return False
        if self.event_ids and event.event_id not in self.event_ids:
            return False
        if self.hosts and event.hostname not in self.hosts:
            return False
        if (self.wwids or self.kdevs) and not self.matches_device(event):
            return False
        return self.matches_time(event.timestamp)

    def matches_device(self, event: StorageEvent) -> bool:
        info = event.cur_blk_info
        if info is not None and self.wwids:
            if info.wwid in self.wwids or any(w in self.wwids for w in info.owners_wwids):
                return True
        return bool(self.kdevs) and event.kdev in self.kdevs

    def matches_time(self, timestamp: _dt.datetime) -> bool:
        timestamp = _aware(timestamp)
        if self.since is not None and timestamp < _aware(self.since):
            return False
        if self.until is not None and timestamp > _aware(self.until):
            return False
        return True


def _aware(ts: _dt.datetime) -> _dt.datetime:
    """A naive datetime means local time, as on the command line."""
    return ts if ts.tzinfo else ts.astimezone()


def to_usec(ts: _dt.datetime) -> int:
    """Microseconds since the epoch, the unit of journald and the SQLite store."""
    delta = _aware(ts) - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
