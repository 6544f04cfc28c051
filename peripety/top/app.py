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
import logging
import os
import select
import signal
import socket
import time
from typing import Callable

from rich.console import Console
from rich.live import Live

from ..errors import PeripetyError
from ..event import now as wall_clock
from .controller import handle_key
from .fmt import UNICODE, Glyphs
from .keys import KeyReader
from .model import DEFAULT_STATUS_PATH, TopModel, read_daemon_status
from .panels import HEADER_LINES, FOOTER_LINES, PANEL_CHROME, live_frame, once_frame
from .state import StateSampler


log = logging.getLogger("peripety.top.app")

MIN_REDRAW_INTERVAL = 0.5
TICK = 1.0
"""Longest wait between redraws (and the select() timeout)."""
POLL_INTERVAL = 0.25
"""How often to ask a follower that has no file descriptor."""
STATUS_INTERVAL = 5.0
STATE_INTERVAL = 2.0
"""Default seconds between live-state samples (/proc/diskstats, sysfs)."""


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
        reload_from_store(model, store, flt, since)
    except BaseException:
        follower.close()
        raise
    model.lookup = lambda event_id: _lookup(store, event_id)
    return model, follower


def reload_from_store(model: TopModel, store, flt, since: _dt.datetime) -> None:
    """(Re)read the history since ``since`` from the store through the
    model's current filter: a new filter sees every stored event, not just
    those that happened to be on screen."""
    model.reset()
    model.ingest(store.query(dataclasses.replace(flt, since=since, limit=None)))
    note_untrusted(model, store)


def note_untrusted(model: TopModel, store, follower=None) -> None:
    """Readers that skip entries not written by peripetyd count them in
    ``untrusted_skipped``; older readers do not, and then nothing is shown."""
    counts = [getattr(obj, "untrusted_skipped", None) for obj in (store, follower) if obj is not None]
    counts = [c for c in counts if isinstance(c, int)]
    model.untrusted_skipped = sum(counts) if counts else None


def _lookup(store, event_id: str):
    """An event by id for the root-cause chain, when the model no longer holds it."""
    from ..stores import EventFilter

    try:
        found = list(store.query(EventFilter(event_ids=(event_id,), limit=1)))
    except PeripetyError as exc:  # shown as "not found" in the detail view; the view goes on
        log.warning("looking up root cause %s: %s", event_id, exc)
        return None
    return found[0] if found else None


def render_once(model: TopModel, console: Console, now: _dt.datetime, glyphs: Glyphs = UNICODE) -> None:
    console.print(once_frame(model, now, console.width, glyphs=glyphs))


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


@dataclasses.dataclass
class Refresher:
    """What the loop re-reads besides the follower: the store (after a new
    filter), the daemon status and the live device state."""

    store: object = None
    flt: object = None
    since: _dt.datetime | None = None
    sampler: StateSampler | None = None
    state_interval: float = STATE_INTERVAL

    def requery(self, model: TopModel) -> None:
        if self.store is not None and self.flt is not None and self.since is not None:
            reload_from_store(model, self.store, self.flt, self.since)

    def sample(self, model: TopModel) -> None:
        if self.sampler is not None:
            model.update_state(self.sampler.sample(time.monotonic()))


def run_live(
    model: TopModel,
    follower,
    console: Console,
    status_path=DEFAULT_STATUS_PATH,
    clock: Callable[[], _dt.datetime] = wall_clock,
    stdin_fd: int = 0,
    refresher: Refresher | None = None,
    glyphs: Glyphs = UNICODE,
) -> None:
    """Show the live view until ``q`` (or Ctrl-C); the terminal is restored
    however this returns."""
    refresher = refresher or Refresher()

    def frame():
        when = model.view.paused_at or clock()
        return live_frame(model, when, console.width, console.height, glyphs)

    try:
        with _SignalWakeup() as wakeup, KeyReader(stdin_fd) as keys:
            live = Live(console=console, screen=True, auto_refresh=False, get_renderable=frame)
            with live:
                _loop(model, follower, live, keys, wakeup, status_path, clock, refresher)
    except KeyboardInterrupt:
        pass


def _page(live) -> int:
    """Rows in half the body: what PgUp/PgDn move."""
    height = live.console.height
    return max(1, (height - HEADER_LINES - FOOTER_LINES) // 2 - PANEL_CHROME)


def _loop(model, follower, live, keys, wakeup, status_path, clock, refresher) -> None:
    key_fd = keys.fileno()
    refresher.sample(model)
    live.refresh()
    last_draw = time.monotonic()
    next_status = last_draw + STATUS_INTERVAL
    next_state = last_draw + refresher.state_interval
    dirty = False
    while not model.view.quit:
        follow_fd = follower.fileno()  # may change: a Varlink follower falls back to the store
        fds = [fd for fd in (wakeup.read_fd, key_fd, follow_fd) if fd is not None]
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
                handle_key(model, key, clock(), _page(live))
            if model.view.requery:
                model.view.requery = False
                refresher.requery(model)
            draw_now = True
        if follow_fd is None or follow_fd in ready:
            events = follower.read()
            if events:
                model.offer(events)
                dirty = True
            note_untrusted(model, refresher.store, follower)
        elapsed = time.monotonic() - last_draw
        if time.monotonic() >= next_status:
            model.daemon = read_daemon_status(status_path)
            next_status = time.monotonic() + STATUS_INTERVAL
        if time.monotonic() >= next_state and not model.view.paused:
            refresher.sample(model)
            next_state = time.monotonic() + refresher.state_interval
            dirty = True
        if model.view.quit:
            break
        if draw_now or (dirty and elapsed >= MIN_REDRAW_INTERVAL) or (elapsed >= TICK and not model.view.paused):
            live.refresh()
            last_draw = time.monotonic()
            dirty = False
