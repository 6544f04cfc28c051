"""Alerts on the real daemon: [[notify]] actions run by peripetyd for real
failures of a loop device over tests/faultyfs (real EIO), with journald and
udevd running. Absence (no second alert) is proven by stopping the daemon:
at stop every event read has been through the alert output, and every
alert it decided has either finished or been kept as pending in its state
file (notify.json), which the tests read too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.harness.daemon import PERIPETYD, DaemonProcess, Retrigger, query, wait_for_events
from tests.harness.kmsg_tail import KmsgTail
from tests.harness.senders import AS_NOBODY, Sender, genuine_daemon_link
from tests.test_daemon_position import wait_ratelimit_release

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]

RECORDER = """#!/bin/sh
# Keep what peripetyd gave this alert: stdin and the PERIPETY_* variables.
set -e
out={out}
# (the .json last and renamed into place: the test reads complete files)
env | grep '^PERIPETY_' > "$out/$PERIPETY_EVENT_ID.$PERIPETY_ACTION.env"
cat > "$out/$PERIPETY_EVENT_ID.$PERIPETY_ACTION.part"
mv "$out/$PERIPETY_EVENT_ID.$PERIPETY_ACTION.part" "$out/$PERIPETY_EVENT_ID.$PERIPETY_ACTION.json"
"""


def recorder(tmp_path: Path) -> Path:
    out = tmp_path / "alerts"
    out.mkdir()
    script = tmp_path / "record-alert"
    script.write_text(RECORDER.format(out=out))
    script.chmod(0o755)
    return script


def alerts(tmp_path: Path) -> list[dict]:
    found = []
    for path in sorted((tmp_path / "alerts").glob("*.json")):
        env_path = path.with_suffix(".env")
        env = dict(line.split("=", 1) for line in env_path.read_text().splitlines() if "=" in line)
        found.append({"event": json.loads(path.read_text()), "env": env})
    return found


def state(daemon: DaemonProcess) -> dict:
    return json.loads((daemon.state_dir / "notify.json").read_text())


def write_config(tmp_path: Path, body: str, storm_window: int = 5) -> Path:
    path = tmp_path / "peripetyd.conf"
    path.write_text(f"[daemon]\nstorm_window = {storm_window}\n\n{body}")
    return path


def start(tmp_path: Path, config: Path, db: Path) -> DaemonProcess:
    return DaemonProcess(tmp_path / "d", store=f"sqlite:{db}", args=("--config", str(config))).start()


def stored(db: Path, *args: str) -> list[dict]:
    return query("--store", f"sqlite:{db}", *args)


def wait_until(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def fail_until_stored(disk, db: Path, trigger: Retrigger, timeout: float = 40.0) -> list[dict]:
    """Fail reads (fresh sectors) until one of them is a stored event; the
    kernel's ratelimit may swallow a line, never all of them for long."""
    args = ("--blk", disk.loopdev, "--event-type", "BLK_IO_ERROR")
    deadline = time.monotonic() + timeout
    while True:
        trigger()
        try:
            return wait_for_events(("--store", f"sqlite:{db}", *args),
                                   lambda evs: any(e["extension"].get("sector") in map(str, trigger.sectors)
                                                   for e in evs), timeout=6.0, what="a read error")
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def test_a_storm_on_a_failing_disk_fires_one_alert_with_the_event(tmp_path, faulty_disk):
    """The burst of 10 printed lines, then counted aggregates (storm_window
    60): one alert, whose stdin is the stored event's JSON and whose
    environment names the disk."""
    script = recorder(tmp_path)
    config = write_config(tmp_path, f"""
[[notify]]
name = "storm"
exec = ["{script}"]
event_types = ["BLK_IO_ERROR"]
devices = ["{faulty_disk.loopdev}"]
repeat = "once"
""", storm_window=60)
    db = tmp_path / "events.db"
    args = ("--blk", faulty_disk.loopdev, "--event-type", "BLK_IO_ERROR")
    daemon = start(tmp_path, config, db)
    try:
        with KmsgTail() as tail:
            # a fresh ratelimit interval, then 20 failures at once (10 lines)
            wait_ratelimit_release(tail, faulty_disk, 7000)
            faulty_disk.fail_sectors(8192, 4000, "read")
            assert [r.error for r in faulty_disk.read_sectors(8192, 20)] == [5] * 20
            # failures every 0.1 s until the next interval's lines fold into an aggregate
            stop = threading.Event()

            def keep_failing():
                next_sector = 8212
                while not stop.is_set():
                    faulty_disk.read_sectors(next_sector, 1)
                    next_sector += 1
                    stop.wait(0.1)

            reader = threading.Thread(target=keep_failing)
            reader.start()
            try:
                wait_for_events(("--store", f"sqlite:{db}", *args), lambda evs: any(e["count"] > 1 for e in evs),
                                timeout=30, what="a storm aggregate")
            finally:
                stop.set()
                reader.join()
    finally:
        assert daemon.stop() == 0
    events = stored(db, *args)
    assert len(events) >= 11 and any(e["count"] > 1 for e in events)
    got = alerts(tmp_path)
    assert len(got) == 1, [a["event"]["event_id"] for a in got]
    [alert] = got
    # stdin: the first stored event, the very object `prpt query --jsonl` prints
    assert alert["event"] == events[0]
    env = alert["env"]
    first = events[0]
    assert env["PERIPETY_EVENT_ID"] == first["event_id"]
    assert env["PERIPETY_EVENT_TYPE"] == "BLK_IO_ERROR"
    assert env["PERIPETY_SEVERITY"] == "Error"
    assert env["PERIPETY_KDEV"] == faulty_disk.name
    assert env["PERIPETY_DEV_NUM"] == faulty_disk.dev_num
    assert env["PERIPETY_WWID"] == (first["cur_blk_info"]["wwid"] or "")
    assert env["PERIPETY_BLK_PATH"] == faulty_disk.loopdev
    assert env["PERIPETY_HOSTNAME"] == os.uname().nodename
    assert env["PERIPETY_MSG"] == first["msg"] and env["PERIPETY_RAW_MSG"] == first["raw_msg"]
    assert env["PERIPETY_COUNT"] == "1"
    assert env["PERIPETY_ALERT_NUMBER"] == "1" and env["PERIPETY_REPEAT"] == "once"
    saved = state(daemon)
    assert saved["pending"] == []
    [record] = saved["records"]
    assert record["event_type"] == "BLK_IO_ERROR" and record["sent"] == 1
    # every failure after the alerted one was seen and not alerted
    assert record["suppressed"] == sum(e["count"] for e in events) - 1
    assert "alert storm for event " + first["event_id"] + ": exit status 0" in daemon.log_text()


