"""Alerts without a daemon: repeat policies on an injected clock, the
[[notify]] schema and its errors, device matching, and the output's
decisions, state file and children (real programs: sh, sleep)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from peripety.config import config_from_text, load_config
from peripety.errors import ConfigError
from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.outputs.notify import NotifyOutput, alert_env, device_key
from peripety.outputs.repeat import DAY, AlertRecord, is_due, next_due, sent
from peripety.outputs.runner import Job, Runner


# -- repeat policies -------------------------------------------------------------------
def alerts_sent(policy: str, times: list[float]) -> list[float]:
    """Feed an event at each time; return the times an alert went out."""
    record, out = None, []
    for now in times:
        if is_due(policy, record, now):
            record = sent(record, now)
            out.append(now)
    return out


HOURLY_FOR_40_DAYS = [h * 3600.0 for h in range(40 * 24)]


def test_once_alerts_the_first_time_only():
    assert alerts_sent("once", HOURLY_FOR_40_DAYS) == [0.0]
    assert next_due("once", AlertRecord(first=5, last=5)) is None


def test_daily_alerts_again_after_each_full_day():
    out = alerts_sent("daily", HOURLY_FOR_40_DAYS)
    assert out == [d * DAY for d in range(40)]
    assert not is_due("daily", AlertRecord(0, 100), 100 + DAY - 1)
    assert is_due("daily", AlertRecord(0, 100), 100 + DAY)


def test_diminishing_doubles_the_interval_like_smartd():
    # after 1, 2, 4, 8, 16 days: alerts at day 0, 1, 3, 7, 15, 31
    assert alerts_sent("diminishing", HOURLY_FOR_40_DAYS) == [d * DAY for d in (0, 1, 3, 7, 15, 31)]
    record = AlertRecord(first=0, last=7 * DAY, sent=4)
    assert next_due("diminishing", record) == 15 * DAY


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="once, daily, diminishing"):
        next_due("hourly", AlertRecord(0, 0))


# -- the [[notify]] schema -----------------------------------------------------------------
def conf(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "peripetyd.conf"
    path.write_text(text)
    return path


GOOD = """\
[daemon]
storm_window = 5

[[notify]]
name = "mail"
exec = ["/bin/sh", "-c", "cat > /dev/null"]
min_severity = "crit"
event_types = ["BLK_IO_ERROR", "FS_*"]
sub_systems = ["block", "EXT4"]
devices = ["sdb", "/dev/sdc", "8:64", "naa.5000c500a1b2c3d4"]
repeat = "diminishing"
timeout = 2.5
max_per_hour = 3

