"""End to end: ``prpt top`` in a real terminal (tmux, 160x45) watching the
real peripetyd while a faulty loop device returns genuine read errors.

The kernel rate-limits block error lines (10 per 5 s across all devices), so
errors are caused again on fresh sectors until the screen shows them. Other
tests may be writing events on this machine at the same time: every check
looks at this test's own devices, never at totals or "Devices (N)".
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.harness.daemon import PRPT, DaemonProcess, Retrigger, since_now
from tests.harness.tmux import TmuxError, TmuxTerminal, assert_quits_cleanly

pytestmark = [
    pytest.mark.root,
    pytest.mark.usefixtures("journald", "udevd"),
]

# Waiting longer than the kernel's 5 s rate-limit window before causing
# another error guarantees the next line is printed.
ATTEMPT_SECONDS = 5.5
RETRY_TIMEOUT = 45.0

# Device columns come and go with the width; cells are read under their headings.
RIGHT_ALIGNED = {"err", "crit", "warn", "info", "IOPS", "await", "Age", "ioerr", "B/s", "util"}
# An event row: "│ 12:34:56  Error  loop3  BLK_IO_ERROR  [×n]  I/O error on loop3 at sector 2048 (READ)"
EVENT_ROW = re.compile(
    r"^│ \d\d:\d\d:\d\d\s+(?P<severity>\w+)\s+(?P<device>\S+)\s+(?P<type>[A-Z][A-Z0-9_]+)\s+(?P<rest>.*)│$"
)


@pytest.fixture
def daemon(tmp_path):
    proc = DaemonProcess(tmp_path / "daemon", store="journal").start()
    yield proc
    proc.stop()


# -- reading the screen -----------------------------------------------------------


def sections(screen: str) -> tuple[list[str], list[str], list[str]]:
    """(header, device panel, events panel) lines of a complete frame."""
    lines = screen.rstrip("\n").splitlines()
    devices_at = next(i for i, line in enumerate(lines) if line.startswith("╭─ Devices ("))
    events_at = next(i for i, line in enumerate(lines) if line.startswith("╭─ Recent events · "))
    return lines[:devices_at], lines[devices_at:events_at], lines[events_at:-1]


def is_complete(screen: str) -> bool:
    """A whole frame (footer drawn): the screen may be read mid-redraw."""
    lines = screen.rstrip("\n").splitlines()
    titles = [line for line in lines if line.startswith("╭─ ")]
    return (bool(lines) and lines[-1].startswith("q quit")
            and any(t.startswith("╭─ Devices (") for t in titles)
            and any(t.startswith("╭─ Recent events · ") for t in titles))


def row_cells(heading: str, line: str) -> dict[str, str]:
    """A device row's cells by column heading: a left-aligned cell starts
    under its heading, a right-aligned one ends under it."""
    spans = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+(?: \S+)*", heading.strip("│"))]
    cells = {}
    for index, (title, start, end) in enumerate(spans):
        start, end = start + 1, end + 1  # the stripped border
        if title in RIGHT_ALIGNED:
            words = line[:end].split()
            cells[title] = words[-1] if line[end - 1] != " " else ""
        else:
            stop = spans[index + 1][1] + 1 if index + 1 < len(spans) else len(line) - 1
            cells[title] = line[start:stop].strip()
    return cells


def device_row(screen: str, name: str) -> tuple[bool, int] | None:
    """(selected, error count) of the row for kernel device ``name``, if shown."""
    row = re.compile(rf"^│ (?P<mark>[> ]) (?:\s*└ )?{re.escape(name)}\s")
    panel = sections(screen)[1]
    for line in panel:
        match = row.match(line)
        if match:
            cells = row_cells(panel[1], line)
            crit, err = (0 if cells.get(c, "·") in ("·", "") else int(cells[c]) for c in ("crit", "err"))
            return match["mark"] == ">", crit + err
    return None


def header_text(screen: str) -> str:
    return "\n".join(sections(screen)[0])


def event_rows(screen: str) -> list[re.Match]:
    return [m for m in map(EVENT_ROW.match, sections(screen)[2]) if m]


def shown_sectors(screen: str, name: str) -> set[int]:
    """Sectors of the read errors on ``name`` listed in the events panel."""
    sector = re.compile(rf"on {re.escape(name)} at sector (\d+)")
    return {int(s) for m in event_rows(screen) if m["device"] == name for s in sector.findall(m["rest"])}


def events_title(screen: str) -> str:
    return sections(screen)[2][0]


def wait_retrying(term: TmuxTerminal, condition, trigger, timeout: float = RETRY_TIMEOUT) -> str:
    """Cause an error, wait for ``condition`` on the screen; again on a fresh
    sector once the kernel's rate-limit window has passed."""
    deadline = time.monotonic() + timeout
    while True:
        trigger()
        try:
            return term.wait_for(condition, timeout=min(ATTEMPT_SECONDS, max(0.5, deadline - time.monotonic())))
        except TmuxError:
            if time.monotonic() >= deadline:
                raise