def test_a_hanging_action_times_out_and_the_daemon_keeps_storing(tmp_path, faulty_disk):
    pidfile = tmp_path / "sleep.pid"
    config = write_config(tmp_path, f"""
[[notify]]
name = "hang"
exec = ["/bin/sh", "-c", "sleep 600 & echo $! > {pidfile}; wait"]
devices = ["{faulty_disk.name}"]
timeout = 6

[[notify]]
name = "fails"
exec = "/bin/sh -c 'echo cannot reach the pager >&2; exit 7'"
devices = ["{faulty_disk.name}"]
""")
    db = tmp_path / "events.db"
    daemon = start(tmp_path, config, db)
    try:
        trigger = Retrigger(faulty_disk, first=20000)
        fail_until_stored(faulty_disk, db, trigger)
        sleeper = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the hanging action"))
        # While it hangs: another failure is stored (the sentinel) ...
        fail_until_stored(faulty_disk, db, Retrigger(faulty_disk, first=30000))
        assert os.path.exists(f"/proc/{sleeper}"), "the action should still hang here"
        # ... and the timeout kills the action's whole process group.
        wait_until(lambda: "alert hang for event" in daemon.log_text() and "timed out after 6 s" in daemon.log_text(),
                   "the timeout in the log")
        wait_until(lambda: not os.path.exists(f"/proc/{sleeper}"), "the hanging action's child to be gone", 10)
        assert "alert fails for event" in daemon.log_text()
        assert "exit status 7" in daemon.log_text() and "cannot reach the pager" in daemon.log_text()
    finally:
        assert daemon.stop() == 0
    assert state(daemon)["pending"] == []