[[notify]]
exec = "/bin/echo 'two words' x"
"""


def test_a_full_notify_section_is_read(tmp_path):
    config = load_config(conf(tmp_path, GOOD))
    first, second = config.notify
    assert first.name == first.key == "mail"
    assert first.argv == ("/bin/sh", "-c", "cat > /dev/null")
    assert first.min_severity == Severity.Critical
    assert first.event_types == {"BLK_IO_ERROR"} and first.event_type_patterns == ("FS_*",)
    assert first.sub_systems == {"block", "ext4"}
    assert {"sdb", "/dev/sdb", "sdc", "/dev/sdc", "8:64", "naa.5000c500a1b2c3d4"} <= first.devices
    assert (first.repeat, first.timeout, first.max_per_hour) == ("diminishing", 2.5, 3)
    # defaults, and a string split as a shell splits words (no shell runs)
    assert second.argv == ("/bin/echo", "two words", "x")
    assert (second.min_severity, second.repeat, second.timeout, second.max_per_hour) == \
        (Severity.Error, "daily", 30.0, 20)
    assert second.name == "notify[1] (echo)"
    assert second.where == "notify[1] (line 15)"


@pytest.mark.parametrize("section, message", [
    ('exec = "/bin/true"\nrepeat = "weekly"', r"notify\[0\]\.repeat \(line 3\): repeat must be one of once, daily, diminishing"),
    ('exec = "/bin/true"\nmin_severity = "bad"', r"notify\[0\]\.min_severity \(line 3\): unknown severity 'bad'"),
    ('exec = "/bin/true"\nevent_types = ["BLK_IO_EROR"]', r"notify\[0\]\.event_types \(line 3\): unknown event type 'BLK_IO_EROR'"),
    ('exec = "/bin/true"\nevent_types = ["NOPE_*"]', r"notify\[0\]\.event_types \(line 3\): pattern 'NOPE_\*' matches no known event type"),
    ('exec = "/bin/true"\nsub_systems = ["zfs"]', r"notify\[0\]\.sub_systems \(line 3\): unknown sub_system 'zfs'"),
    ('exec = "/bin/true"\ndevices = ["sdb", ""]', r"notify\[0\]\.devices \(line 3\): devices must not hold an empty string"),
    ('exec = "/bin/true"\ntimeout = 0', r"notify\[0\]\.timeout \(line 3\): timeout must be a number of seconds"),
    ('exec = "/bin/true"\nmax_per_hour = -1', r"notify\[0\]\.max_per_hour \(line 3\)"),
    ('exec = "/bin/true"\nsevrity = "Error"', r"notify\[0\]\.sevrity \(line 3\): unknown key 'sevrity' in \[\[notify\]\] \(known: name, exec,"),
    ('exec = "/bin/echo \'unbalanced"', r"notify\[0\]\.exec \(line 2\): exec: No closing quotation"),
    ('exec = []', r"notify\[0\]\.exec \(line 2\): exec names no program"),
    ('exec = [1, 2]', r"notify\[0\]\.exec \(line 2\): exec must be a list of strings"),
    ('min_severity = "Error"', r"notify\[0\] \(line 1\): \[\[notify\]\] has no exec"),
])
def test_notify_errors_name_the_file_the_section_and_the_line(tmp_path, section, message):
    path = conf(tmp_path, "[[notify]]\n" + section + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        load_config(path)


def test_two_actions_with_one_name_are_refused(tmp_path):
    path = conf(tmp_path, '[[notify]]\nname = "a"\nexec = "/bin/true"\n\n[[notify]]\nname = "a"\nexec = "/bin/false"\n')
    with pytest.raises(ConfigError, match=r"notify\[1\] \(line 5\): a second \[\[notify\]\] with the same name as notify\[0\]"):
        load_config(path)


def test_notify_must_be_an_array_of_tables(tmp_path):
    with pytest.raises(ConfigError, match="notify must be an array of tables"):
        load_config(conf(tmp_path, "notify = 3\n"))
    with pytest.raises(ConfigError, match=r"notify \(line 2\): notify must be an array of tables: write each action as a \[\[notify\]\]"):
        load_config(conf(tmp_path, '# one bracket too few\n[notify]\nexec = "/bin/true"\n'))
    with pytest.raises(ConfigError, match=r"\[notfy\] \(line 1\): unknown section \(expected .*\[senders\], \[\[notify\]\], \[metrics\]\)"):
        load_config(conf(tmp_path, '[[notfy]]\nexec = "/bin/true"\n'))


def test_a_user_rules_event_type_may_be_alerted_on():
    text = '''
[[collector.regexs]]
starts_with = "site:"
regex = 'site: (?P<kdev>\\S+) broke'
sub_system = "block"
event_type = "SITE_BROKE"

[[notify]]
exec = "/bin/true"
event_types = ["SITE_BROKE"]
'''
    assert config_from_text(text).notify[0].event_types == {"SITE_BROKE"}


def test_program_checks_name_the_exec_line(tmp_path):
    script = tmp_path / "alert"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    config = load_config(conf(tmp_path, f'# alerts\n[[notify]]\nexec = ["{script}"]\n\n[[notify]]\nexec = "no-such-alert-program"\n'))
    with pytest.raises(ConfigError, match=rf"notify\[0\]\.exec \(line 3\): program {script} is not executable \(chmod \+x"):
        config.notify[0].program()
    with pytest.raises(ConfigError, match=r"notify\[1\]\.exec \(line 6\): program 'no-such-alert-program' not found in PATH"):
        config.notify[1].program()
    script.chmod(0o755)
    assert config.notify[0].program() == str(script)


# -- matching ------------------------------------------------------------------------------
def disk_event(kdev="sdb", event_type="BLK_IO_ERROR", severity=Severity.Error, wwid="naa.5000c500a1b2c3d4",
               count=1, **kw) -> StorageEvent:
    info = BlkInfo(wwid=wwid, blk_type="SCSI", blk_path=f"/dev/{kdev}", preferred_blk_path=f"/dev/{kdev}",
                   dev_num="8:16")
    return StorageEvent(event_type, kw.pop("sub_system", "block"), severity, kdev=kdev, dev_num="8:16",
                        cur_blk_info=info, count=count, raw_msg=f"I/O error, dev {kdev}, sector 2048", **kw)


def action_with(text: str):
    return config_from_text('[[notify]]\nexec = "/bin/true"\n' + text).notify[0]


@pytest.mark.parametrize("spec", ["sdb", "/dev/sdb", "8:16", "naa.5000c500a1b2c3d4"])
def test_a_device_matches_by_name_path_number_or_wwid(spec):
    action = action_with(f'devices = ["{spec}"]')
    assert action.matches(disk_event())
    other = StorageEvent("BLK_IO_ERROR", "block", Severity.Error, kdev="sdc", dev_num="8:32",
                         cur_blk_info=BlkInfo(wwid="naa.other", blk_path="/dev/sdc", dev_num="8:32"))
    assert not action.matches(other)


def test_a_link_matches_the_device_it_points_to(tmp_path):
    link = tmp_path / "wwn-0x5000c500a1b2c3d4"
    link.symlink_to("/dev/null")  # any existing target; its name is what events carry
    action = action_with(f'devices = ["{link}"]')
    assert action.matches(StorageEvent("BLK_IO_ERROR", "block", Severity.Error, kdev="null"))


def test_an_event_on_a_device_above_matches_the_disk_below():
    action = action_with('devices = ["sdb"]\nevent_types = ["FS_ERROR"]')
    fs = StorageEvent("FS_ERROR", "ext4", Severity.Error, kdev="dm-0",
                      cur_blk_info=BlkInfo(wwid="LVM-x", blk_path="/dev/dm-0", owners_paths=["/dev/sdb"],
                                           owners_wwids=["naa.5000c500a1b2c3d4"]))
    assert action.matches(fs)


def test_filters_severity_type_and_sub_system():
    action = action_with('min_severity = "Error"\nevent_types = ["FS_*", "BLK_IO_ERROR"]\nsub_systems = ["block"]')
    assert action.matches(disk_event())
    assert action.matches(disk_event(severity=Severity.Critical))
    assert not action.matches(disk_event(severity=Severity.Warning))
    assert action.why_not(disk_event(severity=Severity.Warning)) == "severity Warning is below min_severity Error"
    assert not action.matches(disk_event(event_type="SCSI_SENSE_KEY"))
    assert not action.matches(disk_event(event_type="FS_ERROR", sub_system="ext4"))


# -- the output: decisions, state, children -------------------------------------------------------
class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def recorder(tmp_path: Path, extra: str = "", name="rec") -> str:
    """An action that appends its environment and stdin to files named by event id."""
    out = tmp_path / "alerts"
    out.mkdir(exist_ok=True)
    script = f'env | grep ^PERIPETY_ > {out}/$PERIPETY_EVENT_ID.env; cat > {out}/$PERIPETY_EVENT_ID.json'
    return f'[[notify]]\nname = "{name}"\nexec = ["/bin/sh", "-c", "{script}"]\n{extra}\n'


def alerts(tmp_path: Path) -> list[dict]:
    found = []
    for path in sorted((tmp_path / "alerts").glob("*.json"), key=os.path.getmtime):
        env = dict(line.split("=", 1) for line in path.with_suffix(".env").read_text().splitlines())
        found.append({"event": json.loads(path.read_text()), "env": env})
    return found


def run_out(output: NotifyOutput, timeout=10.0) -> None:
    deadline = time.monotonic() + timeout
    output.tick()
    while output.runner.busy():
        assert time.monotonic() < deadline, "alert programs did not finish"
        time.sleep(0.02)
        output.tick()


def open_output(tmp_path, text, clock=None) -> NotifyOutput:
    config = config_from_text(text)
    return NotifyOutput(config.notify, tmp_path / "state" / "notify.json", clock=clock or Clock())


@pytest.fixture
def state_dir(tmp_path):
    (tmp_path / "state").mkdir(mode=0o700)
    return tmp_path / "state"


def test_a_storm_burst_and_its_aggregates_send_one_alert(tmp_path, state_dir):
    output = open_output(tmp_path, recorder(tmp_path, 'repeat = "once"'))
    burst = [disk_event() for _ in range(10)]
    aggregates = [disk_event(count=250) for _ in range(5)]
    for event in burst + aggregates:
        output.on_event(event)
    output.on_event(disk_event(kdev="sdc", wwid="naa.other"))  # another disk: its own alert
    output.on_event(disk_event(event_type="SCSI_SENSE_KEY", severity=Severity.Warning))  # below Error
    run_out(output)
    got = {a["event"]["kdev"]: a for a in alerts(tmp_path)}
    assert sorted(got) == ["sdb", "sdc"]
    first = got["sdb"]
    assert first["event"] == json.loads(burst[0].to_json())
    env = first["env"]
    assert env["PERIPETY_EVENT_TYPE"] == "BLK_IO_ERROR"
    assert env["PERIPETY_SEVERITY"] == "Error"
    assert env["PERIPETY_KDEV"] == "sdb"
    assert env["PERIPETY_WWID"] == "naa.5000c500a1b2c3d4"
    assert env["PERIPETY_BLK_PATH"] == "/dev/sdb"
    assert env["PERIPETY_DEV_NUM"] == "8:16"
    assert env["PERIPETY_COUNT"] == "1"
    assert env["PERIPETY_EVENT_ID"] == burst[0].event_id
    assert env["PERIPETY_ALERT_NUMBER"] == "1"
    assert env["PERIPETY_ACTION"] == "rec"
    state = json.loads((state_dir / "notify.json").read_text())
    assert state["pending"] == []
    [record] = [r for r in state["records"] if r["device"] == "naa.5000c500a1b2c3d4"]
    assert record["event_type"] == "BLK_IO_ERROR" and record["sent"] == 1
    output.close()
    # 9 burst events + 5 aggregates of 250 were not alerted
    state = json.loads((state_dir / "notify.json").read_text())
    assert [r["suppressed"] for r in state["records"] if r["device"] == "naa.5000c500a1b2c3d4"] == [9 + 5 * 250]


def test_daily_alerts_again_next_day_and_a_restart_remembers(tmp_path, state_dir):
    clock = Clock()
    text = recorder(tmp_path, 'repeat = "daily"')
    output = open_output(tmp_path, text, clock)
    first = disk_event()
    output.on_event(first)
    output.on_event(disk_event())
    run_out(output)
    output.close()
    clock.now += DAY - 60
    restarted = open_output(tmp_path, text, clock)  # a restart: same state file
    restarted.on_event(disk_event())
    clock.now += 60
    second = disk_event(count=7)
    restarted.on_event(second)
    run_out(restarted)
    restarted.close()
    got = alerts(tmp_path)
    assert [a["event"]["event_id"] for a in got] == [first.event_id, second.event_id]
    assert got[1]["env"]["PERIPETY_ALERT_NUMBER"] == "2"
    assert got[1]["env"]["PERIPETY_SUPPRESSED"] == "2"  # the two events in between
    assert got[1]["env"]["PERIPETY_COUNT"] == "7"


def test_once_survives_a_restart(tmp_path, state_dir):
    text = recorder(tmp_path, 'repeat = "once"')
    output = open_output(tmp_path, text)
    output.on_event(disk_event())
    run_out(output)
    output.close()
    clock = Clock(Clock().now + 400 * DAY)
    restarted = open_output(tmp_path, text, clock)
    restarted.on_event(disk_event())
    restarted.on_event(disk_event(event_type="FS_ERROR", sub_system="ext4"))  # sentinel: another type
    run_out(restarted)
    restarted.close()
    assert [a["event"]["event_type"] for a in alerts(tmp_path)] == ["BLK_IO_ERROR", "FS_ERROR"]


def test_an_alert_running_at_shutdown_runs_again_at_the_next_start(tmp_path, state_dir):
    gate = tmp_path / "gate"
    out = tmp_path / "done"
    script = f"[ -e {gate} ] || exec sleep 600; cat >> {out}"
    text = f'[[notify]]\nname = "slow"\nexec = ["/bin/sh", "-c", "{script}"]\n'
    output = open_output(tmp_path, text)
    event = disk_event()
    output.on_event(event)
    output.tick()  # started; it waits for the gate
    assert output.runner.jobs()
    output.close()  # killed after the grace, kept
    state = json.loads((state_dir / "notify.json").read_text())
    assert [p["event"]["event_id"] for p in state["pending"]] == [event.event_id]
    assert not out.exists()
    gate.touch()
    restarted = open_output(tmp_path, text)
    run_out(restarted)
    restarted.close()
    assert json.loads(out.read_text())["event_id"] == event.event_id
    assert json.loads((state_dir / "notify.json").read_text())["pending"] == []


def test_max_per_hour_drops_and_counts_and_the_next_alert_says_so(tmp_path, state_dir):
    output = open_output(tmp_path, recorder(tmp_path, "max_per_hour = 2"))
    events = [disk_event(kdev=f"sd{c}", wwid=f"w{c}") for c in "bcdef"]
    for event in events:
        output.on_event(event)
    run_out(output)
    assert sorted(a["event"]["kdev"] for a in alerts(tmp_path)) == ["sdb", "sdc"]
    assert output.status()["dropped"] == 3
    output.close()


def test_max_per_hour_holds_across_restarts(tmp_path, state_dir):
    """A daemon restarted (crash loop) under a storm of failures on many
    disks runs the program at most max_per_hour times in an hour: the
    window is in notify.json, and so is the drop count the next alert
    reports."""
    clock = Clock()
    text = recorder(tmp_path, "max_per_hour = 2")
    disks = iter([disk_event(kdev=f"sd{c}", wwid=f"w{c}") for c in "bcdefghij"])
    for _ in range(4):  # four lives of the daemon within minutes, two failing disks each
        output = open_output(tmp_path, text, clock)
        output.on_event(next(disks))
        output.on_event(next(disks))
        run_out(output)
        output.close()
        clock.now += 60
    assert sorted(a["event"]["kdev"] for a in alerts(tmp_path)) == ["sdb", "sdc"]
    state = json.loads((state_dir / "notify.json").read_text())
    assert state["version"] == 2
    assert state["rate"] == {"rec": {"sent": [Clock().now, Clock().now], "dropped": 6}}
    # an hour after the first alerts: the next disk alerts, and says what was dropped
    clock.now = Clock().now + 3600 + 1
    output = open_output(tmp_path, text, clock)
    output.on_event(next(disks))
    run_out(output)
    output.close()
    last = alerts(tmp_path)[-1]
    assert last["event"]["kdev"] == "sdj" and last["env"]["PERIPETY_DROPPED"] == "6"
    assert json.loads((state_dir / "notify.json").read_text())["rate"] == {"rec": {"sent": [clock.now]}}


def test_a_clock_set_back_keeps_the_window_for_at_most_an_hour(tmp_path, state_dir):
    clock = Clock()
    text = recorder(tmp_path, "max_per_hour = 1")
    output = open_output(tmp_path, text, clock)
    output.on_event(disk_event(kdev="sdb", wwid="wb"))
    run_out(output)
    output.close()
    clock.now -= 86400  # set back a day: the alert "from tomorrow" counts as sent now
    output = open_output(tmp_path, text, clock)
    output.on_event(disk_event(kdev="sdc", wwid="wc"))
    clock.now += 3600 + 1
    output.on_event(disk_event(kdev="sdd", wwid="wd"))
    run_out(output)
    output.close()
    assert [a["event"]["kdev"] for a in alerts(tmp_path)] == ["sdb", "sdd"]


def test_a_version_1_state_file_is_read(tmp_path, state_dir):
    (state_dir / "notify.json").write_text(json.dumps({"version": 1, "pending": [], "records": [
        {"action": "rec", "device": "naa.5000c500a1b2c3d4", "event_type": "BLK_IO_ERROR", "first": Clock().now,
         "last": Clock().now, "sent": 1, "suppressed": 0}]}))
    output = open_output(tmp_path, recorder(tmp_path, 'repeat = "once"\nmax_per_hour = 1'))
    output.on_event(disk_event())  # once, and already sent
    output.on_event(disk_event(kdev="sdc", wwid="wc"))
    run_out(output)
    output.close()
    assert [a["event"]["kdev"] for a in alerts(tmp_path)] == ["sdc"]


def test_state_of_actions_no_longer_configured_is_forgotten(tmp_path, state_dir):
    both = recorder(tmp_path, "max_per_hour = 1", name="keep") + recorder(tmp_path, "max_per_hour = 1", name="gone")
    output = open_output(tmp_path, both)
    output.on_event(disk_event(kdev="sdb", wwid="wb"))
    output.on_event(disk_event(kdev="sdc", wwid="wc"))  # dropped by both: max_per_hour
    run_out(output)
    output.close()
    state = json.loads((state_dir / "notify.json").read_text())
    assert sorted(r["action"] for r in state["records"]) == ["gone", "keep"]
    assert sorted(state["rate"]) == ["gone", "keep"]
    # a start with "gone" removed from the config
    output = open_output(tmp_path, recorder(tmp_path, "max_per_hour = 1", name="keep"))
    output.close()
    state = json.loads((state_dir / "notify.json").read_text())
    assert [r["action"] for r in state["records"]] == ["keep"]
    assert list(state["rate"]) == ["keep"]
    # a reload without "keep": forgotten at once
    output = open_output(tmp_path, recorder(tmp_path, "max_per_hour = 1", name="keep"))
    output.reconfigure(config_from_text(recorder(tmp_path, name="other")))
    state = json.loads((state_dir / "notify.json").read_text())
    assert state["records"] == [] and state["rate"] == {}
    output.close()


def test_a_full_queue_drops_beyond_its_bound(tmp_path, state_dir):
    output = open_output(tmp_path, recorder(tmp_path, "max_per_hour = 0"))
    output.runner.max_queued = 3
    for c in "bcdefg":
        output.on_event(disk_event(kdev=f"sd{c}", wwid=f"w{c}"))
    run_out(output)
    assert sorted(a["event"]["kdev"] for a in alerts(tmp_path)) == ["sdb", "sdc", "sdd"]
    # the dropped ones were not marked as alerted: their next event alerts
    output.on_event(disk_event(kdev="sdg", wwid="wg"))
    run_out(output)
    assert sorted(a["event"]["kdev"] for a in alerts(tmp_path)) == ["sdb", "sdc", "sdd", "sdg"]
    output.close()


def test_a_damaged_state_file_is_reported_and_replaced(tmp_path, state_dir, caplog):
    (state_dir / "notify.json").write_text("{not json")
    output = open_output(tmp_path, recorder(tmp_path))
    assert "is damaged" in caplog.text
    output.on_event(disk_event())
    run_out(output)
    output.close()
    assert json.loads((state_dir / "notify.json").read_text())["records"]


def test_the_state_file_is_not_read_through_a_symlink(tmp_path, state_dir, caplog):
    (tmp_path / "elsewhere.json").write_text('{"records": [], "pending": []}')
    (state_dir / "notify.json").symlink_to(tmp_path / "elsewhere.json")
    output = open_output(tmp_path, recorder(tmp_path))
    assert "cannot read" in caplog.text and "symbolic link" in caplog.text
    output.close()


def test_device_key_prefers_the_wwid():
    assert device_key(disk_event()) == "naa.5000c500a1b2c3d4"
    assert device_key(StorageEvent("BLK_IO_ERROR", "block", kdev="loop3")) == "loop3"


def test_environment_carries_no_inherited_peripety_variables(monkeypatch):
    monkeypatch.setenv("PERIPETY_KDEV", "forged")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    action = action_with("")
    env = alert_env(disk_event(msg="bad\0byte"), action)
    assert "NOTIFY_SOCKET" not in env and env["PATH"]
    assert env["PERIPETY_KDEV"] == "sdb"
    assert env["PERIPETY_MSG"] == "badbyte"
    assert env["PERIPETY_SUBJECT"].endswith("Error BLK_IO_ERROR on /dev/sdb")


# -- the runner ------------------------------------------------------------------------------------
def job(argv, timeout=10.0, stdin=b"{}\n", name="j"):
    return Job(id=name, name=name, argv=tuple(argv), env=dict(os.environ), stdin=stdin, timeout=timeout)


def test_a_hanging_program_is_killed_with_its_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    runner = Runner()
    runner.submit(job(["/bin/sh", "-c", f"trap '' TERM; sleep 600 & echo $! > {pidfile}; wait"], timeout=0.3))
    runner.poll()
    done = runner.wait(time.monotonic() + 10)
    assert len(done) == 1 and done[0].timed_out and not done[0].ok
    assert "timed out after 0.3 s" in done[0].describe()
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        assert time.monotonic() < deadline, "the program's child survived"
        time.sleep(0.05)


def test_a_program_that_never_reads_stdin_gets_a_large_event_without_blocking():
    runner = Runner()
    runner.submit(job(["/bin/sh", "-c", "exit 3"], stdin=b"x" * (4 << 20)))  # 64 times a pipe's buffer
    assert runner.poll() == []  # started: nothing to write while it runs
    [done] = runner.wait(time.monotonic() + 10)
    assert done.status == 3 and done.describe().startswith("exit status 3")


def test_a_missing_program_is_reported_not_raised():
    runner = Runner()
    runner.submit(job(["/nonexistent/alert"]))
    [done] = runner.poll()
    assert done.error and "No such file" in done.error


def test_at_most_max_children_run_at_once(tmp_path):
    runner = Runner(max_children=2)
    for i in range(5):
        runner.submit(job(["/bin/sleep", "0.2"], name=str(i)))
    runner.poll()
    assert len(runner._running) == 2 and len(runner._queue) == 3
    done = runner.wait(time.monotonic() + 10)
    assert sorted(d.job.name for d in done) == ["0", "1", "2", "3", "4"] and all(d.ok for d in done)


def test_output_tail_is_kept_for_the_log():
    runner = Runner()
    runner.submit(job(["/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 1"]))
    [done] = runner.wait(time.monotonic() + 10)
    assert "to-stdout" in done.output and "to-stderr" in done.output


def test_sigterm_ends_a_program_by_signal_name():
    runner = Runner()
    runner.submit(job(["/bin/sleep", "600"], timeout=0.2))
    [done] = runner.wait(time.monotonic() + 10)
    assert done.status == -signal.SIGTERM and done.timed_out
