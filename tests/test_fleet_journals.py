"""Many hosts and offline journals: a directory that Debian's
systemd-journal-remote filled with this host's events (journalctl export
over a local pipe) and a second, renamed host's (uploaded by
systemd-journal-upload over HTTP on 127.0.0.1), read by the real ``prpt``
with --directory, --file and --host."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import os
import shutil
import tempfile
import subprocess
import uuid

import pytest

from peripety.event import Severity, local_hostname
from peripety.stores import open_store
from tests.harness import journal_remote
from tests.harness.daemon import PRPT, wait_for_line
from tests.harness.senders import AS_NOBODY, comm_of_this_process
from tests.harness.services import ensure_journald, private_journald
from tests.stores_support import full_event, namespace_name
from tests.test_summary import expected_rows, forge, summary_rows

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not journal_remote.available(),
                                 reason="apt-get install systemd-journal-remote (scripts/setup.sh does)")]

FAR = "far-host"
_seq = itertools.count()


class Fleet:
    def __init__(self, directory, namespace, host, local_events, far_events, forged):
        self.directory = directory
        self.namespace = namespace
        self.host = host
        self.local_events = local_events
        self.far_events = far_events
        self.forged = forged


def _events(host: str, kdevs, start: dt.datetime):
    return [full_event(f"{host}-{i}", event_type=("BLK_IO_ERROR", "FS_ERROR")[i % 2], kdev=kdev,
                       wwid=f"naa.{kdev}", hostname=host, at=start + dt.timedelta(seconds=10 * i),
                       severity=(Severity.Error, Severity.Critical)[i % 2], count=1 + i, last_timestamp=None)
            for i, kdev in enumerate(kdevs)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    ensure_journald()
    directory = tmp_path_factory.mktemp("remote")
    host = local_hostname()
    start = dt.datetime.now().astimezone() - dt.timedelta(minutes=10)
    local_events = _events(host, ["sdb", "sdb1", "sdc"], start)
    far_events = _events(FAR, ["sdx", "sdy"], start + dt.timedelta(seconds=5))
    with private_journald(namespace_name(f"fleet{next(_seq)}")) as ns:
        with comm_of_this_process("peripetyd"):
            store = open_store(f"journal:{ns}", write=True)
            for event in local_events + far_events:
                store.append(event)
            store.sync()
            store.close()
        forged = full_event("forged", kdev="sdb", wwid="naa.sdb", hostname=host, at=start, count=1,
                            last_timestamp=None)
        forge(ns, forged)
        # This host: a local pipe into journal-remote.
        receive_by_pipe_kdevs(directory / "local.journal", ns, ["sdb", "sdb1", "sdc"])
        # The far host: its entries as that machine's journald wrote them,
        # uploaded over HTTP by systemd-journal-upload.
        entries = journal_remote.parse_export(journal_remote.export(f"--namespace={ns}", "IS_PERIPETY=TRUE",
                                                                    "KDEV=sdx", "KDEV=sdy"))
        assert len(entries) == 2
        export_file = directory.parent / "far.export"
        export_file.write_bytes(journal_remote.format_export(journal_remote.as_other_host(
            entries, FAR, uuid.uuid4().hex, uuid.uuid4().hex)))
        with journal_remote.http_receiver(directory / "remote-far.journal") as url:
            journal_remote.upload(url, export_file, directory.parent / "upload.state")
        yield Fleet(directory, ns, host, local_events, far_events, forged)


def receive_by_pipe_kdevs(output, namespace, kdevs):
    journal_remote.receive_by_pipe(output, f"--namespace={namespace}", "IS_PERIPETY=TRUE",
                                   *(f"KDEV={k}" for k in kdevs))


def prpt(*args, check=True):
    proc = subprocess.run([PRPT, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def ids(jsonl: str) -> list[str]:
    return [json.loads(line)["event_id"] for line in jsonl.splitlines()]


def in_time_order(events) -> list[str]:
    return [e.event_id for e in sorted(events, key=lambda e: e.timestamp)]


def test_journal_remote_keeps_the_senders_trusted_fields(fleet):
    """What makes the per-entry trust rule hold for remote journals: the
    origin host's _UID and _COMM arrive unchanged, over a pipe and over
    HTTP, and the forged entry keeps its own."""
    out = subprocess.run(["journalctl", "-D", str(fleet.directory), "-o", "json", "IS_PERIPETY=TRUE"],
                         capture_output=True, text=True, check=True).stdout
    entries = [json.loads(line) for line in out.splitlines()]
    senders = {json.loads(e["JSON"])["event_id"]: (e["_HOSTNAME"], e["_UID"], e["_COMM"]) for e in entries}
    for event in fleet.local_events:
        assert senders[event.event_id] == (fleet.host, "0", "peripetyd")
    for event in fleet.far_events:
        assert senders[event.event_id] == (FAR, "0", "peripetyd")
    assert senders[fleet.forged.event_id][:2] == (fleet.host, "0")
    assert senders[fleet.forged.event_id][2] != "peripetyd"


def test_query_reads_both_hosts_and_skips_the_forged_entry(fleet):
    proc = prpt("query", "-D", str(fleet.directory), "--jsonl", "-v")
    assert ids(proc.stdout) == in_time_order(fleet.local_events + fleet.far_events)
    assert "1 entry not written by peripetyd skipped" in proc.stderr
    marked = prpt("query", "-D", str(fleet.directory), "--jsonl", "--include-untrusted").stdout
    forged = [json.loads(line) for line in marked.splitlines() if json.loads(line)["event_id"] == fleet.forged.event_id]
    assert forged[0]["untrusted_writer"]["uid"] == "0" and forged[0]["untrusted_writer"]["comm"] != "peripetyd"


def test_host_filter_matches_the_journal_hostname(fleet):
    d = str(fleet.directory)
    assert ids(prpt("query", "-D", d, "--jsonl", "--host", FAR).stdout) == in_time_order(fleet.far_events)
    assert ids(prpt("query", "-D", d, "--jsonl", "--host", fleet.host).stdout) == in_time_order(fleet.local_events)
    both = prpt("query", "-D", d, "--jsonl", "--host", fleet.host, "--host", FAR).stdout
    assert ids(both) == in_time_order(fleet.local_events + fleet.far_events)
    # --host and another filter: AND across criteria
    crit = prpt("query", "-D", d, "--jsonl", "--host", FAR, "--severity", "critical").stdout
    assert ids(crit) == [e.event_id for e in fleet.far_events if e.severity == Severity.Critical]
    assert prpt("query", "-D", d, "--jsonl", "--host", "nowhere").stdout == ""


def test_text_lines_name_the_host(fleet):
    text = prpt("query", "-D", str(fleet.directory), "--host", FAR).stdout.splitlines()
    jsonl = prpt("query", "-D", str(fleet.directory), "--host", FAR, "--jsonl").stdout.splitlines()
    assert len(text) == len(jsonl) == 2
    for line in text:  # TIME HOST SEVERITY ...: the host column, even for one host, in journal-file mode
        match = re.match(r"^(?:\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d\.\d{3} (\S+) (\S+) ", line)
        assert match and match.group(1) == FAR and match.group(2) in ("Error", "Critical"), line


def test_file_globs_and_the_old_store_spelling_read_the_same(fleet):
    d = fleet.directory
    everything = prpt("query", "-D", str(d), "--jsonl").stdout
    assert prpt("query", "--file", f"{d}/*.journal", "--jsonl").stdout == everything
    assert prpt("query", "--store", f"journal:{d}", "--jsonl").stdout == everything
    one = prpt("query", "--file", str(d / "remote-far.journal"), "--jsonl").stdout
    assert ids(one) == in_time_order(fleet.far_events)
    two = prpt("query", "--file", str(d / "remote-far.journal"), "--file", str(d / "local.journal"), "--jsonl")
    assert two.stdout == everything


def test_bad_journal_sources_are_usage_errors(fleet, tmp_path):
    d = str(fleet.directory)
    for args, message in (
        (["-D", d, "--file", f"{d}/local.journal"], "either --directory or --file"),
        (["--file", f"{d}/nothing*.journal"], "no such journal file"),
        (["--file", d], "is a directory"),
        (["-D", str(tmp_path / "absent")], "does not exist"),
        (["-D", d, "--store", "sqlite"], "--store"),
    ):
        proc = prpt("query", *args, check=False)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
    empty = prpt("query", "-D", str(tmp_path), check=False)
    assert empty.returncode == 1 and "no journal files" in empty.stderr


def test_journal_files_replace_the_store_from_the_environment(fleet):
    env = dict(os.environ, PRPT_STORE="sqlite:/nonexistent/events.db")
    proc = subprocess.run([PRPT, "query", "-D", str(fleet.directory), "--jsonl", "--host", FAR], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ids(proc.stdout) == in_time_order(fleet.far_events)


def test_unreadable_journal_files_are_an_error_not_silence(fleet):
    """sd-journal skips files it may not read; prpt says so (as nobody)."""
    with tempfile.TemporaryDirectory(prefix="prpt-fleet-") as tmp:
        os.chmod(tmp, 0o755)
        shutil.copy(fleet.directory / "local.journal", tmp)
        os.chmod(os.path.join(tmp, "local.journal"), 0o600)
        proc = subprocess.run(AS_NOBODY + [PRPT, "query", "-D", tmp], capture_output=True, text=True, timeout=60,
                              cwd="/")
        assert proc.returncode == 1 and "local.journal: permission denied" in proc.stderr, proc.stderr
        proc = subprocess.run(AS_NOBODY + [PRPT, "query", "--file", f"{tmp}/local.journal"], capture_output=True,
                              text=True, timeout=60, cwd="/")
        assert proc.returncode == 1 and "permission denied" in proc.stderr, proc.stderr


def test_summary_of_two_hosts_matches_the_events(fleet):
    d = str(fleet.directory)
    query = prpt("query", "-D", d, "--jsonl").stdout
    rows = summary_rows(prpt("summary", "-D", d, "--jsonl").stdout)
    assert rows == expected_rows(query)
    assert {host for host, _, _ in rows} == {fleet.host, FAR}
    far_only = summary_rows(prpt("summary", "-D", d, "--jsonl", "--host", FAR).stdout)
    assert set(far_only) == {k for k in rows if k[0] == FAR}
    table = subprocess.run([PRPT, "summary", "-D", d], capture_output=True, text=True,
                           env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}, check=True).stdout
    assert table.splitlines()[0].split()[0] == "HOST"
    assert sum(FAR in line for line in table.splitlines()) == len(far_only)


def test_top_once_shows_both_hosts(fleet):
    model = json.loads(prpt("top", "-D", str(fleet.directory), "--once", "-J").stdout)
    assert model["hostname"] == f"2 hosts: {', '.join(sorted([fleet.host, FAR]))}"
    assert {e["event_id"] for e in model["events"]} == {e.event_id for e in fleet.local_events + fleet.far_events}
    assert {d["wwid"] for d in model["devices"]} == {f"naa.{k}" for k in ("sdb", "sdb1", "sdc", "sdx", "sdy")}
    assert all(d["state"] is None for d in model["devices"])  # not this host's live state
    far = json.loads(prpt("top", "-D", str(fleet.directory), "--once", "-J", "--host", FAR).stdout)
    assert far["hostname"] == FAR and {d["wwid"] for d in far["devices"]} == {"naa.sdx", "naa.sdy"}


def test_monitor_follows_a_directory_journal_remote_writes_into(fleet, tmp_path):
    directory = tmp_path / "remote"  # a copy: the other tests keep theirs as it was
    shutil.copytree(fleet.directory, directory)
    proc = subprocess.Popen([PRPT, "monitor", "-D", str(directory), "--jsonl", "-v"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_line(proc.stderr, "following")
        late = full_event("late", kdev="sdz", wwid="naa.sdz", hostname=fleet.host, count=1, last_timestamp=None)
        with comm_of_this_process("peripetyd"):
            store = open_store(f"journal:{fleet.namespace}", write=True)
            store.append(late)
            store.sync()
            store.close()
        # A new file appears in the directory, as journal-remote starts one per sender.
        receive_by_pipe_kdevs(directory / "late.journal", fleet.namespace, ["sdz"])
        line = wait_for_line(proc.stdout, "sdz")
        assert json.loads(line)["event_id"] == late.event_id
        proc.terminate()
        assert proc.wait(10) == 0
        assert proc.stdout.read() == b""  # nothing already in the directory was replayed
    finally:
        proc.terminate()
        proc.wait(10)