def test_a_restart_does_not_alert_again_for_once(tmp_path, faulty_disk):
    """The device named by its /dev/disk/by-diskseq link (udev's; the only
    by-* links this machine's udev rules make)."""
    script = recorder(tmp_path)
    diskseq = Path(f"/sys/block/{faulty_disk.name}/diskseq").read_text().strip()
    link = Path(f"/dev/disk/by-diskseq/{diskseq}")
    wait_until(lambda: link.exists(), f"udev's {link}")
    config = write_config(tmp_path, f"""
[[notify]]
exec = "{script}"
devices = ["{link}"]
repeat = "once"
""")
    db = tmp_path / "events.db"
    daemon = start(tmp_path, config, db)
    try:
        fail_until_stored(faulty_disk, db, Retrigger(faulty_disk, first=40000))
        wait_until(lambda: alerts(tmp_path), "the first alert")
    finally:
        assert daemon.stop() == 0
    restarted = start(tmp_path, config, db)
    try:
        trigger = Retrigger(faulty_disk, first=45000)
        fail_until_stored(faulty_disk, db, trigger)
    finally:
        assert restarted.stop() == 0
    assert len(alerts(tmp_path)) == 1
    assert state(restarted)["pending"] == []
    [record] = state(restarted)["records"]
    assert record["sent"] == 1 and record["suppressed"] >= 1


def slow_alert(tmp_path, faulty_disk, hold: str, done):
    """The config of one alert on ``faulty_disk`` whose program runs the
    shell line ``hold`` (which keeps it running until the test lets go),
    then writes $PERIPETY_RESUMED and its stdin to ``done`` (whole: renamed
    into place, so the test never reads it half written)."""
    script = tmp_path / "slow-alert"
    script.write_text(f"#!/bin/sh\n{hold}\n{{ echo \"$PERIPETY_RESUMED\"; cat; }} > {done}.part && "
                      f"mv {done}.part {done}\n")
    script.chmod(0o755)
    return write_config(tmp_path, f'[[notify]]\nname = "slow"\nexec = "{script}"\ndevices = ["{faulty_disk.name}"]\n'
                                  "timeout = 300\n")


def runs_again(tmp_path, config, db, gate, done, event):
    """Let the held alert program finish, start the daemon again: the cut
    alert for ``event`` runs again, marked resumed. The stopped daemon."""
    gate.touch()
    restarted = start(tmp_path, config, db)
    try:
        text = wait_until(lambda: done.exists() and done.read_text(), "the alert to run again")
    finally:
        assert restarted.stop() == 0
    resumed, stdin = text.split("\n", 1)
    assert resumed == "1"
    assert json.loads(stdin)["event_id"] == event["event_id"]
    return restarted


def test_an_alert_cut_by_a_stop_runs_at_the_next_start(tmp_path, faulty_disk):
    gate, started, done = tmp_path / "gate", tmp_path / "started", tmp_path / "done"
    config = slow_alert(tmp_path, faulty_disk, f"touch {started}\n[ -e {gate} ] || exec sleep 600", done)
    db = tmp_path / "events.db"
    daemon = start(tmp_path, config, db)
    try:
        event = fail_until_stored(faulty_disk, db, Retrigger(faulty_disk, first=50000))[0]
        wait_until(started.exists, "the alert to start")
    finally:
        assert daemon.stop() == 0
    assert [p["event"]["event_id"] for p in state(daemon)["pending"]] == [event["event_id"]]
    assert not done.exists()
    assert "still running at shutdown: killed; it runs again at the next start" in daemon.log_text()
    restarted = runs_again(tmp_path, config, db, gate, done, event)
    assert state(restarted)["pending"] == []


