"""Running ``prpt top``: seed the model from the store, then one loop on the
main thread that waits (select) on the keyboard, the store's follower and
signals, and redraws a full-screen Rich ``Live``.

Redraws are explicit (``auto_refresh=False``): after a key at once, after
new events at most every MIN_REDRAW_INTERVAL, and every TICK otherwise so
ages and trends move. That bounds the CPU an event storm can cost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import os
import select
import signal
import socket
import time
from typing import Callable

from rich.console import Console
from rich.live import Live

from ..event import now as wall_clock
from .controller import handle_key
from .keys import KeyReader
from .model import DEFAULT_STATUS_PATH, TopModel, read_daemon_status
from .panels import live_frame, once_frame


MIN_REDRAW_INTERVAL = 0.5
TICK = 1.0
"""Longest wait between redraws (and the select() timeout)."""
POLL_INTERVAL = 0.25
"""How often to ask a follower that has no file descriptor."""
STATUS_INTERVAL = 5.0


def store_label(store) -> str:
    path = getattr(store, "path", None)
    return f"{store.name}:{path}" if path else store.name


def seed(store, flt, since: _dt.datetime, status_path=DEFAULT_STATUS_PATH, hostname: str | None = None):
    """A model holding the stored history since ``since``, and a follower
    for what comes next.

    The follower is opened before the history is read so nothing falls in
    between; events seen by both are counted once (the model knows ids).
    """
    model = TopModel(hostname or socket.gethostname(), store_label(store), read_daemon_status(status_path))
    follower = store.follow(dataclasses.replace(flt, limit=None))
    try:
        model.ingest(store.query(dataclasses.replace(flt, since=since, limit=None)))
    except BaseException:
        follower.close()
        raise
    return model, follower


def render_once(model: TopModel, console: Console, now: _dt.datetime) -> None:
    console.print(once_frame(model, now, console.width))


class _SignalWakeup:
    """Signals (terminal resize, SIGTERM) wake the select() loop via a pipe.

    SIGTERM is turned into SystemExit so the terminal is restored by the
    normal unwinding instead of being left in cbreak mode.
    """

    def __enter__(self) -> "_SignalWakeup":
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old_fd = signal.set_wakeup_fd(self._write_fd)
        self._old_winch = signal.signal(signal.SIGWINCH, lambda signum, frame: None)
        self._old_term = signal.signal(signal.SIGTERM, _exit_on_signal)
        return self

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.read_fd, 512):
                pass

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGWINCH, self._old_winch)
        signal.signal(signal.SIGTERM, self._old_term)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self.read_fd)
        os.close(self._write_fd)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def run_live(
    model: TopModel,
    follower,
    console: Console,
    status_path=DEFAULT_STATUS_PATH,
    clock: Callable[[], _dt.datetime] = wall_clock,
    stdin_fd: int = 0,
) -> None:
    """Show the live view until ``q`` (or Ctrl-C); the terminal is restored
    however this returns."""

    def frame():
        when = model.view.paused_at or clock()
        return live_frame(model, when, console.width, console.height)

    try:
        with _SignalWakeup() as wakeup, KeyReader(stdin_fd) as keys:
            live = Live(console=console, screen=True, auto_refresh=False, get_renderable=frame)
            with live:
                _loop(model, follower, live, keys, wakeup, status_path, clock)
    except KeyboardInterrupt:
        pass


def _loop(model, follower, live, keys, wakeup, status_path, clock) -> None:
    key_fd, follow_fd = keys.fileno(), follower.fileno()
    fds = [fd for fd in (wakeup.read_fd, key_fd, follow_fd) if fd is not None]
    live.refresh()
    last_draw = time.monotonic()
    next_status = last_draw + STATUS_INTERVAL
    dirty = False
    while not model.view.quit:
        wait = (MIN_REDRAW_INTERVAL if dirty else TICK) - (time.monotonic() - last_draw)
        if follow_fd is None:
            wait = min(wait, POLL_INTERVAL)
        ready = select.select(fds, [], [], max(0.0, wait))[0]
        draw_now = False
        if wakeup.read_fd in ready:  # resized: redraw to the new size
            wakeup.drain()
            draw_now = True
        if key_fd is not None and key_fd in ready:
            for key in keys.read():
                handle_key(model, key, clock())
            draw_now = True
        if follow_fd is None or follow_fd in ready:
            events = follower.read()
            if events:
                model.offer(events)
                dirty = True
        elapsed = time.monotonic() - last_draw
        if time.monotonic() >= next_status:
            model.daemon = read_daemon_status(status_path)
            next_status = time.monotonic() + STATUS_INTERVAL
        if model.view.quit:
            break
        if draw_now or (dirty and elapsed >= MIN_REDRAW_INTERVAL) or (elapsed >= TICK and not model.view.paused):
            live.refresh()
            last_draw = time.monotonic()
            dirty = False
