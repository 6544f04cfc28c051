"""One pure function per panel: (model, clock, size) -> a Rich renderable.

``live_frame`` arranges them in a named Layout sized to the terminal;
``once_frame`` stacks them at their natural height for ``--once``.
"""

from __future__ import annotations

import datetime as _dt
import math

from rich import box
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..event import Severity, StorageEvent
from .model import (
    SEVERITY_BUCKETS,
    SLOT_SECONDS,
    TREND_SLOTS,
    DeviceRow,
    TopModel,
    device_identity,
    event_time,
)

SEVERITY_STYLES = {
    Severity.Emergency: "bold white on red",
    Severity.Alert: "bold white on red",
    Severity.Critical: "bold red",
    Severity.Error: "red",
    Severity.Warning: "yellow",
    Severity.Notice: "cyan",
    Severity.Info: "",
    Severity.Debug: "dim",
}
BUCKET_STYLES = ("bold red", "red", "yellow", "")
SHORT_SEVERITY = {
    Severity.Emergency: "Emerg",
    Severity.Alert: "Alert",
    Severity.Critical: "Crit",
    Severity.Error: "Err",
    Severity.Warning: "Warn",
    Severity.Notice: "Notice",
    Severity.Info: "Info",
    Severity.Debug: "Debug",
}
SPARK_CHARS = "▁▂▃▄▅▆▇█"
WIDE = 120
"""From this width on, device rows show WWID and type and a finer trend."""
HEADER_LINES = 2
FOOTER_LINES = 1
PANEL_CHROME = 3  # border top + column headings + border bottom
ONCE_EVENT_ROWS = 20


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def sparkline(values: list[int]) -> str:
    """One cell per value, scaled to the row's own peak; blank means none."""
    peak = max(values, default=0)
    if peak == 0:
        return " " * len(values)
    cells = []
    for value in values:
        if value == 0:
            cells.append(" ")
        else:
            level = max(1, math.ceil(value / peak * len(SPARK_CHARS)))
            cells.append(SPARK_CHARS[level - 1])
    return "".join(cells)


def short_path(path: str) -> str:
    return path[5:] if path.startswith("/dev/") else path


# -- header -----------------------------------------------------------------------


def header_panel(model: TopModel, now: _dt.datetime) -> RenderableType:
    grid = Table.grid(expand=True)
    grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    grid.add_column(justify="right", no_wrap=True)
    clock = now.strftime("%H:%M:%S")
    if model.view.paused:
        clock = f"PAUSED +{len(model.pending)}  {clock}"
    title = Text.assemble(("prpt top", "bold"), f"  {model.hostname}  store {model.store_name}")
    grid.add_row(title, Text(clock, style="reverse" if model.view.paused else "bold"))
    grid.add_row(_daemon_text(model), _totals_text(model, now))
    return grid


def _daemon_text(model: TopModel) -> Text:
    daemon = model.daemon
    if not daemon.running:
        return Text(daemon.reason or "daemon not running", style="bold yellow")
    sources = " ".join(daemon.sources) or "no sources"
    text = Text.assemble("daemon ", (sources, "green"), f" (pid {daemon.pid})")
    if daemon.bpf_skipped:
        text.append(f" bpf skipped {len(daemon.bpf_skipped)}", style="yellow")
    return text


def _totals_text(model: TopModel, now: _dt.datetime) -> Text:
    text = Text(f"{model.rate(now):.1f} ev/s")
    for (name, _), style, total in zip(SEVERITY_BUCKETS, BUCKET_STYLES, model.totals):
        text.append(f"  {name} ")
        text.append(str(total), style=style if total else "")
    return text


# -- devices ----------------------------------------------------------------------


def device_panel(model: TopModel, now: _dt.datetime, width: int, max_rows: int | None = None,
                 rows: list[DeviceRow] | None = None) -> Panel:
    """``rows``: ``model.device_rows()`` when the caller has it already."""
    rows = model.device_rows() if rows is None else rows
    title = f"Devices ({len(rows)}) · sort {model.view.sort.value}"
    if model.view.filter_text:
        title += f" · filter {model.view.filter_text!r}"
    if not rows:
        body: RenderableType = Text("no device events", style="dim")
        return Panel(body, title=title, title_align="left", box=box.ROUNDED)
    shown, hidden = _window(rows, model.view.selected_key, max_rows)
    table = _device_table(shown, model.view.selected_key, now, wide=width >= WIDE)
    subtitle = f"+{hidden} more" if hidden else None
    return Panel(table, title=title, title_align="left", subtitle=subtitle, subtitle_align="right", box=box.ROUNDED)


def _window(rows: list[DeviceRow], selected: str | None, max_rows: int | None):
    """The rows that fit, scrolled so the selected device stays visible."""
    if max_rows is None or len(rows) <= max_rows:
        return rows, 0
    max_rows = max(1, max_rows)
    keys = [r.stats.key for r in rows]
    index = keys.index(selected) if selected in keys else 0
    start = max(0, index - max_rows + 1)
    return rows[start : start + max_rows], len(rows) - max_rows


