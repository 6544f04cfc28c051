"""Small text formats for ``prpt top``: ages, times, rates, sparklines, and
identities shortened without losing the part that tells them apart.

Every function that draws a symbol takes a ``Glyphs`` so the same view can be
drawn in plain ASCII (``--ascii``, or a locale that is not UTF-8).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass

from rich import box


@dataclass(frozen=True)
class Glyphs:
    ellipsis: str
    tree: str
    times: str
    spark: str
    box: box.Box
    cursor: str
    arrows: str
    block: str
    ascii: bool


UNICODE = Glyphs("…", "└ ", "×", "▁▂▃▄▅▆▇█", box.ROUNDED, "█", "↑↓", "█", False)
ASCII = Glyphs("~", "`-", "x", ".:-=+*#@", box.ASCII, "_", "Up/Down", "#", True)


def locale_is_utf8(environ: dict | None = None) -> bool:
    """Whether the user's locale (LC_ALL, else LC_CTYPE, else LANG) is UTF-8.

    Python coerces a C locale to C.UTF-8 for itself and sets LC_CTYPE so;
    that coerced value alone does not mean the terminal shows UTF-8.
    """
    env = os.environ if environ is None else environ
    lc_all, lc_ctype, lang = env.get("LC_ALL", ""), env.get("LC_CTYPE", ""), env.get("LANG", "")
    if lc_all:
        value = lc_all
    elif lc_ctype and not (lc_ctype == "C.UTF-8" and lang in ("", "C", "POSIX")):
        value = lc_ctype
    else:
        value = lang
    normalised = value.lower().replace("-", "")
    return "utf8" in normalised


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_when(when: _dt.datetime, now: _dt.datetime, seconds: bool = True) -> str:
    """Local (``now``'s zone) time, with the date when it is not today."""
    local = when.astimezone(now.tzinfo)
    clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    if local.date() == now.date():
        return clock
    if local.year == now.year:
        return local.strftime("%b %d ") + clock
    return local.strftime("%Y-%m-%d ") + clock


def sparkline(values: list[float], glyphs: Glyphs = UNICODE) -> str:
    """One cell per value, scaled to the row's own peak; blank means none."""
    peak = max(values, default=0)
    if peak == 0:
        return " " * len(values)
    levels = glyphs.spark
    cells = []
    for value in values:
        if value == 0:
            cells.append(" ")
        else:
            level = max(1, math.ceil(value / peak * len(levels)))
            cells.append(levels[level - 1])
    return "".join(cells)


def human_rate(value: float) -> str:
    """A per-second figure in at most 5 characters: 0, 3.2, 45, 1.2k, 12k."""
    if value <= 0:
        return "0"
    if value < 10:
        return f"{value:.1f}".rstrip("0").rstrip(".") or "0"
    if value < 1000:
        return f"{value:.0f}"
    if value < 10_000:
        return f"{value / 1000:.1f}k"
    if value < 1_000_000:
        return f"{value / 1000:.0f}k"
    return f"{value / 1e6:.1f}M"


def human_bytes(value: float) -> str:
    """Bytes per second as B, K, M, G (1024-based, as iostat -h)."""
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if value >= 10 or unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.0f}T"  # pragma: no cover


def format_ms(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value:.2f}ms"
    if value < 10:
        return f"{value:.1f}ms"
    if value < 10_000:
        return f"{value:.0f}ms"
    return f"{value / 1000:.0f}s"


def shorten_middle(text: str, width: int, glyphs: Glyphs = UNICODE) -> str:
    """``text`` in ``width`` cells, cut in the middle: the start (a WWID's
    type prefix) and the end (serial numbers, partition, backing file) stay."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + glyphs.ellipsis + (text[-tail:] if tail else "")


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def distinguish(text: str, others: list[str], width: int, glyphs: Glyphs = UNICODE) -> str:
    """``text`` in ``width`` cells keeping where it differs from ``others``.

    A plain middle cut is used when it still tells ``text`` apart from every
    shortened other; otherwise the cut keeps a few leading characters, then
    the characters from where the others differ, then the end.
    """
    if len(text) <= width:
        return text
    simple = shorten_middle(text, width, glyphs)
    if all(shorten_middle(o, width, glyphs) != simple for o in others if o != text):
        return simple
    # Told apart from every other, the shown part must start where the
    # most different one differs and reach where the most similar one does.
    diffs = [_common_prefix(text, o) for o in others if o != text]
    first_diff, last_diff = (min(diffs), max(diffs)) if diffs else (0, 0)
    head = min(4, first_diff)
    room = width - head - 1  # after head and the first ellipsis
    rest = text[first_diff:]
    if len(rest) <= room:
        return text[:head] + glyphs.ellipsis + rest
    tail = min(6, max(0, (room - 1) // 3))
    middle = max(room - 1 - tail, min(room, last_diff - first_diff + 1))
    if middle >= room - 1:
        return (text[:head] + glyphs.ellipsis + rest)[: width - 1] + glyphs.ellipsis
    return text[:head] + glyphs.ellipsis + rest[:middle] + glyphs.ellipsis + (text[-tail:] if tail else "")