# -- the test ---------------------------------------------------------------------


def test_top_shows_a_failing_device_live_and_drills_into_it(daemon, faulty_disk, faulty_disk_factory):
    disk, other = faulty_disk, faulty_disk_factory()
    status = json.loads(daemon.status_file.read_text())
    command = [PRPT, "top", "--store", "journal", "--since", since_now(), "--status-file", str(daemon.status_file)]
    with TmuxTerminal(command, width=160, height=45) as term:
        screen = term.wait_for(is_complete)
        lines = screen.splitlines()
        assert lines[0].startswith("prpt top") and lines[44].startswith("q quit")  # all 45 rows
        assert "store ok" in header_text(screen) or "STORE" not in header_text(screen)
        assert term.pane_flag("alternate_on") == "1"
        header = sections(screen)[0]
        assert f"daemon {' '.join(status['sources'])} (pid {daemon.proc.pid})" in header[1]
        assert "kmsg" in status["sources"]
        # Before any fault, neither device shows an error (attaching one is a routine
        # BLK_MESSAGE event, so its row may already be there, with no count).
        assert device_row(screen, disk.name) in (None, (False, 0))
        assert device_row(screen, other.name) in (None, (False, 0))

        # The failing device appears with its error, as soon as it happens.
        trigger = Retrigger(disk)
        triggered_at: dict[int, float] = {}
        appeared: list[float] = []

        def timed_trigger():
            start = time.monotonic()
            trigger()
            triggered_at[trigger.sectors[-1]] = start

        def row_shown(screen: str) -> bool:
            if not (is_complete(screen) and device_row(screen, disk.name) and shown_sectors(screen, disk.name)):
                return False
            if not appeared:
                appeared.append(time.monotonic())
            return True

        screen = wait_retrying(term, row_shown, timed_trigger)
        first_sector = min(shown_sectors(screen, disk.name))
        assert first_sector in triggered_at
        selected, errors = device_row(screen, disk.name)
        assert not selected and errors >= 1
        panel = sections(screen)[1]
        row = next(line for line in panel if re.match(rf"^│   {re.escape(disk.name)}\s", line))
        assert row_cells(panel[1], row)["Last event"] == "BLK_IO_ERROR"
        first_read = min(triggered_at.values())
        print(f"\ndevice row on screen {appeared[0] - first_read:.3f}s after the first failing read "
              f"({appeared[0] - triggered_at[first_sector]:.3f}s after the read whose error is shown; "
              f"{len(triggered_at)} read(s) caused)")

        # More errors: the count and the recent events follow.
        before = shown_sectors(screen, disk.name)

        def more_shown(screen: str) -> bool:
            if not is_complete(screen) or not device_row(screen, disk.name):
                return False
            return device_row(screen, disk.name)[1] > errors and shown_sectors(screen, disk.name) > before

        screen = wait_retrying(term, more_shown, timed_trigger)
        assert shown_sectors(screen, disk.name) <= set(trigger.sectors)

        # A second failing device, so that drilling in has something to hide.
        other_trigger = Retrigger(other)
        screen = wait_retrying(
            term, lambda s: is_complete(s) and bool(device_row(s, other.name) and shown_sectors(s, other.name)),
            other_trigger,
        )
        assert events_title(screen).startswith("╭─ Recent events · all devices")

        # Drill in: move the selection down to the failing disk.
        for _ in range(len(sections(screen)[1])):
            if device_row(screen, disk.name)[0]:
                break
            term.send_keys("Down")
            screen = term.wait_for(lambda s, prev=screen: is_complete(s) and _selection_moved(s, prev))
        assert device_row(screen, disk.name)[0], f"{disk.name} never selected:\n{screen}"
        drilled = f"╭─ Recent events · {disk.name} "
        screen = term.wait_for(lambda s: is_complete(s) and events_title(s).startswith(drilled))
        rows = event_rows(screen)
        assert len(rows) >= 2
        assert {m["device"] for m in rows} == {disk.name}
        types = {m["type"] for m in rows}
        assert "BLK_IO_ERROR" in types and types <= {"BLK_IO_ERROR", "BLK_MESSAGE"}, types
        assert other.name not in "\n".join(sections(screen)[2])

        # Esc shows all devices' events again.
        term.send_keys("Escape")
        screen = term.wait_for(lambda s: is_complete(s) and events_title(s).startswith("╭─ Recent events · all "))
        assert not device_row(screen, disk.name)[0]

        assert_quits_cleanly(term)


def _selected_device(screen: str) -> str | None:
    for line in sections(screen)[1]:
        if line.startswith("│ > "):
            return line[4:].lstrip(" └").split()[0]
    return None


def _selection_moved(screen: str, previous: str) -> bool:
    return _selected_device(screen) not in (None, _selected_device(previous))