def test_forged_lines_from_a_user_fire_nothing(tmp_path, faulty_disk):
    """nobody cannot write /dev/kmsg; root's own user-space write there and
    nobody's journal lines claiming to be the kernel or multipathd are no
    events, so no alert. The genuine failures that follow (a kernel line, a
    multipathd line from root's multipathd) are the sentinels, and with
    repeat = once a forged alert on the same key would have taken their place."""
    script = recorder(tmp_path)
    config = write_config(tmp_path, f"""
[[notify]]
name = "trust"
exec = ["{script}"]
event_types = ["BLK_IO_ERROR", "DM_MPATH_PATH_FAILED"]
repeat = "once"
""")
    db = tmp_path / "events.db"
    name = faulty_disk.name
    forged_line = f"I/O error, dev {name}, sector 777 op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2"
    tag = f"mpt{os.getpid()}"
    daemon = start(tmp_path, config, db)
    genuine = None
    try:
        as_nobody = subprocess.run(AS_NOBODY + ["sh", "-c", f"echo '<3>{forged_line}' > /dev/kmsg"],
                                   capture_output=True, text=True)
        assert as_nobody.returncode != 0 and "Permission denied" in as_nobody.stderr
        with open("/dev/kmsg", "w") as kmsg:  # root, but user space: facility LOG_USER
            kmsg.write(f"<3>{forged_line}\n")
        subprocess.run(AS_NOBODY + ["logger", "-t", "kernel", forged_line], check=True)
        subprocess.run(AS_NOBODY + ["logger", "-t", "multipathd", f"checker failed path 8:32 in map {tag}"],
                       check=True)
        Sender("multipathd", f"checker failed path 8:33 in map {tag}", comm="multipathd", nobody=True).close()
        # the sentinels
        trigger = Retrigger(faulty_disk, first=60000)
        fail_until_stored(faulty_disk, db, trigger)
        genuine = Sender("multipathd", f"checker failed path 8:36 in map {tag}",
                         via_link=genuine_daemon_link(tmp_path, "multipathd"))
        wait_until(lambda: any(a["event"]["event_type"] == "DM_MPATH_PATH_FAILED" for a in alerts(tmp_path)),
                   "the genuine multipathd alert")
    finally:
        if genuine is not None:
            genuine.close()
        assert daemon.stop() == 0
    got = {a["event"]["event_type"]: a for a in alerts(tmp_path)}
    assert len(alerts(tmp_path)) == 2, [(a["event"]["event_type"], a["event"]["kdev"]) for a in alerts(tmp_path)]
    block = got["BLK_IO_ERROR"]["event"]
    assert block["sources"] == ["kmsg"]
    assert block["extension"]["sector"] in map(str, trigger.sectors)
    assert got["DM_MPATH_PATH_FAILED"]["event"]["kdev"] == "8:36"
    assert got["DM_MPATH_PATH_FAILED"]["event"]["extension"]["sender_uid"] == "0"
    assert state(daemon)["pending"] == []


def test_check_validates_notify_sections_naming_file_and_line(tmp_path):
    script = tmp_path / "alert"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    config = tmp_path / "peripetyd.conf"
    config.write_text(f'[daemon]\nstorm_window = 5\n\n[[notify]]\nname = "pager"\nexec = ["{script}", "--urgent"]\n')
    check = subprocess.run([PERIPETYD, "--check", "--config", str(config)], capture_output=True, text=True)
    assert check.returncode == 1
    assert f"{config}: notify[0].exec (line 6): program {script} is not executable" in check.stderr
    script.chmod(0o755)
    check = subprocess.run([PERIPETYD, "--check", "--config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "notify: 1 alert action(s)" in check.stdout
    assert f"pager: {script} (min_severity Error; repeat daily; timeout 30 s; max_per_hour 20)" in check.stdout
    config.write_text(f'[[notify]]\nexec = "{script}"\nrepeat = "weekly"\n')
    for command in ([PERIPETYD, "--check", "--config", str(config)],
                    [PERIPETYD, "--config", str(config), "--state-dir", str(tmp_path / "s"),
                     "--status-file", str(tmp_path / "status.json"), "--store", f"sqlite:{tmp_path}/e.db"]):
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert run.returncode == 1
        assert f"{config}: notify[0].repeat (line 3): repeat must be one of once, daily, diminishing" in run.stderr


def test_sighup_adds_an_action_and_a_bad_reload_keeps_it(tmp_path, faulty_disk):
    script = recorder(tmp_path)
    config = write_config(tmp_path, "")
    db = tmp_path / "events.db"
    daemon = start(tmp_path, config, db)
    try:
        config.write_text(f'[[notify]]\nname = "added"\nexec = "{script}"\ndevices = ["{faulty_disk.name}"]\n')
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: daemon.log_text().count("config reloaded") >= 1, "the reload")
        config.write_text(f'[[notify]]\nname = "added"\nexec = "{script}"\nrepeat = "sometimes"\n')
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "config not reloaded" in daemon.log_text(), "the refused reload")
        assert f"{config}: notify[0].repeat (line 4): repeat must be one of" in daemon.log_text()
        fail_until_stored(faulty_disk, db, Retrigger(faulty_disk, first=70000))
        got = wait_until(lambda: alerts(tmp_path), "the alert of the added action")
    finally:
        assert daemon.stop() == 0
    assert len(got) == 1 and got[0]["env"]["PERIPETY_ACTION"] == "added"