def _device_table(rows: list[DeviceRow], selected: str | None, now: _dt.datetime, wide: bool) -> Table:
    table = Table(box=None, expand=True, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("Device", ratio=2, no_wrap=True, overflow="ellipsis", min_width=10)
    if wide:
        table.add_column("WWID", ratio=2, no_wrap=True, overflow="ellipsis", max_width=40)
        table.add_column("Type", no_wrap=True, overflow="ellipsis", max_width=12)
    table.add_column("Mount", ratio=1, no_wrap=True, overflow="ellipsis", max_width=24)
    # Narrow screens drop the info count: least telling, and the mount
    # point needs the room more.
    buckets = len(SEVERITY_BUCKETS) if wide else len(SEVERITY_BUCKETS) - 1
    for name, _ in SEVERITY_BUCKETS[:buckets]:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("Last event", ratio=2, no_wrap=True, overflow="ellipsis", min_width=8)
    table.add_column("Age", justify="right", no_wrap=True)
    cells = TREND_SLOTS if wide else TREND_SLOTS // 2
    minutes = TREND_SLOTS * SLOT_SECONDS // 60
    table.add_column(f"err/{minutes}m", no_wrap=True, min_width=cells, max_width=cells)
    for row in rows:
        stats = row.stats
        marker = "> " if stats.key == selected else "  "
        indent = "  " * (row.depth - 1) + "└ " if row.depth else ""
        cells_text = [Text(marker + indent + short_path(stats.path or stats.kdev))]
        if wide:
            cells_text += [Text(stats.wwid, style="dim"), Text(stats.blk_type)]
        cells_text.append(Text(stats.mount_point))
        for count, style in zip(stats.counts[:buckets], BUCKET_STYLES):
            cells_text.append(Text(str(count), style=style) if count else Text("·", style="dim"))
        age = format_age((now - stats.last_seen).total_seconds()) if stats.last_seen else ""
        trend = stats.trend(now, per_cell=1 if wide else 2)
        cells_text += [Text(stats.last_event_type), Text(age), Text(sparkline(trend), style="red")]
        style = SEVERITY_STYLES[stats.worst] if stats.worst <= Severity.Warning else ""
        if stats.key == selected:
            style = (style + " reverse").strip()
        table.add_row(*cells_text, style=style)
    return table


# -- events -----------------------------------------------------------------------


def events_panel(model: TopModel, now: _dt.datetime, width: int, max_rows: int) -> Panel:
    selected = model.devices.get(model.view.selected_key or "")
    scope = short_path(selected.path or selected.kdev) if selected else "all devices"
    title = f"Recent events · {scope}"
    events = model.visible_events(max(1, max_rows))
    if not events:
        return Panel(Text("no events", style="dim"), title=title, title_align="left", box=box.ROUNDED)
    table = Table(box=None, expand=True, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("Time", no_wrap=True)
    wide = width >= WIDE
    table.add_column("Severity" if wide else "Sev", no_wrap=True)
    table.add_column("Device", no_wrap=True, overflow="ellipsis", max_width=24 if wide else 12)
    table.add_column("Type", no_wrap=True, overflow="ellipsis", max_width=40 if wide else 20)
    table.add_column("Count", justify="right", no_wrap=True)
    table.add_column("Message", ratio=1, no_wrap=True, overflow="ellipsis")
    for event in events:
        table.add_row(*_event_cells(event, now, wide), style=SEVERITY_STYLES[event.severity])
    return Panel(table, title=title, title_align="left", box=box.ROUNDED)


def _event_cells(event: StorageEvent, now: _dt.datetime, wide: bool) -> list[str]:
    when = event_time(event).astimezone(now.tzinfo)
    _, kdev, path = device_identity(event)
    count = f"×{event.count}" if event.count > 1 else ""
    message = event.msg or event.raw_msg
    severity = event.severity.name if wide else SHORT_SEVERITY[event.severity]
    return [when.strftime("%H:%M:%S"), severity, short_path(path), event.event_type, count, message]


# -- footer -----------------------------------------------------------------------


def footer_line(model: TopModel) -> Text:
    if model.view.prompt is not None:
        return Text.assemble(("filter (device or type, Enter/Esc): ", "bold"), model.view.prompt, ("█", "blink"))
    return Text("q quit  s sort  f,/ filter  p pause  ↑↓ select device  Esc show all", style="dim", no_wrap=True, overflow="ellipsis")


# -- frames -----------------------------------------------------------------------


def live_frame(model: TopModel, now: _dt.datetime, width: int, height: int) -> Layout:
    """The full-screen view: header, devices, events, footer."""
    body = max(2 * PANEL_CHROME, height - HEADER_LINES - FOOTER_LINES)
    rows = model.device_rows()
    # Devices take what they need up to half the body; events the rest.
    device_lines = min(PANEL_CHROME + max(1, len(rows)), max(PANEL_CHROME + 1, body // 2))
    event_lines = body - device_lines
    layout = Layout(name="root")
    layout.split_column(
        Layout(header_panel(model, now), name="header", size=HEADER_LINES),
        Layout(device_panel(model, now, width, device_lines - PANEL_CHROME, rows), name="devices", size=device_lines),
        Layout(events_panel(model, now, width, event_lines - PANEL_CHROME), name="events"),
        Layout(footer_line(model), name="footer", size=FOOTER_LINES),
    )
    return layout


def once_frame(model: TopModel, now: _dt.datetime, width: int, event_rows: int = ONCE_EVENT_ROWS) -> Group:
    """One frame at natural height, every device, for scripts and pipes."""
    return Group(
        header_panel(model, now),
        device_panel(model, now, width),
        events_panel(model, now, width, event_rows),
    )
