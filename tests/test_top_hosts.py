"""``prpt top`` over events of more than one host: a WWID is one device row
whichever hosts saw it (a shared LUN is one disk), a device without a WWID
is a row per host (sdb there is not sdb here, and gets none of this host's
live state), and the event and device lists show the host whenever the
events span hosts, always for journal files.

The model and panels are tested with a frozen clock; the command itself on
real journal files: a private journald's entries received by Debian's
systemd-journal-remote, one host's as written and the other's rewritten as
another machine's (as tests/test_fleet_journals.py makes them)."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import uuid

import pytest
from rich.console import Console

from peripety.event import Severity, local_hostname
from peripety.stores import open_store
from peripety.top import panels
from peripety.top.fmt import ASCII
from peripety.top.model import TopModel
from peripety.top.state import DeviceState, IoRate
from tests.harness import journal_remote
from tests.harness.daemon import PRPT
from tests.harness.senders import comm_of_this_process
from tests.harness.services import ensure_journald, private_journald
from tests.stores_support import full_event, namespace_name

NOW = dt.datetime(2025, 11, 26, 12, 0, 0, tzinfo=dt.timezone.utc)
HERE, FAR = "stor1", "stor2"


def event(host, kdev, wwid, event_type="BLK_IO_ERROR", severity=Severity.Error, count=1, minutes=1):
    return full_event(f"{host}-{kdev}", event_type=event_type, sub_system="block", severity=severity, kdev=kdev,
                      wwid=wwid, hostname=host, at=NOW - dt.timedelta(minutes=minutes), count=count,
                      last_timestamp=None, root_cause_event_id=None)


def two_hosts() -> list:
    return [
        event(HERE, "sdb", "naa.shared", count=1, minutes=4),
        event(FAR, "sdc", "naa.shared", count=4, minutes=3),  # the same LUN, another name there
        event(HERE, "loop7", "", "FS_ERROR", minutes=2),
        event(FAR, "loop7", "", "FS_ERROR", Severity.Critical, minutes=1),
    ]


def render(renderable, width: int) -> str:
    console = Console(width=width, height=100, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def rows_by_key(model: TopModel) -> dict:
    return {row.stats.key: row.stats for row in model.device_rows()}


def test_a_wwid_is_one_row_across_hosts_a_kernel_name_is_per_host():
    model = TopModel(HERE, "journal")
    model.ingest(two_hosts())
    rows = rows_by_key(model)
    assert sorted(rows) == sorted(["loop7", f"{FAR}:loop7", "naa.shared"])
    shared = rows["naa.shared"]
    assert shared.hosts == {HERE, FAR}
    assert shared.errors == 5  # both hosts' failures of the one disk
    assert set(shared.names) == {"/dev/sdb", "/dev/sdc"}
    assert rows["loop7"].hosts == {HERE} and rows[f"{FAR}:loop7"].hosts == {FAR}
    assert rows[f"{FAR}:loop7"].worst == Severity.Critical and rows["loop7"].worst == Severity.Error
    data = model.to_dict(NOW)
    assert data["hosts"] == [HERE, FAR]
    assert {d["key"]: d["hosts"] for d in data["devices"]} == {
        "naa.shared": [HERE, FAR], "loop7": [HERE], f"{FAR}:loop7": [FAR]}


def test_another_hosts_device_gets_none_of_this_hosts_live_state():
    model = TopModel(HERE, "journal")
    model.ingest(two_hosts())
    model.update_state({"loop7": DeviceState("loop7", io=IoRate(5.0, 0.0, 20480.0, 0.0, 1.0, 0.1))})
    rows = rows_by_key(model)
    assert rows["loop7"].state is not None and rows["loop7"].state.io.iops == 5.0
    assert rows[f"{FAR}:loop7"].state is None
    assert rows[f"{FAR}:loop7"].kernel_name == ""


def test_host_columns_appear_when_the_events_span_hosts():
    one = TopModel(HERE, "journal")
    one.ingest([e for e in two_hosts() if e.hostname == HERE])
    for width in (80, 160):
        text = render(panels.once_frame(one, NOW, width, glyphs=ASCII), width)
        assert "Host" not in text  # one host, read live: nothing to tell apart
    both = TopModel(HERE, "journal")
    both.ingest(two_hosts())
    for width in (80, 160):
        events = render(panels.events_panel(both, NOW, width, None, ASCII), width).splitlines()
        assert events[1].split()[1:4] == ["Time", "Host", "Sev" if width < 120 else "Severity"]
        assert [line.split()[2] for line in events[2:-1]] == [FAR, HERE, FAR, HERE]  # newest first
        devices = render(panels.device_panel(both, NOW, width, glyphs=ASCII), width)
        assert "Host" in devices.splitlines()[1]
        assert any(f"{HERE},{FAR}" in line for line in devices.splitlines())  # the shared LUN
    # A device's own events: still from two hosts, still a Host column.
    both.view.selected_key = "naa.shared"
    text = render(panels.events_panel(both, NOW, 160, None, ASCII), 160)
    assert text.splitlines()[1].split()[1:3] == ["Time", "Host"]


def test_journal_files_always_show_the_host():
    model = TopModel(HERE, "journal files")
    model.show_hosts = True
    model.ingest([e for e in two_hosts() if e.hostname == FAR])
    text = render(panels.events_panel(model, NOW, 80, None, ASCII), 80)
    assert text.splitlines()[1].split()[1:3] == ["Time", "Host"]
    assert all(line.split()[2] == FAR for line in text.splitlines()[2:-1])


def test_filter_text_finds_a_hosts_devices_and_events():
    model = TopModel(HERE, "journal")
    model.ingest(two_hosts())
    model.view.filter_text = FAR
    assert sorted(r.stats.key for r in model.device_rows()) == sorted([f"{FAR}:loop7", "naa.shared"])
    assert {e.hostname for e in model.visible_events()} == {FAR}


# -- the command on real journal files ---------------------------------------------


@pytest.fixture(scope="module")
def two_host_journals(tmp_path_factory):
    if not journal_remote.available():
        pytest.skip("apt-get install systemd-journal-remote (scripts/setup.sh does)")
    ensure_journald()
    directory = tmp_path_factory.mktemp("remote")
    host = local_hostname()
    start = dt.datetime.now().astimezone() - dt.timedelta(minutes=5)
    far = f"far-{uuid.uuid4().hex[:6]}"
    mine = [full_event("mine-shared", event_type="BLK_IO_ERROR", sub_system="block", kdev="sdb", wwid="naa.shared",
                       hostname=host, at=start, count=2, last_timestamp=None),
            full_event("mine-loop", kdev="loop7", wwid="", hostname=host, at=start + dt.timedelta(seconds=1),
                       count=1, last_timestamp=None)]
    theirs = [full_event("far-shared", event_type="BLK_IO_ERROR", sub_system="block", kdev="sdc", wwid="naa.shared",
                         hostname=far, at=start + dt.timedelta(seconds=2), count=3, last_timestamp=None),
              full_event("far-loop", kdev="loop7", wwid="", hostname=far, at=start + dt.timedelta(seconds=3),
                         severity=Severity.Critical, count=1, last_timestamp=None)]
    with private_journald(namespace_name(f"tophosts{uuid.uuid4().hex[:6]}")) as ns:
        with comm_of_this_process("peripetyd"):
            store = open_store(f"journal:{ns}", write=True)
            for e in mine + theirs:
                store.append(e)
            store.sync()
            store.close()
        # This host: journalctl's export piped into journal-remote.
        journal_remote.receive_by_pipe(directory / "local.journal", f"--namespace={ns}", "IS_PERIPETY=TRUE",
                                       *(f"EVENT_ID={e.event_id}" for e in mine))
        # The far host: the same kind of entries, as that machine's journald wrote them.
        entries = journal_remote.parse_export(journal_remote.export(
            f"--namespace={ns}", "IS_PERIPETY=TRUE", *(f"EVENT_ID={e.event_id}" for e in theirs)))
        assert len(entries) == 2
        data = journal_remote.format_export(journal_remote.as_other_host(entries, far, uuid.uuid4().hex,
                                                                         uuid.uuid4().hex))
        subprocess.run([journal_remote.JOURNAL_REMOTE, "-o", str(directory / "remote-far.journal"), "-"],
                       input=data, check=True, capture_output=True, timeout=60)
    return directory, host, far


def prpt_top(*args) -> subprocess.CompletedProcess:
    proc = subprocess.run([PRPT, "top", "--once", *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "160", "LANG": "C"})
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.root
def test_top_on_two_hosts_journal_files(two_host_journals):
    directory, host, far = two_host_journals
    model = json.loads(prpt_top("-D", str(directory), "-J").stdout)
    assert model["hosts"] == sorted([host, far])
    rows = {d["key"]: d for d in model["devices"]}
    assert sorted(rows) == sorted(["naa.shared", "loop7", f"{far}:loop7"])
    assert rows["naa.shared"]["hosts"] == sorted([host, far])
    assert rows["naa.shared"]["counts"]["err"] == 5  # 2 here + 3 there: one disk
    assert rows["loop7"]["hosts"] == [host] and rows[f"{far}:loop7"]["hosts"] == [far]
    assert rows[f"{far}:loop7"]["worst"] == "Critical"
    assert all(d["state"] is None for d in model["devices"])

    text = prpt_top("-D", str(directory), "--width", "160").stdout.splitlines()
    heading = next(i for i, line in enumerate(text) if "Recent events" in line) + 1
    assert text[heading].split()[1:3] == ["Time", "Host"]
    event_hosts = [line.split()[2] for line in text[heading + 1:] if line.startswith("|") and "ERROR" in line]
    assert sorted(event_hosts) == sorted([host, host, far, far])
    assert any(f"{min(host, far)},{max(host, far)}" in line for line in text)  # the shared LUN's Host cell

    # One host of the directory: journal files still name it.
    only = prpt_top("-D", str(directory), "--host", far, "--width", "160").stdout.splitlines()
    heading = next(i for i, line in enumerate(only) if "Recent events" in line) + 1
    assert only[heading].split()[1:3] == ["Time", "Host"]
    assert {line.split()[2] for line in only[heading + 1:] if line.startswith("|") and "ERROR" in line} == {far}