def test_an_alert_cut_by_kill_9_runs_at_the_next_start(tmp_path, faulty_disk):
    """The alert was written to notify.json when it was decided: a daemon
    killed with SIGKILL while the program runs leaves it pending, and the
    next start runs it again (the program outlives the daemon in its own
    session; the test ends it)."""
    gate, pidfile, done = tmp_path / "gate", tmp_path / "pid", tmp_path / "done"
    config = slow_alert(tmp_path, faulty_disk, f"[ -e {gate} ] || {{ echo $$ > {pidfile}; exec sleep 600; }}", done)
    db = tmp_path / "events.db"
    daemon = start(tmp_path, config, db)
    orphan = None
    try:
        event = fail_until_stored(faulty_disk, db, Retrigger(faulty_disk, first=55000))[0]
        orphan = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), "the alert to start"))
        assert [p["event"]["event_id"] for p in state(daemon)["pending"]] == [event["event_id"]]
        daemon.kill()
    finally:
        if daemon.proc.poll() is None:
            daemon.stop()
        if orphan is not None:
            try:
                os.kill(orphan, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not done.exists()
    restarted = runs_again(tmp_path, config, db, gate, done, event)
    assert state(restarted)["pending"] == []


def test_max_per_hour_holds_while_the_daemon_crash_loops(tmp_path):
    """Three lives of the daemon, the first two ended by kill -9, each with
    two genuine multipathd path failures (each a new device: each worth an
    alert): with max_per_hour = 2 the program runs twice in all, not six
    times. The drops are proven by the events being stored (each stored
    event has been through the alert output) and the final clean stop
    (every decided alert has run or is kept pending)."""
    script = recorder(tmp_path)
    config = write_config(tmp_path, f"""
[[notify]]
name = "pager"
exec = ["{script}"]
event_types = ["DM_MPATH_PATH_FAILED"]
max_per_hour = 2
""")
    db = tmp_path / "events.db"
    link = genuine_daemon_link(tmp_path, "multipathd")
    tag = f"crl{os.getpid()}x"
    for life in range(3):
        daemon = start(tmp_path, config, db)
        senders = []
        try:
            paths = (2 * life, 2 * life + 1)
            for n in paths:
                senders.append(Sender("multipathd", f"checker failed path 8:{40 + n} in map {tag}{n}", via_link=link))
            wait_until(lambda: {f"{tag}{n}" for n in paths} <= {
                e["raw_msg"].rsplit(" ", 1)[-1] for e in stored(db, "--event-type", "DM_MPATH_PATH_FAILED")},
                f"life {life}'s failures stored")
            if life == 0:
                wait_until(lambda: len(alerts(tmp_path)) == 2, "the first two alerts")
        finally:
            for sender in senders:
                sender.close()
            if life < 2 and daemon.proc.poll() is None:
                daemon.kill()  # a crash: nothing saved at stop
        if life == 2:
            assert daemon.stop() == 0
    got = alerts(tmp_path)
    assert sorted(a["event"]["kdev"] for a in got) == ["8:40", "8:41"], [a["event"]["raw_msg"] for a in got]
    final = state(daemon)
    assert final["pending"] == []
    assert len(final["rate"]["pager"]["sent"]) == 2
    # drop counts (PERIPETY_DROPPED of the next alert) are saved at most every 5 s, like the
    # suppressed counts: a kill -9 may lose the last ones; the clean stop's are all kept
    assert 2 <= final["rate"]["pager"]["dropped"] <= 4
    assert "max_per_hour = 2 reached" in daemon.log_text()
