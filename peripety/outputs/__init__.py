"""What the daemon does with an event after storing it: outputs observe the
stored stream (alerts, metrics, the Varlink service). See doc/design.md,
"Outputs".

An output is an object with

- ``name``: for the log and the status file;
- ``on_event(event)``: called once per stored event, in order, after the
  store took it. It must not block: slow work (a program, a socket write)
  is handed off or done in ``tick``;
- ``tick()``: the loop's periodic work (timers, reaping children);
- ``reconfigure(config)``: SIGHUP with a valid new config;
- ``close()``: at shutdown, after the last event.

An output that also waits on a file descriptor (a listening socket) has
``fileno()`` and ``read()`` and is added to the loop like a source.

An exception from an output is logged and never reaches the pipeline: an
output can lose its own work, never an event (the store already has it).
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..event import StorageEvent

log = logging.getLogger("peripety.outputs")


class Output(Protocol):
    name: str

    def on_event(self, event: StorageEvent) -> None: ...

    def tick(self) -> None: ...

    def reconfigure(self, config) -> None: ...

    def close(self) -> None: ...


class Outputs:
    """The daemon's outputs, each guarded: one failing output is logged
    (once per kind of failure and output) and the others go on."""

    def __init__(self) -> None:
        self.items: list[Output] = []

    def add(self, output: Output) -> None:
        self.items.append(output)

    def __iter__(self):
        return iter(self.items)

    def names(self) -> list[str]:
        return [o.name for o in self.items]

    def on_event(self, event: StorageEvent) -> None:
        for output in self.items:
            self._guarded(output, "on_event", event)

    def tick(self) -> None:
        for output in self.items:
            self._guarded(output, "tick")

    def reconfigure(self, config) -> None:
        for output in self.items:
            self._guarded(output, "reconfigure", config)

    def close(self) -> None:
        for output in self.items:
            self._guarded(output, "close")

    @staticmethod
    def _guarded(output: Output, method: str, *args) -> None:
        try:
            getattr(output, method)(*args)
        except Exception:  # an output never stops the daemon or loses an event
            log.exception("output %s failed in %s", output.name, method)
