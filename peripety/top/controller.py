"""What each key does to the view: one function, no terminal, easy to test."""

from __future__ import annotations

import datetime as _dt

from . import keys as K
from .model import TopModel


def handle_key(model: TopModel, key: str, now: _dt.datetime) -> None:
    view = model.view
    if view.prompt is not None:
        _prompt_key(model, key)
        return
    if key in ("q", "Q"):
        view.quit = True
    elif key == "s":
        view.sort = view.sort.next()
    elif key in ("f", "/"):
        view.prompt = view.filter_text
    elif key == "p":
        _toggle_pause(model, now)
    elif key == K.DOWN:
        _move_selection(model, +1)
    elif key == K.UP:
        _move_selection(model, -1)
    elif key == K.ESCAPE:
        view.selected_key = None
        view.filter_text = ""


def _prompt_key(model: TopModel, key: str) -> None:
    view = model.view
    if key == K.ENTER:
        view.filter_text = view.prompt.strip()
        view.prompt = None
        view.selected_key = None
    elif key == K.ESCAPE:
        view.prompt = None
    elif key == K.BACKSPACE:
        view.prompt = view.prompt[:-1]
    elif len(key) == 1:
        view.prompt += key


def _toggle_pause(model: TopModel, now: _dt.datetime) -> None:
    view = model.view
    if view.paused:
        view.paused_at = None
        held, model.pending = model.pending, []
        model.ingest(held)
    else:
        view.paused_at = now


def _move_selection(model: TopModel, step: int) -> None:
    """Down from nothing selects the first device; up from the first
    returns to all devices."""
    keys = [row.stats.key for row in model.device_rows()]
    view = model.view
    if not keys:
        view.selected_key = None
        return
    index = keys.index(view.selected_key) if view.selected_key in keys else -1
    index = index + step
    if index < 0:
        view.selected_key = None
    else:
        view.selected_key = keys[min(index, len(keys) - 1)]
