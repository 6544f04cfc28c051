"""Provenance and safe files on the real daemon, journald and kernel: what a
local non-root user (``nobody``) can forge, what root's other processes can
forge, and what is still accepted from a genuine sender (issue 9)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.harness.daemon import PERIPETYD, DaemonProcess, prpt, since_now, wait_for_events
from tests.harness.senders import AS_NOBODY, SYSTEM_PYTHON, Sender, genuine_daemon_link

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]

NOBODY_UID = 65534


def journal_fields(grep: str) -> list[dict]:
    subprocess.run(["journalctl", "--sync"], check=True)
    out = subprocess.run(["journalctl", "--no-pager", "-o", "json", "-g", grep, "-S", "-5min"],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_forged_daemon_lines_give_no_event_and_a_genuine_sender_is_kept(tmp_path):
    daemon = DaemonProcess(tmp_path / "d").start()
    senders = []
    try:
        t0 = since_now()
        tag = f"mpt{os.getpid()}"
        # nobody, with logger and with its comm set to multipathd
        subprocess.run(AS_NOBODY + ["logger", "-t", "multipathd", f"checker failed path 8:32 in map {tag}a"],
                       check=True)
        senders.append(Sender("multipathd", f"checker failed path 8:33 in map {tag}b", comm="multipathd",
                              nobody=True))
        # root, but not multipathd: logger, and a python whose comm is not multipathd
        subprocess.run(["logger", "-t", "multipathd", f"checker failed path 8:34 in map {tag}c"], check=True)
        senders.append(Sender("multipathd", f"checker failed path 8:35 in map {tag}d"))
        # the genuine one (root, comm multipathd), last: the sentinel
        genuine = Sender("multipathd", f"checker failed path 8:36 in map {tag}e",
                         via_link=genuine_daemon_link(tmp_path, "multipathd"))
        senders.append(genuine)
        events = wait_for_events(("--since", t0, "--event-type", "DM_MPATH_PATH_FAILED"),
                                 lambda evs: any(e["kdev"] == "8:36" for e in evs), what="the genuine line")
        assert [e["kdev"] for e in events if e["extension"].get("map", "").startswith(tag)] == ["8:36"]
        ext = next(e for e in events if e["kdev"] == "8:36")["extension"]
        assert ext["sender_comm"] == "multipathd"
        assert ext["sender_uid"] == "0"
        assert ext["sender_pid"] == str(genuine.proc.pid)
        # journald really recorded what the forgeries claimed to be
        forged = {e["MESSAGE"]: e for e in journal_fields(tag) if e["MESSAGE"].endswith(("b", "d"))}
        assert {e["_COMM"] for e in forged.values()} >= {"multipathd", "python3"}
        assert "was not sent by uid 0 and one of: comm multipathd" in daemon.log_text()
    finally:
        for sender in senders:
            sender.close()
        daemon.stop()


def test_forged_store_entry_from_nobody_is_skipped_counted_and_shown_only_marked(tmp_path):
    daemon = DaemonProcess(tmp_path / "d").start()
    sender = None
    try:
        t0 = since_now()
        kdev = f"vdforged{os.getpid()}"
        fake = {"event_type": "BLK_IO_ERROR", "sub_system": "block", "severity": "Critical", "kdev": kdev,
                "msg": "forged", "timestamp": t0, "event_id": "00000000-0000-4000-8000-%012d" % os.getpid()}
        code = ("from systemd import journal; import json, sys\n"
                "journal.send('forged', IS_PERIPETY='TRUE', SYSLOG_IDENTIFIER='peripetyd', EVENT_TYPE='BLK_IO_ERROR',"
                " PRIORITY='2', KDEV=sys.argv[2], JSON=sys.argv[1])\n")
        subprocess.run(AS_NOBODY + [SYSTEM_PYTHON, "-c", code, json.dumps(fake), kdev], check=True)
        # a genuine event from the daemon afterwards is the sentinel
        sender = Sender("multipathd", f"checker failed path 8:40 in map forge{os.getpid()}",
                        via_link=genuine_daemon_link(tmp_path, "multipathd"))
        wait_for_events(("--since", t0, "--event-type", "DM_MPATH_PATH_FAILED"),
                        lambda evs: any(e["kdev"] == "8:40" for e in evs), what="the sentinel")
        plain = prpt("query", "--since", t0, "--jsonl", "-v").stdout
        assert kdev not in plain
        marked = [json.loads(line) for line in
                  prpt("query", "--since", t0, "--jsonl", "--include-untrusted").stdout.splitlines()]
        forged = [e for e in marked if e["kdev"] == kdev]
        assert len(forged) == 1
        assert forged[0]["untrusted_writer"]["uid"] == str(NOBODY_UID)
        genuine = next(e for e in marked if e["kdev"] == "8:40")
        assert "untrusted_writer" not in genuine
        text = prpt("query", "--since", t0, "--include-untrusted").stdout
        assert "UNTRUSTED(pid=" in text and f"uid={NOBODY_UID}" in text
        # the library reader counts what it skipped
        from peripety.stores import EventFilter, open_store
        from peripety.timespec import parse_time

        store = open_store("journal")
        try:
            assert kdev not in {e.kdev for e in store.query(EventFilter(since=parse_time(t0)))}
            assert store.untrusted_skipped >= 1
        finally:
            store.close()
        # what journald recorded for peripetyd itself: its console script name
        entry = next(e for e in journal_fields(f"forge{os.getpid()}") if e.get("IS_PERIPETY") == "TRUE")
        assert (entry["_COMM"], entry["_UID"]) == ("peripetyd", "0")
    finally:
        if sender:
            sender.close()
        daemon.stop()


def write_config(path: Path, text: bytes) -> Path:
    path.write_bytes(text)
    return path


SITE_RULE = b'''
[[collector.regexs]]
identifier = "tpsited"
regex = '^disk (?P<kdev>\\S+) is sad'
sub_system = "block"
event_type = "SITE_DISK_SAD"
'''


def test_sighup_keeps_daemon_and_rules_on_bad_config_and_reads_new_identifiers(tmp_path):
    config = write_config(tmp_path / "peripetyd.conf", b"[daemon]\nstorm_window = 1\n")
    daemon = DaemonProcess(tmp_path / "d", args=("--config", str(config))).start()
    link = genuine_daemon_link(tmp_path, "tpsited")
    senders = []
    try:
        for bad, why in ((b"[daemon]\nstorm_window = 1 # caf\xe9\n", "is not UTF-8"),
                         (b"[daemon\n", "invalid TOML"),
                         (b"[daemon]\nstore = 'mongodb'\n", "unknown store"),
                         (b"[[collector.regexs]]\nregex = '(?P<kdev>'\nsub_system='block'\nevent_type='X'\n",
                          "collector.regexs[0]")):
            config.write_bytes(bad)
            daemon.signal(signal.SIGHUP)
            _wait_for_log(daemon, why)
            assert daemon.proc.poll() is None
        # the old rules still work: a genuine multipathd line is an event
        t0 = since_now()
        senders.append(Sender("multipathd", "checker failed path 8:50 in map hup",
                              via_link=genuine_daemon_link(tmp_path, "multipathd")))
        wait_for_events(("--since", t0, "--event-type", "DM_MPATH_PATH_FAILED"),
                        lambda evs: any(e["kdev"] == "8:50" for e in evs), what="multipathd after bad reloads")
        # a rule for a new identifier applies after the reload
        config.write_bytes(b"[daemon]\nstorm_window = 1\n" + SITE_RULE)
        daemon.signal(signal.SIGHUP)
        _wait_for_log(daemon, "journal: reading")
        t1 = since_now()
        senders.append(Sender("tpsited", "disk sdq is sad", via_link=link))
        # No --event-type: prpt checks types against /etc/peripetyd.conf, and
        # this daemon's site rule lives in its own --config file.
        events = wait_for_events(("--since", t1),
                                 lambda evs: any(e["event_type"] == "SITE_DISK_SAD" for e in evs),
                                 what="the new identifier's event")
        site = next(e for e in events if e["event_type"] == "SITE_DISK_SAD")
        assert site["kdev"] == "sdq" and site["extension"]["sender_comm"] == "tpsited"
    finally:
        for sender in senders:
            sender.close()
        daemon.stop()


def _wait_for_log(daemon: DaemonProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the daemon log:\n{daemon.log_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def nobody_dir():
    """A directory that belongs to nobody, in /tmp (pytest's tmp_path is root's only)."""
    parent = Path(tempfile.mkdtemp(prefix="peripety-nobody-"))
    os.chmod(parent, 0o755)
    playground = parent / "nobody"
    playground.mkdir()
    shutil.chown(playground, "nobody", "nogroup")
    yield playground
    shutil.rmtree(parent)


def _as_nobody(*args: str) -> None:
    subprocess.run(AS_NOBODY + list(args), check=True)


def test_state_paths_planted_by_a_user_are_refused(tmp_path, nobody_dir):
    victim = tmp_path / "root-only"
    victim.write_text("precious\n")
    os.chmod(victim, 0o600)
    victim_dir = tmp_path / "root-dir"
    victim_dir.mkdir(mode=0o700)
    _as_nobody("ln", "-s", str(victim_dir), str(nobody_dir / "state"))
    _as_nobody("ln", "-s", str(victim), str(nobody_dir / "status.json"))
    _as_nobody("ln", "-s", str(victim), str(nobody_dir / "events.db"))
    good_state = tmp_path / "state"
    cases = [
        (["--state-dir", str(nobody_dir / "state")], str(nobody_dir)),
        (["--state-dir", str(good_state), "--status-file", str(nobody_dir / "status.json")], str(nobody_dir)),
        (["--state-dir", str(good_state), "--store", f"sqlite:{nobody_dir / 'events.db'}"], str(nobody_dir)),
    ]
    for args, named in cases:
        proc = subprocess.run([PERIPETYD, "--no-blk-info-dump", *args], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"refusing to use {named}" in proc.stderr and "owned by uid 65534" in proc.stderr
    assert victim.read_text() == "precious\n"
    assert list(victim_dir.iterdir()) == []
    # a world-writable state directory is refused too, and a symlinked file in a good one
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    proc = subprocess.run([PERIPETYD, "--state-dir", str(open_dir)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "group/world-writable (mode 0777)" in proc.stderr
    good_state.mkdir(mode=0o700, exist_ok=True)
    (good_state / "position.json").symlink_to(victim)
    proc = subprocess.run([PERIPETYD, "--store", f"sqlite:{tmp_path}/e.db", "--state-dir", str(good_state),
                           "--status-file", str(tmp_path / "status.json"), "--no-blk-info-dump"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "position.json: it is a symbolic link" in proc.stderr
    assert victim.read_text() == "precious\n"


def test_sqlite_store_others_could_write_is_refused_to_readers(tmp_path, nobody_dir):
    from peripety.stores.sqlite import SqliteStore

    SqliteStore(tmp_path / "events.db", write=True).close()
    shutil.copy(tmp_path / "events.db", nobody_dir / "events.db")
    shutil.chown(nobody_dir / "events.db", "nobody", "nogroup")
    proc = prpt("query", "--store", f"sqlite:{nobody_dir / 'events.db'}", check=False)
    assert proc.returncode == 1 and "owned by uid 65534, not root" in proc.stderr
    assert prpt("query", "--store", f"sqlite:{nobody_dir / 'events.db'}", "--include-untrusted").returncode == 0
    assert prpt("query", "--store", f"sqlite:{tmp_path / 'events.db'}").returncode == 0
