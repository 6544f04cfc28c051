"""One order and one time-zone rule for ``prpt query``, ``monitor`` and
``parse``; unknown names and impossible ranges are usage errors.

The journal cases run against a real systemd-journald of their own (a
journal namespace: tests/harness/services.py), the rest against SQLite."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from peripety import config
from peripety.cli import main
from peripety.cli.monitor import write_batch
from peripety.cli.output import EventWriter, event_line
from peripety.event import Severity, StorageEvent, set_output_utc
from peripety.stores import EventFilter, open_store
from tests.harness.daemon import PRPT, wait_for_line
from tests.harness.senders import comm_of_this_process
from tests.harness.services import ensure_journald, private_journald
from tests.stores_support import full_event, namespace_name

LOGS = Path(__file__).parent / "fixtures" / "logs"
UTC = dt.timezone.utc
_seq = itertools.count()


@pytest.fixture(autouse=True)
def _local_time():
    yield
    set_output_utc(False)  # --utc is process-wide; CliRunner runs in this process


def _now() -> dt.datetime:
    return dt.datetime.now().astimezone().replace(microsecond=0)


def shuffled_events(base: dt.datetime) -> list[StorageEvent]:
    """Appended in this order, they happened in the order of their names:
    a storm summary stored after later events, an event spooled an hour late,
    two at the same second (their store order must stay)."""
    at = lambda seconds: base + dt.timedelta(seconds=seconds)  # noqa: E731
    return [
        full_event("2", at=at(10)),
        full_event("4", at=at(30)),
        full_event("1", at=at(0), count=50),
        full_event("5a", at=at(40)),
        full_event("5b", at=at(40)),
        full_event("3", at=at(20).astimezone(dt.timezone(dt.timedelta(hours=-7)))),  # another host's offset
    ]


def _store_events(spec: str, events) -> None:
    store = open_store(spec, write=True)
    for event in events:
        store.append(event)
    store.close()


def _names(stdout: str) -> list[str]:
    return [json.loads(l)["msg"].split(":")[0] for l in stdout.splitlines()]


def _sorted_check(stdout: str) -> subprocess.CompletedProcess:
    """``jq -r .timestamp | sort -c`` over query output, as a user would."""
    jq = subprocess.run(["jq", "-r", ".timestamp"], input=stdout, capture_output=True, text=True, check=True)
    return subprocess.run(["sort", "-c"], input=jq.stdout, capture_output=True, text=True,
                          env={"LC_ALL": "C"})


@pytest.fixture
def sqlite_spec(tmp_path):
    return f"sqlite:{tmp_path}/events.db"


# -- order ----------------------------------------------------------------------
def test_query_is_oldest_first_whatever_the_store_order(sqlite_spec):
    _store_events(sqlite_spec, shuffled_events(_now() - dt.timedelta(minutes=5)))
    proc = subprocess.run([PRPT, "query", "--store", sqlite_spec, "--jsonl"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _names(proc.stdout) == ["1", "2", "3", "4", "5a", "5b"]
    assert _sorted_check(proc.stdout).returncode == 0
    newest = CliRunner().invoke(main, ["query", "--store", sqlite_spec, "--jsonl", "-n", "3"])
    assert _names(newest.stdout) == ["3", "5a", "5b"]  # the 3 stored last, sorted


@pytest.mark.root
def test_query_of_a_real_journal_is_oldest_first():
    ensure_journald()
    with private_journald(namespace_name(f"order{next(_seq)}")) as ns:
        spec = f"journal:{ns}"
        with comm_of_this_process("peripetyd"):  # prpt reads only peripetyd's entries
            _store_events(spec, shuffled_events(_now() - dt.timedelta(minutes=5)))
            proc = subprocess.run([PRPT, "query", "--store", spec, "--jsonl"], capture_output=True, text=True,
                                  timeout=60, env=dict(os.environ, TZ="Asia/Kolkata"))
        assert proc.returncode == 0, proc.stderr
        assert _names(proc.stdout) == ["1", "2", "3", "4", "5a", "5b"]
        assert _sorted_check(proc.stdout).returncode == 0
        assert all(json.loads(l)["timestamp"].endswith("+05:30") for l in proc.stdout.splitlines())


def test_monitor_writes_each_batch_oldest_first(sqlite_spec):
    store = open_store(sqlite_spec, write=True)
    follower = open_store(sqlite_spec).follow(EventFilter())
    try:
        for event in shuffled_events(_now()):
            store.append(event)
        out = []
        writer = EventWriter(_ListStream(out), "jsonl")
        assert write_batch(follower, writer) == 6
        assert _names("".join(out)) == ["1", "2", "3", "4", "5a", "5b"]
    finally:
        follower.close()
        store.close()


class _ListStream:
    def __init__(self, out):
        self.out = out

    def write(self, text):
        self.out.append(text)

    def flush(self):
        pass


# -- one time-zone rule -------------------------------------------------------------
def test_json_times_are_local_with_their_offset_or_utc(sqlite_spec):
    _store_events(sqlite_spec, [full_event("a", at=dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC))])
    env = dict(os.environ, TZ="Asia/Kolkata")
    query = subprocess.run([PRPT, "query", "--store", sqlite_spec, "--jsonl"], capture_output=True, text=True,
                           env=env, timeout=60)
    event = json.loads(query.stdout)
    assert (event["timestamp"], event["last_timestamp"]) == (
        "2026-11-20T15:30:00.000000+05:30", "2026-11-20T15:30:00.500000+05:30")
    utc = subprocess.run([PRPT, "query", "--store", sqlite_spec, "--jsonl", "--utc"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert json.loads(utc.stdout)["timestamp"] == "2026-11-20T10:00:00.000000+00:00"
    text = subprocess.run([PRPT, "query", "--store", sqlite_spec], capture_output=True, text=True, env=env,
                          timeout=60)
    assert text.stdout.startswith("2026-11-20 15:30:00.000 Error ext4 FS_ERROR loop1: ")
    # parse follows the same rule: a UTC syslog stamp is shown in the local zone
    parse = subprocess.run([PRPT, "parse", "--jsonl", str(LOGS / "journal-k-short-full.syslog")],
                           capture_output=True, text=True, env=env, timeout=60)
    assert parse.stdout and all(json.loads(l)["timestamp"].startswith("2026-12-01T16:5")
                                and json.loads(l)["timestamp"].endswith("+05:30") for l in parse.stdout.splitlines())


def test_monitor_json_follows_the_zone_rule(sqlite_spec):
    _store_events(sqlite_spec, [])
    proc = subprocess.Popen([PRPT, "monitor", "--store", sqlite_spec, "--jsonl", "-v"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=dict(os.environ, TZ="America/St_Johns"))
    try:
        wait_for_line(proc.stderr, "following")
        _store_events(sqlite_spec, [full_event("m", at=dt.datetime(2026, 7, 1, 12, 0, tzinfo=UTC))])
        line = wait_for_line(proc.stdout, '"msg"')
        assert json.loads(line)["timestamp"] == "2026-07-01T09:30:00.000000-02:30"  # Newfoundland summer time
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()



def test_text_times_carry_the_date_unless_today():
    now = dt.datetime(2026, 12, 1, 12, 0).astimezone()  # local noon: an hour earlier is still today
    today = StorageEvent(event_type="FS_ERROR", sub_system="ext4", severity=Severity.Error, kdev="sdb1",
                         msg="m", timestamp=now - dt.timedelta(hours=1, milliseconds=250))
    older = StorageEvent(event_type="FS_ERROR", sub_system="ext4", severity=Severity.Error, kdev="sdb1",
                         msg="m", timestamp=now - dt.timedelta(days=3), kernel_usec=5_000_042)
    local = (now - dt.timedelta(hours=1, milliseconds=250)).astimezone()
    assert event_line(today, now) == f"{local:%H:%M:%S}.750 Error ext4 FS_ERROR sdb1: m"
    day = (now - dt.timedelta(days=3)).astimezone()
    assert event_line(older, now) == f"{day:%Y-%m-%d %H:%M:%S}.000 [    5.000042] Error ext4 FS_ERROR sdb1: m"
    set_output_utc(True)
    assert event_line(older, now).startswith(f"{older.timestamp.astimezone(UTC):%Y-%m-%d %H:%M:%S}.000 ")


# -- usage errors -------------------------------------------------------------------
def test_unknown_event_type_is_a_usage_error_listing_the_known(sqlite_spec):
    _store_events(sqlite_spec, [])
    for command in ("query", "monitor"):
        result = CliRunner().invoke(main, [command, "--store", sqlite_spec, "--event-type", "BLK_IO_EROR"])
        assert result.exit_code == 2, result.output
        assert "unknown event type 'BLK_IO_EROR'" in result.stderr
        assert "Did you mean BLK_IO_ERROR?" in result.stderr
        assert "FS_REMOUNT_READ_ONLY" in result.stderr and "DM_MPATH_PATH_FAILED" in result.stderr
    ok = CliRunner().invoke(main, ["query", "--store", sqlite_spec, "--event-type", "blk_io_error"])
    assert ok.exit_code == 0


def test_event_types_of_the_sites_rules_are_known(sqlite_spec, tmp_path, monkeypatch):
    conf = tmp_path / "peripetyd.conf"
    conf.write_text('[[collector.regexs]]\nstarts_with = "mydrv "\nregex = "^mydrv (?P<kdev>\\\\S+): gone"\n'
                    'sub_system = "SCSI"\nevent_type = "SITE_DISK_GONE"\n')
    monkeypatch.setattr(config, "DEFAULT_PATH", conf)
    _store_events(sqlite_spec, [full_event("s", event_type="SITE_DISK_GONE")])
    result = CliRunner().invoke(main, ["query", "--store", sqlite_spec, "--jsonl", "--event-type", "SITE_DISK_GONE"])
    assert result.exit_code == 0, result.output
    assert [json.loads(l)["event_type"] for l in result.stdout.splitlines()] == ["SITE_DISK_GONE"]


def test_unknown_sub_system_is_a_usage_error_listing_the_known(sqlite_spec):
    _store_events(sqlite_spec, [])
    result = CliRunner().invoke(main, ["query", "--store", sqlite_spec, "--sub-system", "ext5"])
    assert result.exit_code == 2
    assert "unknown sub_system 'ext5'" in result.stderr and "Multipath" in result.stderr and "btrfs" in result.stderr


def test_since_after_until_is_a_usage_error(sqlite_spec):
    _store_events(sqlite_spec, [])
    proc = subprocess.run([PRPT, "query", "--store", sqlite_spec, "--since", "-1h", "--until", "-2h"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert re.search(r"--since \S+ is after --until \S+", proc.stderr)
    same = CliRunner().invoke(main, ["query", "--store", sqlite_spec, "--since", "2026-01-01", "--until", "2026-01-01"])
    assert same.exit_code == 0


def test_help_states_order_and_zone():
    for command in ("query", "monitor", "parse"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        assert "--utc" in text and "local time" in text
    assert "several hosts" in CliRunner().invoke(main, ["query", "--help"]).output
    assert "arrives" in CliRunner().invoke(main, ["monitor", "--help"]).output


def test_event_types_only_the_store_holds_are_known(sqlite_spec):
    """Another host's rules made VENDOR_FAN_FAILED: this host's config does
    not know it, the store does; any case is accepted, as for built-in types."""
    _store_events(sqlite_spec, [StorageEvent(event_type="VENDOR_FAN_FAILED", sub_system="SCSI",
                                             severity=Severity.Error, kdev="sdb", msg="fan", timestamp=_now())])
    for spelling in ("VENDOR_FAN_FAILED", "vendor_fan_failed"):
        result = CliRunner().invoke(main, ["query", "--store", sqlite_spec, "--jsonl", "--event-type", spelling])
        assert result.exit_code == 0, result.output
        assert [json.loads(l)["event_type"] for l in result.stdout.splitlines()] == ["VENDOR_FAN_FAILED"]
    wrong = CliRunner().invoke(main, ["query", "--store", sqlite_spec, "--event-type", "VENDOR_FAN_FAILD"])
    assert wrong.exit_code == 2
    assert "no event of that type in sqlite" in wrong.stderr
    assert "Did you mean VENDOR_FAN_FAILED?" in wrong.stderr
