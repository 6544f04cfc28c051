"""The contract every event store keeps (doc/design.md, "Stores").

Stores are tested by one shared suite, ``tests/test_stores_contract.py``.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

from ..event import StorageEvent
from .filter import EventFilter


@runtime_checkable
class Follower(Protocol):
    """New events as they arrive, from the moment ``follow()`` was called.

    Poll ``fileno()`` for readability when it is not None, otherwise call
    ``wait(timeout)``; then ``read()`` returns everything new.
    """

    def fileno(self) -> int | None: ...

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when something may be new."""

    def read(self) -> list[StorageEvent]:
        """Everything new that matches the filter, oldest first; never blocks."""

    def close(self) -> None: ...


@runtime_checkable
class EventStore(Protocol):
    name: str
    """``journal`` or ``sqlite``."""

    def append(self, event: StorageEvent) -> None:
        """Store one event; raise StoreError when the store cannot take it."""

    def query(self, flt: EventFilter) -> Iterator[StorageEvent]:
        """Stored events matching ``flt``, oldest first."""

    def follow(self, flt: EventFilter) -> Follower: ...

    def event_types(self) -> set[str]:
        """Every event type the store holds (any writer's: it only names
        types a query may ask for, the query itself checks the writer)."""

    def sync(self) -> None:
        """Return once every appended event is visible to readers."""

    def close(self) -> None: ...
