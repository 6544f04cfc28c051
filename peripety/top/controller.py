"""What each key does to the view: one function, no terminal, easy to test."""

from __future__ import annotations

import datetime as _dt

from . import keys as K
from .model import TopModel

PAGE = 10
"""Rows moved by PgUp/PgDn (the app passes the real page height when it knows it)."""
_MOVES = {K.UP: -1, K.DOWN: +1, K.PAGE_UP: -PAGE, K.PAGE_DOWN: +PAGE, K.HOME: -10**9, K.END: 10**9}


def handle_key(model: TopModel, key: str, now: _dt.datetime, page: int = PAGE) -> None:
    view = model.view
    if view.prompt is not None:
        _prompt_key(model, key)
        return
    if view.help:  # any key closes the help; q still quits
        view.help = False
        view.quit = key in ("q", "Q")
        return
    if view.detail_event_id is not None:
        _detail_key(model, key, page)
        return
    if key in ("q", "Q"):
        view.quit = True
    elif key == "?":
        view.help = True
    elif key == "s":
        view.sort = view.sort.next()
    elif key == "n":
        view.show_names = not view.show_names
    elif key in ("f", "/"):
        view.prompt = ""  # a fresh filter each time, never appended to the old one
    elif key == "p":
        _toggle_pause(model, now)
    elif key == K.TAB:
        view.focus = "events" if view.focus == "devices" else "devices"
    elif key in _MOVES:
        step = _MOVES[key]
        if key in (K.PAGE_UP, K.PAGE_DOWN):
            step = page if step > 0 else -page
        if view.focus == "events":
            _move_event_cursor(model, step)
        else:
            _move_selection(model, step)
    elif key == K.ENTER:
        _enter(model)
    elif key == K.ESCAPE:
        _escape(model)


def _prompt_key(model: TopModel, key: str) -> None:
    view = model.view
    if key == K.ENTER:
        text = view.prompt.strip()
        view.prompt = None
        if text != view.filter_text:
            view.filter_text = text
            view.requery = True
        view.selected_key = None
        view.event_cursor = 0
    elif key == K.ESCAPE:
        view.prompt = None
    elif key == K.BACKSPACE:
        view.prompt = view.prompt[:-1]
    elif len(key) == 1:
        view.prompt += key


def _detail_key(model: TopModel, key: str, page: int) -> None:
    view = model.view
    if key in ("q", "Q"):
        view.quit = True
    elif key in (K.ESCAPE, K.ENTER, K.LEFT, K.BACKSPACE):
        view.detail_event_id = None
        view.detail_offset = 0
    elif key in _MOVES:
        step = _MOVES[key]
        if key in (K.PAGE_UP, K.PAGE_DOWN):
            step = page if step > 0 else -page
        view.detail_offset = max(0, min(view.detail_offset + step, 10**6))


def _enter(model: TopModel) -> None:
    view = model.view
    if view.focus == "devices":
        # Enter on a device lists its events and moves there.
        view.focus = "events"
        view.event_cursor = 0
        return
    event = model.cursor_event()
    if event is not None:
        view.detail_event_id = event.event_id
        view.detail_offset = 0


def _escape(model: TopModel) -> None:
    view = model.view
    if view.focus == "events":
        view.focus = "devices"
        return
    if view.selected_key is not None:
        view.selected_key = None
        return
    if view.filter_text:
        view.filter_text = ""
        view.requery = True


def _toggle_pause(model: TopModel, now: _dt.datetime) -> None:
    view = model.view
    if view.paused:
        view.paused_at = None
        held, model.pending = model.pending, []
        model.ingest(held)
    else:
        view.paused_at = now


def _move_event_cursor(model: TopModel, step: int) -> None:
    count = len(model.visible_events())
    view = model.view
    view.event_cursor = max(0, min(view.event_cursor + step, count - 1)) if count else 0


def _move_selection(model: TopModel, step: int) -> None:
    """Down from nothing selects the first device; up from the first
    returns to all devices."""
    keys = [row.stats.key for row in model.device_rows()]
    view = model.view
    view.event_cursor = 0
    if not keys:
        view.selected_key = None
        return
    index = keys.index(view.selected_key) if view.selected_key in keys else -1
    index = index + step
    if index < 0:
        view.selected_key = None
    else:
        view.selected_key = keys[min(index, len(keys) - 1)]
