"""Event-type metadata (default severity, journald MESSAGE_ID, catalog text),
loaded from ``event_types.toml``."""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass
from importlib import resources

from .event import Severity

# Namespace for MESSAGE_IDs of event types that only user rules define: the
# id is stable for a given name, so journalctl MESSAGE_ID= matches keep working.
_USER_TYPE_NAMESPACE = uuid.UUID("6a1c8f0e-3b4d-4a52-9d0c-2f0e7b1a9c33")


@dataclass(frozen=True)
class EventTypeInfo:
    name: str
    severity: Severity
    message_id: str
    title: str
    description: str


class EventTypes:
    def __init__(self, table: dict[str, dict]):
        self._types = {
            name: EventTypeInfo(
                name=name,
                severity=Severity.parse(entry["severity"]),
                message_id=entry["message_id"],
                title=entry["title"],
                description=entry["description"],
            )
            for name, entry in table.items()
        }

    @classmethod
    def builtin(cls) -> "EventTypes":
        text = resources.files(__package__).joinpath("event_types.toml").read_text()
        return cls(tomllib.loads(text))

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def __iter__(self):
        return iter(self._types.values())

    def get(self, name: str) -> EventTypeInfo | None:
        return self._types.get(name)

    def default_severity(self, name: str) -> Severity:
        info = self._types.get(name)
        return info.severity if info else Severity.Warning

    def message_id(self, name: str) -> str:
        info = self._types.get(name)
        if info:
            return info.message_id
        return uuid.uuid5(_USER_TYPE_NAMESPACE, name).hex

    def catalog(self) -> str:
        """A journald message catalog (``man journalctl --catalog``)."""
        parts = []
        for info in self._types.values():
            parts.append(
                f"-- {info.message_id}\n"
                f"Subject: {info.title}\n"
                f"Defined-By: peripety\n\n"
                f"{info.description}\n\n"
                f"Device: @DEV_PATH@ (@KDEV@, WWID @DEV_WWID@)\n"
                f"Event id: @EVENT_ID@\n"
            )
        return "\n".join(parts)


EVENT_TYPES = EventTypes.builtin()
