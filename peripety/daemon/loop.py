"""The daemon's one loop: every source and the signals polled from one
selector; nothing sleeps to wait for readiness. After each wake-up the
loop runs its periodic work (``on_tick``): the pipeline's timers, position
saves, spool delivery, status."""

from __future__ import annotations

import logging
import os
import selectors
import signal
from dataclasses import dataclass
from typing import Callable

from ..errors import PeripetyError

log = logging.getLogger("peripety.daemon")


@dataclass
class Source:
    """Something the loop polls: ``fileno()`` (None: never polled, read on
    every tick) and the handler that reads what is ready."""

    name: str
    obj: object
    handler: Callable[[], None]
    first: bool = False
    """Read at every wake-up, before the others (non-blocking)."""


class Loop:
    def __init__(self, *, on_tick: Callable[[], None], timeout: Callable[[], float],
                 on_reload: Callable[[], None]):
        self.sources: list[Source] = []
        self._first: list[Source] = []
        self.stopping = False
        self._reload_requested = False
        self._on_tick = on_tick
        self._timeout = timeout
        self._on_reload = on_reload
        self._selector = selectors.DefaultSelector()
        self._signal_rfd: int | None = None

    def add(self, name: str, obj, handler: Callable[[], None], *, first: bool = False) -> None:
        source = Source(name, obj, handler, first)
        self.sources.append(source)
        if first:
            self._first.append(source)
        fd = obj.fileno()
        if fd is not None:
            self._selector.register(fd, selectors.EVENT_READ, source)

    def names(self) -> list[str]:
        """The sources' names (an output polled here, ``is_output``, is not one)."""
        return [s.name for s in self.sources if not getattr(s.obj, "is_output", False)]

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads; both wake the selector
        through a pipe (``signal.set_wakeup_fd``)."""
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._signal_rfd = rfd
        signal.set_wakeup_fd(wfd)
        self._selector.register(rfd, selectors.EVENT_READ, None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._request_reload)

    def run(self) -> None:
        while not self.stopping:
            self.once()

    def once(self) -> None:
        ready = self._selector.select(self._timeout())
        for source in self._first:
            self._handle(source)
        for key, _ in ready:
            source = key.data
            if source is None:
                self._drain_signal_pipe()
            elif not source.first:
                self._handle(source)
        if self._reload_requested:
            self._reload_requested = False
            self._on_reload()
        self._on_tick()

    def _handle(self, source: Source) -> None:
        try:
            source.handler()
        except PeripetyError as exc:
            log.error("%s source: %s", source.name, exc)

    def close_sources(self) -> None:
        for source in self.sources:
            close = getattr(source.obj, "close", None)
            if close:
                close()

    def _stop(self, signum, frame) -> None:
        self.stopping = True

    def _request_reload(self, signum, frame) -> None:
        self._reload_requested = True

    def _drain_signal_pipe(self) -> None:
        try:
            while os.read(self._signal_rfd, 512):
                pass
        except BlockingIOError:
            pass
