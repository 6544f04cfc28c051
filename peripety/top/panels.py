"""One pure function per panel: (model, clock, size) -> a Rich renderable.

``live_frame`` arranges them in a named Layout sized to the terminal (with the
help and event-detail views in place of the panes when open); ``once_frame``
stacks them at their natural height for ``--once``.

Device columns are chosen by priority to fit the width: the identity, the
live state, error counts and I/O figures first; WWID, type, trend later.
Column widths are computed here, not left to Rich, so an identity is
shortened by ``fmt.distinguish`` (never cut where it differs from another).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import Callable

from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..event import Severity, StorageEvent
from .fmt import (
    UNICODE,
    Glyphs,
    distinguish,
    format_age,
    format_ms,
    format_when,
    human_bytes,
    human_rate,
    sparkline,
)
from .model import (
    SEVERITY_BUCKETS,
    SLOT_SECONDS,
    TREND_SLOTS,
    DeviceRow,
    DeviceStats,
    TopModel,
    device_identity,
    event_time,
)

__all__ = [
    "detail_panel",
    "device_panel",
    "events_panel",
    "footer_line",
    "format_age",
    "header_panel",
    "help_panel",
    "live_frame",
    "once_frame",
    "sparkline",
]

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
    Severity.Emergency: "Emer",
    Severity.Alert: "Alrt",
    Severity.Critical: "Crit",
    Severity.Error: "Err",
    Severity.Warning: "Warn",
    Severity.Notice: "Note",
    Severity.Info: "Info",
    Severity.Debug: "Dbg",
}
WIDE = 120
"""From this width on, events show full severity names and device columns."""
HEADER_LINES = 2
FOOTER_LINES = 1
PANEL_CHROME = 3  # border top + column headings + border bottom
PANEL_INNER = 4  # border and padding left and right
ONCE_EVENT_ROWS = 20
COLUMN_GAP = 2
ESSENTIAL = 4
"""Device columns up to this priority are placed before any is widened."""


def short_path(path: str) -> str:
    return path[5:] if path.startswith("/dev/") else path


# -- header -----------------------------------------------------------------------


def header_panel(model: TopModel, now: _dt.datetime, glyphs: Glyphs = UNICODE) -> RenderableType:
    grid = Table.grid(expand=True, padding=(0, 0, 0, 2))
    grid.add_column(ratio=1, no_wrap=True, overflow="crop" if glyphs.ascii else "ellipsis")
    grid.add_column(justify="right", no_wrap=True)
    clock = now.strftime("%Y-%m-%d %H:%M:%S")
    if model.view.paused:
        clock = f"PAUSED +{len(model.pending)}  {clock}"
    title = Text.assemble(("prpt top", "bold"), f"  {model.hostname}  store {model.store_name}")
    grid.add_row(title, Text(clock, style="reverse" if model.view.paused else "bold"))
    grid.add_row(_daemon_text(model), _totals_text(model, now))
    return grid


def _daemon_text(model: TopModel) -> Text:
    daemon = model.daemon
    if not daemon.running:
        text = Text(daemon.reason or "daemon not running", style="bold yellow")
    else:
        # Problems first: on a narrow screen the end of the line is cut.
        text = Text()
        if daemon.store_ok is False:
            text.append(f"STORE FAILING: {daemon.store_error or 'unknown error'}  ", style="bold red")
        if daemon.spool_depth:
            text.append(f"spooled {daemon.spool_depth}  ", style="yellow")
        sources = " ".join(daemon.sources) or "no sources"
        text.append_text(Text.assemble("daemon ", (sources, "green"), f" (pid {daemon.pid})"))
        if daemon.bpf_skipped:
            text.append(f" bpf skipped {len(daemon.bpf_skipped)}", style="yellow")
        if daemon.store_ok:
            text.append("  store ok", style="green")
    if model.untrusted_skipped:
        text = Text.assemble((f"untrusted skipped {model.untrusted_skipped}", "bold yellow"), "  ", text)
    return text


def _totals_text(model: TopModel, now: _dt.datetime) -> Text:
    text = Text(f"{model.rate(now):.1f} ev/s")
    for (name, _), style, total in zip(SEVERITY_BUCKETS, BUCKET_STYLES, model.totals):
        text.append(f"  {name} ")
        text.append(str(total), style=style if total else "")
    return text


# -- devices ----------------------------------------------------------------------


@dataclass
class _Ctx:
    now: _dt.datetime
    glyphs: Glyphs
    selected: str | None
    wide: bool
    names: dict[str, list[str]]
    """displayed name -> WWIDs of the rows showing it (collisions need an id)."""
    wwids: list[str]


@dataclass
class Column:
    heading: str
    priority: int
    """Lower is kept longer as the width shrinks."""
    width: int
    cell: Callable[[DeviceStats, _Ctx, int], Text]
    """(device, context, final width) -> the cell."""
    justify: str = "left"
    flex: int = 0
    """Share of the width left over (0: fixed width)."""
    max_width: int = 0


def _name_cell(stats: DeviceStats, ctx: _Ctx, width: int, depth: int = 0) -> Text:
    marker = "> " if stats.key == ctx.selected else "  "
    indent = "  " * (depth - 1) + ctx.glyphs.tree if depth else ""
    name = short_path(stats.path or stats.kdev)
    room = width - len(marker) - len(indent)
    rivals = [w for w in ctx.names.get(name, []) if w != stats.wwid]
    if rivals and stats.wwid and not ctx.wide:
        # Same name, other identities: add the part of the WWID that differs.
        id_room = max(6, room - len(name) - 1)
        name = f"{name} {distinguish(stats.wwid, rivals, id_room, ctx.glyphs)}"
    return Text(marker + indent + distinguish(name, [], max(1, room), ctx.glyphs))


def _count_cell(index: int) -> Callable[[DeviceStats, _Ctx, int], Text]:
    def cell(stats: DeviceStats, ctx: _Ctx, width: int) -> Text:
        count = stats.counts[index]
        return Text(str(count), style=BUCKET_STYLES[index]) if count else Text("." if ctx.glyphs.ascii else "·", style="dim")
    return cell


def _err_cell(stats: DeviceStats, ctx: _Ctx, width: int) -> Text:
    count = stats.counts[1]
    return Text(str(count), style="red") if count else Text("." if ctx.glyphs.ascii else "·", style="dim")


def _state_cell(stats: DeviceStats, ctx: _Ctx, width: int) -> Text:
    summary = stats.state_summary
    return Text(distinguish(summary, [], width, ctx.glyphs), style="bold red" if stats.alarming else "cyan")


def _io(stats: DeviceStats):
    return stats.state.io if stats.state is not None else None


def _iops_cell(stats, ctx, width):
    io = _io(stats)
    return Text(human_rate(io.iops)) if io is not None else Text("")


def _bytes_cell(stats, ctx, width):
    io = _io(stats)
    return Text(human_bytes(io.bps)) if io is not None else Text("")


def _await_cell(stats, ctx, width):
    io = _io(stats)
    if io is None or io.await_ms is None:
        return Text("")
    return Text(format_ms(io.await_ms), style="yellow" if io.await_ms >= 100 else "")


def _util_cell(stats, ctx, width):
    io = _io(stats)
    return Text(f"{io.util * 100:.0f}%") if io is not None else Text("")


def _ioerr_cell(stats, ctx, width):
    state = stats.state
    if state is None or state.ioerr_delta is None:
        return Text("")
    return Text(f"+{state.ioerr_delta}", style="bold red") if state.ioerr_delta else Text("0", style="dim")


def _hosts_label(stats: DeviceStats) -> str:
    """The host of a device row; a shared LUN (one WWID) lists its hosts."""
    return ",".join(sorted(stats.hosts))


def _host_cell(stats, ctx, width):
    return Text(distinguish(_hosts_label(stats), [], width, ctx.glyphs))


def _wwid_cell(stats, ctx, width):
    return Text(distinguish(stats.wwid, ctx.wwids, width, ctx.glyphs), style="dim")


def _last_cell(stats, ctx, width):
    return Text(distinguish(stats.last_event_type, [], width, ctx.glyphs))


def _age_cell(stats, ctx, width):
    return Text(format_age((ctx.now - stats.last_seen).total_seconds()) if stats.last_seen else "")


def _trend_cell(stats, ctx, width):
    per_cell = 1 if width >= TREND_SLOTS else 2
    return Text(sparkline(stats.trend(ctx.now, per_cell=per_cell), ctx.glyphs), style="red")


def _names_cell(stats, ctx, width):
    earlier = [short_path(n) for n in stats.earlier_names]
    return Text(distinguish(", ".join(earlier), [], width, ctx.glyphs), style="dim")


def _device_columns(rows: list[DeviceRow], model: TopModel, inner: int) -> list[tuple[Column, int]]:
    """The columns that fit ``inner`` cells, in display order, with widths."""
    stats = [r.stats for r in rows]
    has_state = any(s.state_summary for s in stats)
    has_io = any(_io(s) is not None for s in stats)
    has_ioerr = any(s.state is not None and s.state.ioerr_delta is not None for s in stats)
    count_width = max([4] + [len(str(c)) for s in stats for c in s.counts])
    name_width = max([10] + [len(short_path(s.path or s.kdev)) + 4 + 2 * r.depth for s, r in zip(stats, rows)])
    state_width = max([5] + [len(s.state_summary) for s in stats])
    minutes = TREND_SLOTS * SLOT_SECONDS // 60
    host_width = max([4] + [len(_hosts_label(s)) for s in stats])
    candidates = [
        Column("Device", 0, min(name_width, 16), None, flex=3, max_width=min(name_width, 44)),
        Column("Host", 1, min(host_width, 10), _host_cell, flex=1, max_width=min(host_width, 30))
        if model.multi_host() else None,
        Column("State", 1, min(state_width, 18), _state_cell, flex=1, max_width=min(state_width, 30)) if has_state else None,
        Column("Earlier names", 1, 12, _names_cell, flex=2, max_width=40) if model.view.show_names else None,
        Column("err", 2, count_width, _err_cell, "right"),
        Column("IOPS", 3, 5, _iops_cell, "right") if has_io else None,
        Column("await", 3, 6, _await_cell, "right") if has_io else None,
        Column("Age", 5, 4, _age_cell, "right"),
        Column("Last event", 4, 12, _last_cell, flex=2, max_width=max([0] + [len(s.last_event_type) for s in stats])),
        Column("ioerr", 5, 5, _ioerr_cell, "right") if has_ioerr else None,
        Column("crit", 5, count_width, _count_cell(0), "right"),
        Column("warn", 6, count_width, _count_cell(2), "right"),
        Column("Mount", 6, 8, lambda s, c, w: Text(distinguish(s.mount_point, [], w, c.glyphs)), flex=1,
               max_width=min(30, max([0] + [len(s.mount_point) for s in stats]))),
        Column("B/s", 7, 6, _bytes_cell, "right") if has_io else None,
        Column("WWID", 7, 16, _wwid_cell, flex=2, max_width=min(40, max([len(s.wwid) for s in stats] + [0]))),
        Column("util", 8, 4, _util_cell, "right") if has_io else None,
        Column("Type", 9, 10, lambda s, c, w: Text(distinguish(s.blk_type, [], w, c.glyphs)), max_width=12),
        Column(f"err/{minutes}m", 9, TREND_SLOTS // 2, _trend_cell),
        Column("info", 9, count_width, _count_cell(3), "right"),
    ]
    order = [c for c in candidates if c is not None]
    # The essential columns (priority up to ESSENTIAL) go in at their
    # minimum and then widen toward their content; then each further column,
    # by priority, goes in at its minimum if it fits and widens at once.
    widths: dict[int, int] = {}
    used = -COLUMN_GAP

    def place(column: Column) -> bool:
        nonlocal used
        if used + column.width + COLUMN_GAP > inner:
            return False
        widths[id(column)] = column.width
        used += column.width + COLUMN_GAP
        return True

    def grow(column: Column) -> None:
        nonlocal used
        if column.flex and id(column) in widths:
            add = max(0, min(inner - used, column.max_width - widths[id(column)]))
            widths[id(column)] += add
            used += add

    by_priority = sorted(order, key=lambda c: c.priority)
    essential = [c for c in by_priority if c.priority <= ESSENTIAL]
    # The first column that does not fit ends the list: skipping it for a
    # narrower one further down would make columns come and go as the
    # width grows.
    rest = by_priority[len(essential):]
    placed_all = all([place(column) for column in essential])
    for column in essential:
        grow(column)
    if placed_all:
        for column in rest:
            if not place(column):
                break
            grow(column)
    chosen = [c for c in order if id(c) in widths]
    spare = inner - used
    trend = next((c for c in chosen if c.heading == f"err/{minutes}m"), None)
    if trend is not None and spare > 0:
        widths[id(trend)] += min(spare, TREND_SLOTS - trend.width)
    return [(c, widths[id(c)]) for c in chosen]


def device_panel(model: TopModel, now: _dt.datetime, width: int, max_rows: int | None = None,
                 rows: list[DeviceRow] | None = None, glyphs: Glyphs = UNICODE) -> Panel:
    """``rows``: ``model.device_rows()`` when the caller has it already."""
    rows = model.device_rows() if rows is None else rows
    title = f"Devices ({len(rows)}) · sort {model.view.sort.value}"
    if model.view.filter_text:
        title += f" · filter {model.view.filter_text!r}"
    if glyphs.ascii:
        title = title.replace("·", "-")
    if not rows:
        return Panel(Text("no device events", style="dim"), title=title, title_align="left", box=glyphs.box)
    shown, hidden = _window(rows, model.view.selected_key, max_rows)
    table = _device_table(shown, rows, model, now, width - PANEL_INNER, glyphs)
    subtitle = f"+{hidden} more" if hidden else None
    return Panel(table, title=title, title_align="left", subtitle=subtitle, subtitle_align="right", box=glyphs.box)


def _window(rows: list[DeviceRow], selected: str | None, max_rows: int | None):
    """The rows that fit, scrolled so the selected device stays visible."""
    if max_rows is None or len(rows) <= max_rows:
        return rows, 0
    max_rows = max(1, max_rows)
    keys = [r.stats.key for r in rows]
    index = keys.index(selected) if selected in keys else 0
    start = max(0, index - max_rows + 1)
    return rows[start : start + max_rows], len(rows) - max_rows


def _device_table(shown: list[DeviceRow], rows: list[DeviceRow], model: TopModel, now: _dt.datetime,
                  inner: int, glyphs: Glyphs) -> Table:
    columns = _device_columns(rows, model, inner)
    names: dict[str, list[str]] = {}
    for row in rows:
        names.setdefault(short_path(row.stats.path or row.stats.kdev), []).append(row.stats.wwid)
    wide = any(c.heading == "WWID" for c, _ in columns)
    ctx = _Ctx(now, glyphs, model.view.selected_key, wide, {k: v for k, v in names.items() if len(v) > 1},
               [r.stats.wwid for r in rows if r.stats.wwid])
    table = Table(box=None, expand=False, pad_edge=False, header_style="bold", show_edge=False, padding=(0, 1))
    for column, width in columns:
        table.add_column(column.heading, justify=column.justify, no_wrap=True, width=width,
                         overflow="crop" if glyphs.ascii else "ellipsis")
    for row in shown:
        stats = row.stats
        cells = [
            _name_cell(stats, ctx, width, row.depth) if column.cell is None else column.cell(stats, ctx, width)
            for column, width in columns
        ]
        style = SEVERITY_STYLES[stats.rank] if stats.rank <= Severity.Warning else ""
        if stats.key == model.view.selected_key:
            style = (style + " reverse").strip()
        table.add_row(*cells, style=style)
    return table


# -- events -----------------------------------------------------------------------


def events_panel(model: TopModel, now: _dt.datetime, width: int, max_rows: int | None,
                 glyphs: Glyphs = UNICODE, wrap: bool = False) -> Panel:
    """Newest first; ``max_rows`` None lists all. In the events focus the
    cursor row is highlighted and the list scrolls to keep it shown."""
    selected = model.devices.get(model.view.selected_key or "") or model.state_rows.get(model.view.selected_key or "")
    scope = short_path(selected.path or selected.kdev) if selected else "all devices"
    title = f"Recent events {'-' if glyphs.ascii else '·'} {scope}"
    events = model.visible_events()
    if not events:
        return Panel(Text("no events", style="dim"), title=title, title_align="left", box=glyphs.box)
    focused = model.view.focus == "events"
    cursor = min(model.view.event_cursor, len(events) - 1)
    start = 0
    if max_rows is not None:
        max_rows = max(1, max_rows)
        if focused:
            start = max(0, cursor - max_rows + 1)
        shown = events[start : start + max_rows]
    else:
        shown = events
    wide = width >= WIDE
    show_device = wide or selected is None
    show_host = model.multi_host(events)
    table = Table(box=None, expand=True, pad_edge=False, header_style="bold", show_edge=False)
    table.add_column("Time", no_wrap=True)
    overflow = "crop" if glyphs.ascii else "ellipsis"
    if show_host:
        table.add_column("Host", no_wrap=True, overflow=overflow, max_width=20 if wide else 10)
    table.add_column("Severity" if wide else "Sev", no_wrap=True)
    if show_device:
        table.add_column("Device", no_wrap=True, overflow=overflow, max_width=24 if wide else 10)
    table.add_column("Type", no_wrap=True, overflow=overflow, max_width=28 if wide else 20)
    if wide:
        table.add_column("Count", justify="right", no_wrap=True)
    table.add_column("Message", ratio=1, no_wrap=not wrap, overflow="fold" if wrap else overflow)
    for index, event in enumerate(shown, start):
        style = SEVERITY_STYLES[event.severity]
        if focused and index == cursor:
            style = (style + " reverse").strip()
        table.add_row(*_event_cells(event, now, wide, show_device, glyphs, show_host), style=style)
    subtitle = None
    if max_rows is not None and len(events) > len(shown):
        subtitle = f"{start + 1}-{start + len(shown)} of {len(events)}"
    return Panel(table, title=title, title_align="left", subtitle=subtitle, subtitle_align="right", box=glyphs.box)


def _event_cells(event: StorageEvent, now: _dt.datetime, wide: bool, show_device: bool, glyphs: Glyphs,
                 show_host: bool = False) -> list[str]:
    _, kdev, path = device_identity(event)
    message = event.msg or event.raw_msg
    count = f"{glyphs.times}{event.count}" if event.count > 1 else ""
    severity = event.severity.name if wide else SHORT_SEVERITY[event.severity]
    cells = [format_when(event_time(event), now)]
    if show_host:
        cells.append(event.hostname)
    cells.append(severity)
    if show_device:
        cells.append(short_path(path))
    cells.append(event.event_type)
    if wide:
        cells.append(count)
    elif count:
        message = f"{count} {message}"
    cells.append(message)
    return cells


# -- help and detail ---------------------------------------------------------------

HELP_KEYS = (
    ("?", "this help (any key closes it)"),
    ("q", "quit"),
    ("Tab", "move between the device list and the event list"),
    ("Up/Down, PgUp/PgDn, Home/End", "move in the focused list (scrolls)"),
    ("Enter", "on a device: list its events; on an event: the whole event"),
    ("Esc", "close a view, then show all devices and clear the filter"),
    ("f or /", "filter (a fresh prompt each time): device name, WWID, mount point, type or sub-system;"),
    ("", "the events are read again from the store with it, not from what is on screen"),
    ("s", "cycle the device sort: worst, recent, count, name"),
    ("n", "show the earlier names of each device (a WWID seen as sdb, then sdc)"),
    ("p", "pause (new events are held) / resume"),
)

STATE_LEGEND = (
    ("State", "md: degraded N/M, resync/recover/check P%; multipath: paths up/total; "
              "ro: filesystem read-only now (mountinfo ro/emergency_ro, or FS_REMOUNT_READ_ONLY since mount); "
              "fserr N: ext4 errors_count; shutdown: mountinfo or FS_SHUTDOWN since mount"),
    ("IOPS await B/s util", "from /proc/diskstats between two samples (await: mean ms per completed I/O)"),
    ("ioerr", "growth of the SCSI device's ioerr_cnt since the previous sample"),
    ("crit err warn info", "event occurrences since the start of the view, by severity"),
)


def help_panel(glyphs: Glyphs = UNICODE) -> Panel:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, text in HELP_KEYS:
        table.add_row(key, text)
    table.add_row("", "")
    for key, text in STATE_LEGEND:
        table.add_row(key, text)
    return Panel(table, title="Help", title_align="left", box=glyphs.box)


def detail_lines(model: TopModel, event: StorageEvent, now: _dt.datetime) -> list[Text]:
    """The whole event as lines: summary, raw line, root-cause chain, JSON."""
    info = event.cur_blk_info
    lines = [Text.assemble(("Event ", "bold"), event.event_type, "  ", (event.severity.name, SEVERITY_STYLES[event.severity]))]
    fields = [
        ("time", format_when(event.timestamp, now)),
        ("host", event.hostname),
        ("last", format_when(event.last_timestamp, now) if event.last_timestamp else ""),
        ("count", str(event.count) if event.count > 1 else ""),
        ("device", f"{event.kdev} {info.preferred_blk_path or info.blk_path if info else ''}".strip()),
        ("wwid", info.wwid if info else ""),
        ("mount", (info.mount_point or "") if info else ""),
        ("sub-system", event.sub_system),
        ("sources", ", ".join(event.sources)),
        ("event id", event.event_id),
    ]
    for key, value in fields:
        if value:
            lines.append(Text.assemble((f"  {key:<11}", "bold"), value))
    lines.append(Text.assemble(("  message    ", "bold"), event.msg))
    lines.append(Text("Raw line", style="bold"))
    lines.append(Text("  " + (event.raw_msg or "(none)")))
    lines.append(Text("Root cause", style="bold"))
    chain = model.root_cause_chain(event)
    if not chain:
        lines.append(Text("  none recorded: this event is not known to be caused by another"))
    for depth, cause in enumerate(chain, 1):
        prefix = "  " + "  " * (depth - 1) + "<- "
        if isinstance(cause, str):
            lines.append(Text(f"{prefix}{cause} (not in the store's history read by top)", style="dim"))
        else:
            when = format_when(event_time(cause), now)
            lines.append(Text(f"{prefix}{when} {cause.event_type} {cause.kdev}: {cause.msg}",
                              style=SEVERITY_STYLES[cause.severity]))
    lines.append(Text("JSON", style="bold"))
    lines += [Text("  " + line) for line in json.dumps(event.to_dict(), indent=2, ensure_ascii=False).splitlines()]
    return lines


def detail_panel(model: TopModel, event: StorageEvent, now: _dt.datetime, height: int | None,
                 glyphs: Glyphs = UNICODE) -> Panel:
    lines = detail_lines(model, event, now)
    subtitle = None
    if height is not None:
        room = max(1, height - 2)
        offset = max(0, min(model.view.detail_offset, len(lines) - room))
        # Kept clamped so Up works at once after scrolling past the end (the
        # key handler does not know the height).
        model.view.detail_offset = offset
        subtitle = f"line {offset + 1} of {len(lines)}"
        lines = lines[offset : offset + room]
    body = Text("\n").join(lines)
    body.no_wrap = True
    body.overflow = "crop" if glyphs.ascii else "ellipsis"
    return Panel(body, title="Event detail", title_align="left", subtitle=subtitle, subtitle_align="right", box=glyphs.box)


# -- footer -----------------------------------------------------------------------


def footer_line(model: TopModel, glyphs: Glyphs = UNICODE) -> Text:
    view = model.view
    if view.prompt is not None:
        return Text.assemble(("filter (device, WWID, mount, type; Enter applies, Esc cancels): ", "bold"), view.prompt,
                             (glyphs.cursor, "blink"))
    if view.help:
        text = "any key closes the help"
    elif view.detail_event_id is not None:
        text = f"Esc back  {glyphs.arrows} PgUp/PgDn scroll  q quit"
    else:
        focus = "events" if view.focus == "events" else "devices"
        text = f"q quit  ? help  {glyphs.arrows} {focus}  Tab pane  Enter open  f filter  s sort  p pause  n names"
    return Text(text, style="dim", no_wrap=True, overflow="crop")


# -- frames -----------------------------------------------------------------------


def live_frame(model: TopModel, now: _dt.datetime, width: int, height: int, glyphs: Glyphs = UNICODE) -> Layout:
    """The full-screen view: header, devices, events, footer; or help or an
    event's detail in place of the two panes."""
    body = max(2 * PANEL_CHROME, height - HEADER_LINES - FOOTER_LINES)
    layout = Layout(name="root")
    header = Layout(header_panel(model, now), name="header", size=HEADER_LINES)
    footer = Layout(footer_line(model, glyphs), name="footer", size=FOOTER_LINES)
    view = model.view
    detail = model.find_event(view.detail_event_id) if view.detail_event_id else None
    if view.help:
        layout.split_column(header, Layout(help_panel(glyphs), name="help"), footer)
        return layout
    if detail is not None:
        layout.split_column(header, Layout(detail_panel(model, detail, now, body, glyphs), name="detail"), footer)
        return layout
    rows = model.device_rows()
    # Devices take what they need up to half the body; events the rest.
    device_lines = min(PANEL_CHROME + max(1, len(rows)), max(PANEL_CHROME + 1, body // 2))
    event_lines = body - device_lines
    layout.split_column(
        header,
        Layout(device_panel(model, now, width, device_lines - PANEL_CHROME, rows, glyphs), name="devices", size=device_lines),
        Layout(events_panel(model, now, width, event_lines - PANEL_CHROME, glyphs), name="events"),
        footer,
    )
    return layout


def once_frame(model: TopModel, now: _dt.datetime, width: int, event_rows: int = ONCE_EVENT_ROWS,
               glyphs: Glyphs = UNICODE) -> Group:
    """One frame at natural height, every device, for scripts and pipes;
    messages wrap instead of being cut."""
    return Group(
        header_panel(model, now, glyphs),
        device_panel(model, now, width, glyphs=glyphs),
        events_panel(model, now, width, event_rows, glyphs, wrap=True),
    )
