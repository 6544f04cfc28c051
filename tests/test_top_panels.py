"""Golden renders of each ``prpt top`` panel at 80 and 160 columns, frozen clock.

Regenerate after an intended change with
``PERIPETY_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_top_panels.py``
and review the diff of tests/fixtures/top/.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from peripety.event import StorageEvent
from peripety.top import panels
from peripety.top.model import DaemonStatus, SortMode, TopModel

FIXTURES = Path(__file__).parent / "fixtures" / "top"
NOW = dt.datetime(2025, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
REGENERATE = os.environ.get("PERIPETY_REGEN_GOLDEN") == "1"
SDB_WWID = "naa.6001405f1d2c3b4a59876543210abcde"


def load_events() -> list[StorageEvent]:
    with open(FIXTURES / "events.jsonl", encoding="utf-8") as handle:
        return [StorageEvent.from_json(line) for line in handle]


def sample_model(**view) -> TopModel:
    daemon = DaemonStatus(True, pid=4242, sources=("kmsg", "journal", "bpf"), bpf_attached=("block_rq_error",))
    model = TopModel("stor1", "sqlite:/var/lib/peripety/events.db", daemon)
    model.ingest(load_events())
    for name, value in view.items():
        setattr(model.view, name, value)
    return model


def render(renderable, width: int, height: int | None = None) -> str:
    console = Console(width=width, height=height or 100, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def check_golden(name: str, text: str) -> None:
    path = FIXTURES / f"{name}.txt"
    if REGENERATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with PERIPETY_REGEN_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from {path}"


@pytest.mark.parametrize("width", [80, 160])
def test_header(width):
    check_golden(f"header-{width}", render(panels.header_panel(sample_model(), NOW), width))


@pytest.mark.parametrize("width", [80, 160])
def test_devices(width):
    text = render(panels.device_panel(sample_model(), NOW, width), width)
    check_golden(f"devices-{width}", text)
    # The LV stacked on the failing disk is listed right under it.
    lines = [line for line in text.splitlines() if "sdb" in line or "mapper/vg" in line]
    assert "sdb" in lines[0] and "└ mapper/vg" in lines[1]


@pytest.mark.parametrize("width", [80, 160])
def test_devices_selected_filtered_sorted_by_name(width):
    model = sample_model(sort=SortMode.NAME, selected_key=SDB_WWID, filter_text="sd")
    check_golden(f"devices-selected-{width}", render(panels.device_panel(model, NOW, width), width))


@pytest.mark.parametrize("width", [80, 160])
def test_events(width):
    check_golden(f"events-{width}", render(panels.events_panel(sample_model(), NOW, width, 8), width))


@pytest.mark.parametrize("width", [80, 160])
def test_events_of_selected_device(width):
    model = sample_model(selected_key=SDB_WWID)
    text = render(panels.events_panel(model, NOW, width, 20), width)
    check_golden(f"events-sdb-{width}", text)
    assert "nvme0n1" not in text and "mapper/vg" not in text


@pytest.mark.parametrize("width", [80, 160])
def test_footer_and_prompt(width):
    model = sample_model()
    help_line = render(panels.footer_line(model), width)
    model.view.prompt = "BLK_"
    prompt_line = render(panels.footer_line(model), width)
    check_golden(f"footer-{width}", help_line + prompt_line)


@pytest.mark.parametrize("width,height", [(80, 24), (160, 45)])
def test_full_frame_fits_terminal(width, height):
    text = render(panels.live_frame(sample_model(), NOW, width, height), width, height)
    check_golden(f"frame-{width}x{height}", text)
    lines = text.splitlines()
    assert len(lines) == height
    assert max(len(line) for line in lines) <= width
    assert lines[-1].startswith("q quit")


def test_frame_scrolls_to_keep_selected_device_visible():
    # 80x12 leaves room for 1 device row; the selection must stay on screen.
    model = sample_model(sort=SortMode.NAME)
    model.view.selected_key = model.device_rows()[-1].stats.key  # sdc, last by name
    text = render(panels.live_frame(model, NOW, 80, 12), 80, 12)
    assert "> sdc" in text
    assert "+4 more" in text
    assert "loop0" not in text.split("Recent events")[0]


def test_paused_header():
    model = sample_model(paused_at=NOW)
    model.offer(load_events()[:2])  # held, not counted
    text = render(panels.header_panel(model, NOW), 80)
    assert "PAUSED +2" in text


def test_once_frame_lists_every_device():
    text = render(panels.once_frame(sample_model(), NOW, 80), 80)
    check_golden("once-80", text)
    for device in ("sdb", "└ mapper/vg", "nvme0n1", "sdc", "loop0"):
        assert device in text


def test_sparkline_and_age_formats():
    assert panels.sparkline([0, 0, 0]) == "   "
    assert panels.sparkline([0, 1, 8]) == " ▁█"
    assert panels.sparkline([0.01, 4, 8]) == "▁▄█"
    assert [panels.format_age(s) for s in (0, 59, 60, 3599, 3600, 86400 * 3)] == ["0s", "59s", "1m", "59m", "1h", "3d"]
