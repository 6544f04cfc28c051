"""``prpt summary`` against real stores (SQLite, a private journald): every
row agrees with the events the store holds, as ``prpt query`` prints them."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from peripety.cli import main
from peripety.cli.summary import render_table, summarize
from peripety.event import Severity, local_hostname
from peripety.stores import open_store
from tests.harness.daemon import PRPT
from tests.harness.senders import comm_of_this_process
from tests.harness.services import ensure_journald, private_journald
from tests.stores_support import full_event, namespace_name

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
_seq = itertools.count()


def fleet_events(hostnames=("db01", "db02")):
    """Storms (count > 1 with a last time), single events, several types and
    severities per device, a device without WWID, and the same WWID on two
    hosts (a shared LUN): each a row of its own."""
    first, second = hostnames[0], hostnames[-1]
    at = lambda minutes: T0 + dt.timedelta(minutes=minutes)  # noqa: E731
    return [
        full_event("s1", event_type="BLK_IO_ERROR", sub_system="block", kdev="sdb", wwid="naa.600a", at=at(0),
                   count=250, last_timestamp=at(2), hostname=first),
        full_event("s2", event_type="BLK_IO_ERROR", sub_system="block", kdev="sdb", wwid="naa.600a", at=at(5),
                   count=1, last_timestamp=None, severity=Severity.Warning, hostname=first),
        full_event("f1", event_type="FS_REMOUNT_READ_ONLY", kdev="sdb1", wwid="naa.600a-part1", owners=["naa.600a"], at=at(3),
                   count=1, last_timestamp=None, severity=Severity.Critical, hostname=first),
        full_event("f2", event_type="FS_ERROR", kdev="sdb1", wwid="naa.600a-part1", owners=["naa.600a"], at=at(1), count=4,
                   last_timestamp=at(4), hostname=first),
        full_event("n1", event_type="FS_ERROR", kdev="loop7", wwid="", at=at(6), count=1, last_timestamp=None,
                   severity=Severity.Notice, hostname=first),
        full_event("r1", event_type="BLK_IO_ERROR", sub_system="block", kdev="sdc", wwid="naa.600a", at=at(7),
                   count=3, last_timestamp=at(8), hostname=second),
    ]


def expected_rows(query_jsonl: str) -> dict:
    """The summary computed straight from ``prpt query --jsonl``'s events."""
    rows: dict = {}
    severity = {s.name: int(s) for s in Severity}
    for line in query_jsonl.splitlines():
        e = json.loads(line)
        wwid = (e["cur_blk_info"] or {}).get("wwid") or ""
        key = (e["hostname"], wwid or f"kdev:{e['kdev']}", e["event_type"])
        first = dt.datetime.fromisoformat(e["timestamp"])
        last = dt.datetime.fromisoformat(e["last_timestamp"] or e["timestamp"])
        row = rows.setdefault(key, {"count": 0, "events": 0, "worst": 99, "first": first, "last": last})
        row["count"] += e["count"]
        row["events"] += 1
        row["worst"] = min(row["worst"], severity[e["severity"]])
        row["first"], row["last"] = min(row["first"], first), max(row["last"], last)
    return rows


def summary_rows(summary_jsonl: str) -> dict:
    rows = {}
    for line in summary_jsonl.splitlines():
        r = json.loads(line)
        key = (r["hostname"], r["wwid"] or f"kdev:{r['kdev']}", r["event_type"])
        assert key not in rows, f"two rows for {key}"
        rows[key] = {"count": r["count"], "events": r["events"], "worst": int(Severity.parse(r["worst_severity"])),
                     "first": dt.datetime.fromisoformat(r["first_seen"]),
                     "last": dt.datetime.fromisoformat(r["last_seen"])}
    return rows


