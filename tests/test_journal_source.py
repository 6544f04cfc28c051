"""The journal source on the real system journald: where it starts reading,
who it believes, and what a reload with new identifiers reads (issue 9)."""

from __future__ import annotations

import select
import subprocess
import time
import uuid

import pytest
from systemd import journal

from peripety.sources.journal import JournalSource
from peripety.stores.provenance import SenderPolicy
from tests.harness.senders import AS_NOBODY, SYSTEM_PYTHON

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald")]

ME = SenderPolicy.this_process()


def fresh_identifier() -> str:
    return "tpsrc" + uuid.uuid4().hex[:10]


def read_until(source: JournalSource, predicate, timeout: float = 10.0) -> list:
    """Records read until ``predicate(records)`` holds (woken by the source's fd)."""
    records: list = []
    deadline = time.monotonic() + timeout
    while not predicate(records):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; read {[(r.identifier, r.text) for r in records]}")
        select.select([source.fileno()], [], [], min(left, 0.5))
        records += source.read()
    return records


def test_first_line_of_an_identifier_never_seen_this_boot_is_read():
    """The cause of the flaky journal test: sd-journal 252 positioned with
    seek_tail() + a get_previous() that finds no matching entry (no line of
    that daemon yet this boot) never returns the next matching entry. The
    source now starts at the time it was opened (seek_realtime)."""
    ident = fresh_identifier()
    source = JournalSource([ident], policy=lambda i: ME)
    try:
        journal.send("first line ever", SYSLOG_IDENTIFIER=ident)
        journal.send("noise after it", SYSLOG_IDENTIFIER="kernel")
        records = read_until(source, lambda rs: bool(rs))
        assert [r.text for r in records] == ["first line ever"]
        assert records[0].sender["sender_comm"] in ME.comms and records[0].sender["sender_uid"] == "0"
    finally:
        source.close()


def test_lines_from_other_senders_are_skipped_and_counted():
    ident = fresh_identifier()
    source = JournalSource([ident], policy=lambda i: ME)
    try:
        subprocess.run(AS_NOBODY + ["logger", "-t", ident, "forged by nobody"], check=True)
        subprocess.run(AS_NOBODY + [SYSTEM_PYTHON, "-c",
                                    "import ctypes,sys,time; from systemd import journal;"
                                    f"ctypes.CDLL(None).prctl(15, {sorted(ME.comms)[0]!r}.encode(),0,0,0);"
                                    f"journal.send('forged with my comm', SYSLOG_IDENTIFIER={ident!r}); "
                                    "time.sleep(0.5)"], check=True)
        journal.send("genuine", SYSLOG_IDENTIFIER=ident)  # the sentinel
        # journald reads its syslog socket (logger) and native socket apart:
        # a forged line may be stored after the sentinel. Read until both
        # forged lines were judged; one accepted would never let that happen.
        records = read_until(source, lambda rs: any(r.text == "genuine" for r in rs)
                             and source.untrusted_skipped >= 2)
        assert [r.text for r in records] == ["genuine"]
        assert source.untrusted_skipped == 2
    finally:
        source.close()


def test_new_identifiers_are_read_after_a_reload_without_replaying_old_lines():
    old, new = fresh_identifier(), fresh_identifier()
    source = JournalSource([old], policy=lambda i: ME)
    try:
        journal.send("before", SYSLOG_IDENTIFIER=new)  # not ours yet
        journal.send("old one", SYSLOG_IDENTIFIER=old)
        assert [r.text for r in read_until(source, bool)] == ["old one"]
        source.set_identifiers([old, new])
        journal.send("new one", SYSLOG_IDENTIFIER=new)
        records = read_until(source, lambda rs: any(r.text == "new one" for r in rs))
        assert [r.text for r in records] == ["new one"]
    finally:
        source.close()


def test_resume_from_cursor_reads_only_later_lines():
    ident = fresh_identifier()
    source = JournalSource([ident], policy=lambda i: ME)
    journal.send("one", SYSLOG_IDENTIFIER=ident)
    read_until(source, bool)
    cursor = source.cursor
    source.close()
    journal.send("two", SYSLOG_IDENTIFIER=ident)
    subprocess.run(["journalctl", "--sync"], check=True)
    again = JournalSource([ident], cursor=cursor, policy=lambda i: ME)
    try:
        assert [r.text for r in read_until(again, bool)] == ["two"]
    finally:
        again.close()
