"""Prometheus metrics of the real peripetyd on real failures: a loop device
over tests/faultyfs (genuine EIO), scraped over HTTP with urllib and curl,
the node_exporter textfile read back, both parsed with prometheus_client's
own parser. The counters must equal what the kernel printed and what the
store holds (a storm aggregate's count included)."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import time
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.daemon import PERIPETYD, DaemonProcess
from tests.harness.kmsg_tail import KmsgTail, record_text
from tests.harness.senders import Sender, genuine_daemon_link
from tests.test_daemon_position import io_lines, wait_ratelimit_release
from tests.test_store_outage import stored_maps, tiny_fs  # noqa: F401 - tiny_fs is a fixture

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]

# The kernel's ratelimit summaries that peripety's rules read (rules/builtin.toml)
SUPPRESSED = re.compile(r"^(?:blk_print_req_error|print_req_error|blk_update_request|buffer_io_error|quiet_error"
                        r"|set_capacity_and_notify|EXT4-fs(?: error)?): (\d+) callbacks suppressed$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return reply.read().decode()


def events_total(text: str, kdev: str) -> Counter:
    """peripety_events_total of device ``kdev`` per event type (one wwid)."""
    per_type: Counter = Counter()
    wwids = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "peripety_events_total" and s.labels["kdev"] == kdev:
                per_type[s.labels["event_type"]] += int(s.value)
                wwids.add(s.labels["wwid"])
    assert len(wwids) <= 1, wwids
    return per_type


def value(text: str, name: str) -> float:
    [v] = [s.value for f in text_string_to_metric_families(text) for s in f.samples
           if s.name == name and not s.labels]
    return v


def stored(db, kdev: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        return [e for e in (json.loads(r[0]) for r in conn.execute("SELECT json FROM events"))
                if e["kdev"] == kdev]


def stored_per_type(events) -> Counter:
    per_type: Counter = Counter()
    for e in events:
        per_type[e["event_type"]] += e["count"]
    return per_type


def wait_scrape(port: int, predicate, timeout: float = 30.0, what: str = "the counters") -> str:
    """Scrape until ``predicate(text)`` holds (a bounded poll on the real
    condition, the endpoint's answer)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = scrape(port)
        if predicate(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last scrape:\n{text[-3000:]}")


@pytest.mark.bpf
@pytest.mark.usefixtures("tracefs")
def test_storm_counters_equal_the_failures_and_the_store(tmp_path, faulty_disk):
    """200 failing reads with --bpf: the probes count every failure, the
    store keeps a few events (the burst, then aggregates with a count) and
    peripety_events_total for the device says 200, over HTTP and in the
    textfile; at stop the textfile equals the store, per event type."""
    port, db = free_port(), tmp_path / "events.db"
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    textfile = textdir / "peripety.prom"
    daemon = DaemonProcess(tmp_path / "d", store=f"sqlite:{db}", args=(
        "--bpf=on", "--metrics", f"127.0.0.1:{port}", "--metrics-textfile", str(textfile))).start()
    try:
        before = scrape(port)
        assert value(before, "peripety_up") == 1
        assert events_total(before, faulty_disk.name)["BLK_IO_ERROR"] == 0
        faulty_disk.fail_sectors(40960, 200, "read")
        assert [r.error for r in faulty_disk.read_sectors(40960, 200)] == [5] * 200
        text = wait_scrape(port, lambda t: events_total(t, faulty_disk.name)["BLK_IO_ERROR"] >= 200,
                           what="200 failures counted")
        assert events_total(text, faulty_disk.name)["BLK_IO_ERROR"] == 200
        # The textfile is rewritten every few seconds while the daemon runs.
        deadline = time.monotonic() + 15
        while events_total(textfile.read_text(), faulty_disk.name)["BLK_IO_ERROR"] < 200:
            assert time.monotonic() < deadline, "the textfile never caught up"
            time.sleep(0.5)
        assert value(textfile.read_text(), "peripety_up") == 1
    finally:
        assert daemon.stop() == 0
    events = stored(db, faulty_disk.name)
    assert any(e["count"] > 1 for e in events), "no storm aggregate: the test proved nothing about counts"
    final = textfile.read_text()
    assert value(final, "peripety_up") == 0  # written at stop
    assert events_total(final, faulty_disk.name) == stored_per_type(events)
    assert stored_per_type(events)["BLK_IO_ERROR"] == 200
    wwid = {(e["cur_blk_info"] or {}).get("wwid", "") for e in events}
    labelled = {s.labels["wwid"] for f in text_string_to_metric_families(final) for s in f.samples
                if s.name == "peripety_events_total" and s.labels["kdev"] == faulty_disk.name}
    assert labelled == wwid


def test_counters_equal_the_lines_the_kernel_printed_and_suppressed(tmp_path, faulty_disk):
    """Without probes each printed line is a failure event: the device's
    BLK_IO_ERROR counter equals the kernel's "I/O error, dev" lines, and
    peripety_kernel_lines_suppressed_total the N of its "N callbacks
    suppressed" line, scraped with curl."""
    port, db = free_port(), tmp_path / "events.db"
    daemon = DaemonProcess(tmp_path / "d", store=f"sqlite:{db}",
                           args=("--metrics", f"127.0.0.1:{port}")).start()
    try:
        with KmsgTail() as tail:
            faulty_disk.fail_sectors(50000, 30, "read")
            faulty_disk.read_sectors(50000, 30)
            wait_ratelimit_release(tail, faulty_disk, 51000)
            tail.wait_for(r"blk_print_req_error: \d+ callbacks suppressed", timeout=10)
            printed = len(io_lines(tail, faulty_disk))
            # Every summary line since the tail opened (an earlier test's
            # failures may be summed in a first one: the ratelimit is global).
            suppressed = sum(int(m.group(1)) for m in map(SUPPRESSED.match, map(record_text, tail.records)) if m)

        def caught_up(text):
            return (events_total(text, faulty_disk.name)["BLK_IO_ERROR"] >= printed
                    and value(text, "peripety_kernel_lines_suppressed_total") >= suppressed)

        wait_scrape(port, caught_up, what="every printed line and the suppressed count")
        curl = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/metrics"], capture_output=True,
                              text=True, timeout=20)
        assert curl.returncode == 0, curl.stderr
        text = curl.stdout
    finally:
        assert daemon.stop() == 0
    assert events_total(text, faulty_disk.name)["BLK_IO_ERROR"] == printed
    assert value(text, "peripety_kernel_lines_suppressed_total") == suppressed
    assert suppressed >= 20  # 30 failed, at most 10 printed in that interval
    events = stored(db, faulty_disk.name)
    assert stored_per_type(events)["PERIPETY_KMSG_SUPPRESSED"] >= 1
    assert stored_per_type(events)["BLK_IO_ERROR"] == printed
    assert events_total(text, faulty_disk.name) == stored_per_type(events)


def test_port_in_use_stops_the_daemon_with_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run([PERIPETYD, "--store", f"sqlite:{tmp_path / 'e.db'}", "--no-blk-info-dump",
                              "--state-dir", str(tmp_path / "state"), "--status-file", str(tmp_path / "status.json"),
                              "--metrics", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"--metrics 127.0.0.1:{port}: cannot listen: Address already in use" in run.stderr
    assert "Traceback" not in run.stderr
    assert "another program listens there" in run.stderr
    assert "peripetyd: ready" not in run.stderr


def test_unsafe_textfile_directory_stops_the_daemon_with_a_clear_error(tmp_path):
    shared = tmp_path / "shared"
    (shared / "textfile").mkdir(parents=True)
    shared.chmod(0o777)
    run = subprocess.run([PERIPETYD, "--store", f"sqlite:{tmp_path / 'e.db'}", "--no-blk-info-dump",
                          "--state-dir", str(tmp_path / "state"), "--status-file", str(tmp_path / "status.json"),
                          "--metrics-textfile", str(shared / "textfile" / "peripety.prom")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "group/world-writable" in run.stderr and "Traceback" not in run.stderr


def test_store_outage_shows_in_the_metrics(tmp_path, tiny_fs):
    """The SQLite store on a real tmpfs that fills up: the scrape says the
    store is down, how many events wait in the spool and that the store
    refused; events are counted once each, spooled or not; when space is
    back the spool drains and the counts still equal the store."""
    db, port = tiny_fs / "events.db", free_port()
    daemon = DaemonProcess(tmp_path / "d", store=f"sqlite:{db}", args=("--metrics", f"127.0.0.1:{port}")).start()
    link = genuine_daemon_link(tmp_path, "multipathd")
    senders = []

    def fail_path(n: int) -> None:
        senders.append(Sender("multipathd", f"checker failed path 8:{n} in map full{n}", via_link=link))

    def failed_paths(text) -> float:
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "peripety_events_total" and s.labels["event_type"] == "DM_MPATH_PATH_FAILED")

    try:
        fail_path(1)
        wait_scrape(port, lambda t: failed_paths(t) == 1, what="the first event counted")
        assert value(scrape(port), "peripety_store_errors_total") == 0
        filler = tiny_fs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)  # ENOSPC ends it
        for n in range(2, 7):
            fail_path(n)
        text = wait_scrape(port, lambda t: value(t, "peripety_spool_depth") == 5, what="five events spooled")
        assert [s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "peripety_store_up"] == [0]
        assert value(text, "peripety_store_errors_total") >= 1
        assert failed_paths(text) == 6  # spooled events are kept, so counted
        os.unlink(filler)
        text = wait_scrape(port, lambda t: value(t, "peripety_spool_depth") == 0, what="the spool delivered")
        assert [s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "peripety_store_up"] == [1]
        assert failed_paths(text) == 6
        assert value(text, "peripety_spool_dropped_total") == 0
    finally:
        for sender in senders:
            sender.close()
        assert daemon.stop() == 0
    assert sorted(stored_maps(db)) == [f"full{n}" for n in range(1, 7)]