def prpt(*args) -> str:
    proc = subprocess.run([PRPT, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_summary_matches_query(source: list[str], *filters: str) -> dict:
    query = prpt("query", *source, "--jsonl", *filters)
    summary = prpt("summary", *source, "--jsonl", "--no-resolve", *filters)
    expected = expected_rows(query)
    assert summary_rows(summary) == expected
    return expected


@pytest.fixture
def sqlite_spec(tmp_path):
    spec = f"sqlite:{tmp_path}/events.db"
    store = open_store(spec, write=True)
    for event in fleet_events():
        store.append(event)
    store.close()
    return spec


def test_summary_of_sqlite_matches_its_events(sqlite_spec):
    source = ["--store", sqlite_spec]
    rows = assert_summary_matches_query(source)
    assert len(rows) == 5  # the shared WWID on db02 is a row of its own
    assert rows[("db01", "naa.600a", "BLK_IO_ERROR")]["count"] == 251  # a storm counts all it stands for
    # Every filter reaches the summary as it reaches the query.
    assert len(assert_summary_matches_query(source, "--severity", "error")) == 4
    assert set(assert_summary_matches_query(source, "--host", "db02")) == {("db02", "naa.600a", "BLK_IO_ERROR")}
    assert len(assert_summary_matches_query(source, "--event-type", "fs_error", "--sub-system", "ext4")) == 2
    assert len(assert_summary_matches_query(source, "--blk", "naa.600a")) == 4
    assert len(assert_summary_matches_query(source, "--since", "2026-11-20T10:04:00Z",
                                            "--until", "2026-11-20T10:06:30Z")) == 2
    assert prpt("summary", "--store", sqlite_spec, "--jsonl", "--host", "nowhere") == ""


@pytest.mark.root
def test_summary_of_a_real_journal_matches_its_events():
    ensure_journald()
    host = local_hostname()
    with private_journald(namespace_name(f"sum{next(_seq)}")) as ns:
        spec = f"journal:{ns}"
        with comm_of_this_process("peripetyd"):  # prpt reads only peripetyd's entries
            store = open_store(spec, write=True)
            for event in fleet_events((host,)):
                store.append(event)
            store.sync()
            store.close()
        # Root, but not peripetyd (another process: journald caches a
        # sender's _COMM per pid for a while): skipped by readers.
        forge(ns, full_event("forged", event_type="BLK_IO_ERROR", kdev="sdb", wwid="naa.600a", count=9999,
                             hostname=host))
        source = ["--store", spec]
        rows = assert_summary_matches_query(source)
        assert rows[(host, "naa.600a", "BLK_IO_ERROR")]["count"] == 254  # not the forged 9999
        assert len(assert_summary_matches_query(source, "--severity", "critical")) == 1
        assert set(assert_summary_matches_query(source, "--host", host)) == set(rows)
        # With --include-untrusted the forged entry counts, and the row says so.
        marked = [json.loads(line) for line in
                  prpt("summary", *source, "--jsonl", "--no-resolve", "--include-untrusted").splitlines()]
        storm = next(r for r in marked if r["wwid"] == "naa.600a" and r["event_type"] == "BLK_IO_ERROR")
        assert (storm["count"], storm["untrusted_events"]) == (254 + 9999, 1)


def forge(namespace: str, event) -> None:
    """Store ``event`` from another root process, called python3, not peripetyd."""
    code = ("import sys\nfrom peripety.event import StorageEvent\nfrom peripety.stores import open_store\n"
            "s = open_store('journal:' + sys.argv[1], write=True)\n"
            "s.append(StorageEvent.from_json(sys.argv[2]))\ns.sync()\n")
    subprocess.run([sys.executable, "-c", code, namespace, event.to_json()], check=True, timeout=60)


def test_rows_are_worst_first_and_name_the_newest_event():
    rows = summarize(fleet_events())
    assert [r.worst_severity for r in rows] == sorted(r.worst_severity for r in rows)
    assert rows[0].event_type == "FS_REMOUNT_READ_ONLY"
    storm = next(r for r in rows if r.hostname == "db01" and r.wwid == "naa.600a")
    assert (storm.first_seen, storm.last_seen, storm.worst_severity) == (T0, T0 + dt.timedelta(minutes=5),
                                                                          Severity.Error)
    assert storm.to_dict()["name_from"] == "event" and storm.blk_path == "/dev/sdb"
    no_wwid = next(r for r in rows if r.kdev == "loop7")
    assert no_wwid.wwid == "" and no_wwid.count == 1


@pytest.mark.parametrize("width", [60, 80, 200])
def test_text_table_fits_the_width_and_shows_every_row(width):
    from rich.console import Console

    rows = summarize(fleet_events())
    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(render_table(rows, show_host=True, width=width, now=T0))
    text = console.export_text()
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    words = text.split()
    for row in rows:  # event types and counts are never cut; names may wrap
        assert row.event_type in words and str(row.count) in words and row.worst_severity.name in words
    compact = "".join(words)
    assert all(row.hostname in compact and row.wwid in compact for row in rows)
    assert "260occurrencesin6storedevents" in compact  # 250 + 1 + 1 + 4 + 1 + 3 over 6 events


def test_summary_cli_formats_and_usage_errors(sqlite_spec):
    runner = CliRunner()
    pretty = runner.invoke(main, ["summary", "--store", sqlite_spec, "-J", "--no-resolve"])
    assert pretty.exit_code == 0, pretty.output
    objects = [json.loads(chunk) for chunk in pretty.output.strip().split("\n\n")]
    assert [o["event_type"] for o in objects][0] == "FS_REMOUNT_READ_ONLY"
    assert set(objects[0]) == {"hostname", "wwid", "kdev", "blk_path", "mount_point", "name_from", "event_type",
                               "sub_system", "count", "events", "untrusted_events", "worst_severity",
                               "first_seen", "last_seen"}
    text = runner.invoke(main, ["summary", "--store", sqlite_spec, "--no-resolve"], env={"COLUMNS": "200"})
    assert text.exit_code == 0
    assert "HOST" in text.output  # two hosts: the host column is there
    one_host = runner.invoke(main, ["summary", "--store", sqlite_spec, "--host", "db01"], env={"COLUMNS": "200"})
    assert "HOST" not in one_host.output and "db01" not in one_host.output
    bad = runner.invoke(main, ["summary", "--store", sqlite_spec, "--since", "today", "--until", "yesterday"])
    assert bad.exit_code == 2
    both = runner.invoke(main, ["summary", "--store", sqlite_spec, "--directory", "/"])
    assert both.exit_code == 2 and "--store" in both.output


def test_counts_per_device_survive_a_many_event_store(tmp_path):
    """A summary of many events equals a Counter over the same events."""
    spec = f"sqlite:{tmp_path}/many.db"
    store = open_store(spec, write=True)
    expected = collections.Counter()
    for i in range(300):
        event = full_event(f"m{i}", event_type=("BLK_IO_ERROR", "FS_ERROR")[i % 2], kdev=f"sd{'bcd'[i % 3]}",
                           wwid=f"naa.{i % 3}", count=1 + i % 5, last_timestamp=None,
                           at=T0 + dt.timedelta(seconds=i), hostname="db01")
        store.append(event)
        expected[(event.cur_blk_info.wwid, event.event_type)] += event.count
    store.close()
    got = {(r["wwid"], r["event_type"]): r["count"] for r in
           map(json.loads, prpt("summary", "--store", spec, "--jsonl", "--no-resolve").splitlines())}
    assert got == dict(expected)


@pytest.mark.root
def test_this_hosts_devices_are_named_as_they_are_now(tmp_path):
    """A row of this host whose WWID names a present device gets its current
    name and mount point (udev); another host's row with the same WWID, or
    --no-resolve, keeps its newest event's."""
    from peripety.devices import resolve
    from tests.harness.services import ensure_udevd

    ensure_udevd()
    root = resolve("/")  # the root filesystem's disk: present on every run
    spec = f"sqlite:{tmp_path}/events.db"
    store = open_store(spec, write=True)
    for host in (local_hostname(), "elsewhere"):
        store.append(full_event("old", kdev="vdz9", wwid=root.wwid, hostname=host,
                                count=1, last_timestamp=None))
    store.close()
    rows = {r["hostname"]: r for r in map(json.loads, prpt("summary", "--store", spec, "--jsonl").splitlines())}
    here = rows[local_hostname()]
    assert (here["name_from"], here["blk_path"], here["mount_point"]) == (
        "device", root.preferred_blk_path or root.blk_path, root.mount_point)
    assert here["kdev"] == root.blk_path.rsplit("/", 1)[-1] != "vdz9"
    assert (rows["elsewhere"]["name_from"], rows["elsewhere"]["kdev"]) == ("event", "vdz9")
    unresolved = json.loads(prpt("summary", "--store", spec, "--jsonl", "--no-resolve", "--host", local_hostname()))
    assert (unresolved["name_from"], unresolved["kdev"]) == ("event", "vdz9")


def test_event_line_names_the_host_after_the_time():
    from peripety.cli.output import event_line

    event = full_event("h", hostname="db07", at=T0, count=1, last_timestamp=None)
    plain, with_host = event_line(event, now=T0), event_line(event, now=T0, show_host=True)
    assert "db07" not in plain
    assert with_host == plain.replace(" Error ", " db07 Error ", 1)
    event.hostname = ""
    assert " - Error " in event_line(event, now=T0, show_host=True)
