"""Golden renders of each ``prpt top`` panel at 80 and 160 columns, frozen clock.

Regenerate after an intended change with
``PERIPETY_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_top_panels.py``
and review the diff of tests/fixtures/top/. Regeneration is refused when
CI=true: a CI run must compare, never rewrite what it compares against.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from peripety.event import StorageEvent
from peripety.top import panels
from peripety.top.fmt import ASCII
from peripety.top.model import DaemonStatus, SortMode, TopModel
from peripety.top.state import DeviceState, IoRate, MdState, MountState, MultipathState

FIXTURES = Path(__file__).parent / "fixtures" / "top"
NOW = dt.datetime(2025, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
REGENERATE = os.environ.get("PERIPETY_REGEN_GOLDEN") == "1"
if REGENERATE and os.environ.get("CI", "").lower() in ("true", "1", "yes"):
    raise RuntimeError("PERIPETY_REGEN_GOLDEN is refused under CI=true: golden files are compared in CI, never rewritten")
SDB_WWID = "naa.6001405f1d2c3b4a59876543210abcde"


def load_events() -> list[StorageEvent]:
    with open(FIXTURES / "events.jsonl", encoding="utf-8") as handle:
        return [StorageEvent.from_json(line) for line in handle]


def sample_states() -> dict[str, DeviceState]:
    """Live state as the sampler reports it: a busy failing disk, the LV on
    it remounted read-only, a degraded md array resyncing and a multipath
    map with a path down (the last two have no events)."""
    return {
        "sdb": DeviceState("sdb", io=IoRate(120.0, 35.5, 491520.0, 145408.0, 182.4, 0.97), ioerr_cnt=91, ioerr_delta=7),
        "sdc": DeviceState("sdc", io=IoRate(0.0, 0.0, 0.0, 0.0, None, 0.0), ioerr_cnt=0, ioerr_delta=0),
        "dm-0": DeviceState("dm-0", io=IoRate(0.0, 2.0, 0.0, 8192.0, 3.5, 0.01),
                            mount=MountState("253:0", "/srv/data", "ext4", True, "/dev/mapper/vg0-data"), ext4_errors=4),
        "md0": DeviceState("md0", io=IoRate(10.0, 0.0, 40960.0, 0.0, 0.8, 0.02),
                           md=MdState("raid1", 2, 1, "clean", "recover", 45.2)),
        "dm-3": DeviceState("dm-3", io=IoRate(4.0, 0.0, 16384.0, 0.0, 1.2, 0.01),
                            multipath=MultipathState("mpatha", {"sdd": "running", "sde": "offline"})),
        "loop5": DeviceState("loop5", io=IoRate(0.0, 0.0, 0.0, 0.0, None, 0.0)),
    }


def sample_model(**view) -> TopModel:
    daemon = DaemonStatus(True, pid=4242, sources=("kmsg", "journal", "bpf"), bpf_attached=("block_rq_error",),
                          store_ok=True, spool_depth=0)
    model = TopModel("stor1", "sqlite:/var/lib/peripety/events.db", daemon)
    model.ingest(load_events())
    model.update_state(sample_states())
    for name, value in view.items():
        setattr(model.view, name, value)
    return model


def render(renderable, width: int, height: int | None = None) -> str:
    console = Console(width=width, height=height or 100, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def check_golden(name: str, text: str) -> None:
    path = FIXTURES / f"{name}.txt"
    if REGENERATE:  # never under CI: refused at import above
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
    assert "+6 more" in text
    assert "loop0" not in text.split("Recent events")[0]


def test_paused_header():
    model = sample_model(paused_at=NOW)
    model.offer(load_events()[:2])  # held, not counted
    text = render(panels.header_panel(model, NOW), 80)
    assert "PAUSED +2" in text


def test_once_frame_lists_every_device():
    text = render(panels.once_frame(sample_model(), NOW, 80), 80)
    check_golden("once-80", text)
    for device in ("sdb", "└ mapper/vg", "nvme0n1", "sdc", "loop0", "md0", "mapper/mpatha"):
        assert device in text


@pytest.mark.parametrize("width", [80, 160])
def test_state_columns_show_live_state_next_to_counts(width):
    text = render(panels.device_panel(sample_model(), NOW, width), width)
    check_golden(f"devices-state-{width}", text)
    rows = {line.split()[1] if line.split()[1] != "└" else line.split()[2]: line for line in text.splitlines()[2:-1]}
    assert "paths 1/2" in rows["mapper/mpatha"]  # a map with a path down, no events
    assert "degraded" in rows["md0"] and "45%" in rows["md0"]
    assert "ro fserr 4" in rows["mapper/vg0-data"]
    assert "156" in rows["sdb"] and "182ms" in rows["sdb"]  # IOPS and await from diskstats
    assert "loop5" not in text  # idle, no events: no row
    if width >= 160:
        assert "+7" in rows["sdb"]  # ioerr_cnt growth
        assert "FS_REMOUNT_READ_ONLY" in rows["mapper/vg0-data"]  # not cut when there is room


def test_columns_fit_every_width_and_drop_by_priority():
    model = sample_model()
    headings = []
    for width in range(50, 260, 7):
        text = render(panels.device_panel(model, NOW, width), width)
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width
        headings.append(set(lines[1].strip("│ ").split()))
        assert {"Device", "State", "err"} <= headings[-1]
    for narrower, wider in zip(headings, headings[1:]):
        assert narrower <= wider  # a wider screen never loses a column
    assert "WWID" not in headings[0] and {"WWID", "Type", "info"} <= headings[-1]


def test_same_name_identities_keep_what_tells_them_apart():
    """30 loop0 rows, one per WWID: each shows the part of its WWID that differs."""
    events = []
    for n in range(30):
        wwid = f"loop:7:0:{4000 + n}:/var/tmp/pytest-of-root/pytest-{n}/test_x/disk.img"
        line = json.dumps({"hostname": "h", "severity": "Error", "sub_system": "block", "event_type": "BLK_IO_ERROR",
                           "timestamp": "2025-11-26T11:59:00+00:00", "event_id": f"00000000-0000-4000-8000-{n:012d}",
                           "kdev": "loop0", "cur_blk_info": {"wwid": wwid, "blk_path": "/dev/loop0",
                                                             "preferred_blk_path": "/dev/loop0"},
                           "msg": "I/O error", "raw_msg": "I/O error"})
        events.append(StorageEvent.from_json(line))
    model = TopModel("h", "s")
    model.ingest(events)
    for width in (80, 160):
        text = render(panels.device_panel(model, NOW, width), width)
        rows = [line for line in text.splitlines() if "loop0" in line]
        assert len(rows) == 30
        assert len(set(rows)) == 30  # every identity told apart, even where the WWID is cut
        assert any("29:/var" in row for row in rows)


def test_earlier_names_on_demand():
    model = sample_model()
    renamed = load_events()[-1]
    data = renamed.to_dict()
    data["event_id"] = "00000000-0000-4000-8000-0000000000ff"
    data["kdev"] = "sdq"
    data["cur_blk_info"]["blk_path"] = data["cur_blk_info"]["preferred_blk_path"] = "/dev/sdq"
    data["timestamp"] = "2025-11-26T11:59:59+00:00"
    model.ingest([StorageEvent.from_dict(data)])
    stats = model.devices[data["cur_blk_info"]["wwid"]]
    assert stats.path == "/dev/sdq" and stats.earlier_names == [renamed.cur_blk_info.preferred_blk_path]
    assert "Earlier names" not in render(panels.device_panel(model, NOW, 160), 160)
    model.view.show_names = True
    text = render(panels.device_panel(model, NOW, 160), 160)
    assert "Earlier names" in text
    assert [line for line in text.splitlines() if " sdq " in line and short(renamed) in line]


def short(event: StorageEvent) -> str:
    return event.cur_blk_info.preferred_blk_path.removeprefix("/dev/")


def test_blk_info_events_stay_out_of_the_event_pane():
    model = sample_model()
    info = load_events()[0].to_dict()
    info.update(event_type="PERIPETY_BLK_INFO", event_id="00000000-0000-4000-8000-0000000000bb",
                msg="block device info", timestamp="2025-11-26T11:59:59+00:00")
    before = list(model.totals)
    model.ingest([StorageEvent.from_dict(info)])
    assert model.totals == before
    assert "PERIPETY_BLK_INFO" not in render(panels.events_panel(model, NOW, 160, 20), 160)


def test_times_carry_the_date_when_not_today():
    model = sample_model()
    text = render(panels.events_panel(model, NOW + dt.timedelta(days=1), 160, 20), 160)
    assert "Nov 26 11:59:58" in text
    assert "2025-11-26 11:59:58" in render(panels.events_panel(model, NOW + dt.timedelta(days=400), 160, 20), 160)


@pytest.mark.parametrize("width", [80, 160])
def test_ascii_frame_has_no_non_ascii_character(width):
    text = render(panels.once_frame(sample_model(), NOW, width, glyphs=ASCII), width)
    check_golden(f"once-ascii-{width}", text)
    assert text.isascii()
    assert "+- Devices (7) - sort worst" in text and "`-mapper/vg0-data" in text


@pytest.mark.parametrize("width", [80, 160])
def test_help_screen(width):
    model = sample_model(help=True)
    text = render(panels.live_frame(model, NOW, width, 30), width, 30)
    check_golden(f"help-{width}", text)
    assert "Help" in text and "f or /" in text and "paths up/total" in text


@pytest.mark.parametrize("width", [80, 160])
def test_event_detail_view_with_raw_line_and_root_cause_chain(width):
    model = sample_model()
    remount = next(e for e in model.recent if e.event_type == "FS_REMOUNT_READ_ONLY")
    model.view.detail_event_id = remount.event_id
    text = render(panels.live_frame(model, NOW, width, 60), width, 60)
    check_golden(f"detail-{width}", text)
    assert "Raw line" in text and remount.raw_msg in text
    assert "Root cause" in text and "<- " in text
    cause = model.by_id[remount.root_cause_event_id]
    assert cause.event_type in text.split("Root cause")[1].split("JSON")[0]
    assert f'"event_id": "{remount.event_id}"' in text  # the whole event as JSON follows


def test_header_shows_store_failure_spool_and_untrusted_entries():
    model = sample_model()
    model.daemon = DaemonStatus(True, pid=1, sources=("kmsg",), store_ok=False, store_error="journal socket refused",
                                spool_depth=12)
    model.untrusted_skipped = 3
    text = render(panels.header_panel(model, NOW), 160)
    assert "STORE FAILING: journal socket refused" in text and "spooled 12" in text
    assert "untrusted skipped 3" in text


def test_sparkline_and_age_formats():
    assert panels.sparkline([0, 0, 0]) == "   "
    assert panels.sparkline([0, 1, 8]) == " ▁█"
    assert panels.sparkline([0.01, 4, 8]) == "▁▄█"
    assert [panels.format_age(s) for s in (0, 59, 60, 3599, 3600, 86400 * 3)] == ["0s", "59s", "1m", "59m", "1h", "3d"]
