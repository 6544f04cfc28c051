"""When an alert about one device and event type is sent again: smartd's
``-M once|daily|diminishing`` as pure functions of a record and a clock
(wall-clock seconds: the record outlives the daemon).

- ``once``: the first time only;
- ``daily``: again when a day has passed since the last alert;
- ``diminishing``: again after 1, 2, 4, 8... days (each interval twice
  the one before).
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400.0
POLICIES = ("once", "daily", "diminishing")


@dataclass
class AlertRecord:
    """What was sent about one (action, device, event type)."""

    first: float
    """Wall-clock time of the first alert."""
    last: float
    """Wall-clock time of the latest alert."""
    sent: int = 1
    """Alerts sent so far."""
    suppressed: int = 0
    """Failures (summed event counts) seen since the latest alert and not alerted."""

    def to_dict(self) -> dict:
        return {"first": self.first, "last": self.last, "sent": self.sent, "suppressed": self.suppressed}

    @classmethod
    def from_dict(cls, data: dict) -> "AlertRecord":
        return cls(float(data["first"]), float(data["last"]), int(data.get("sent", 1)),
                   int(data.get("suppressed", 0)))


def next_due(policy: str, record: AlertRecord | None) -> float | None:
    """Wall-clock time from which another alert may be sent; 0 when none
    was sent yet, None when never again (``once``)."""
    if record is None:
        return 0.0
    if policy == "once":
        return None
    if policy == "daily":
        return record.last + DAY
    if policy == "diminishing":
        return record.last + DAY * 2 ** max(0, record.sent - 1)
    raise ValueError(f"unknown repeat policy {policy!r} (expected one of {', '.join(POLICIES)})")


def is_due(policy: str, record: AlertRecord | None, now: float) -> bool:
    due = next_due(policy, record)
    return due is not None and now >= due


def sent(record: AlertRecord | None, now: float) -> AlertRecord:
    """The record after an alert sent at ``now``."""
    if record is None:
        return AlertRecord(first=now, last=now)
    return AlertRecord(first=record.first, last=now, sent=record.sent + 1)
