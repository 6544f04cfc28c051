"""Alerts: ``[[notify]]`` actions run a program for the stored events that
pass their filter (doc/design.md, "Outputs"; the sections are read by
``notify_config.py``, the programs run by ``runner.py``).

Per action, device (its WWID where known, else the kernel name) and event
type, the repeat policy (``repeat.py``) decides whether an event is worth a
new alert; so a storm (its first events one by one, then counted
aggregates) is one alert, and a failing disk is not mailed about every
minute. ``max_per_hour`` caps each action besides (many disks failing
together) over a rolling hour of wall-clock time; what it drops is logged
and counted in the next alert.

What is sent survives a restart: ``notify.json`` in the daemon's state
directory holds the repeat records, each action's rate window (when its
alerts of the last hour were decided, and how many were dropped since its
last alert) and every alert decided but not yet finished. It is written
(atomically) when an alert is decided, before the daemon saves a read
position past that event, so:

- a restart never alerts again about what was already alerted (``once``
  means once per device and type, restarts included);
- a restart does not reset ``max_per_hour``: a daemon crash-looping under a
  storm still runs an action's program at most that many times an hour
  (a wall clock set back counts the alerts "from the future" as sent now:
  they hold for at most one more hour);
- an alert decided but not finished when the daemon stopped (still queued,
  still running at SIGTERM after a short grace, or cut by ``kill -9``) is
  run again at the next start: at least once, never lost; only a program
  interrupted half-way can see its event twice. It was counted in the rate
  window when decided, so running it again takes no other alert's place.

Records, windows and drop counts of actions no longer in the config are
forgotten at start and at a reload (an unfinished alert of such an action
is dropped at the next start, with a warning).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
from pathlib import Path

from ..errors import ConfigError, PeripetyError
from ..event import StorageEvent, format_timestamp
from ..event_json import compact_json
from ..safefiles import open_private, write_atomically
from .notify_config import NotifyAction, device_identities
from .repeat import AlertRecord, is_due, sent
from .runner import Finished, Job, Runner

log = logging.getLogger("peripety.outputs.notify")

STATE_FILE = "notify.json"
STATE_VERSION = 2
"""2 added ``rate``; a version 1 file is read (with no rate windows)."""
CLOSE_GRACE = 2.0  # seconds running programs get at shutdown before they are killed (and kept)
SAVE_INTERVAL = 5.0  # seconds: suppressed-event counts are saved at most this often
HOUR = 3600.0
_ENV_MAX = 4096  # characters of one PERIPETY_* value
# What systemd hands the service itself, not meant for its children.
_SERVICE_ONLY = frozenset({"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_PID",
                           "WATCHDOG_USEC"})
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def device_key(event: StorageEvent) -> str:
    """Which device the repeat state is about: its WWID where known (a
    name can move to another disk), else its kernel name or number."""
    info = event.cur_blk_info
    return (info.wwid if info and info.wwid else "") or event.kdev or event.dev_num or "-"


def alert_env(event: StorageEvent, action: NotifyAction, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The program's environment: the daemon's own (less any PERIPETY_*
    and systemd's service-only variables), then the event's main fields
    as ``PERIPETY_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERIPETY_") and k not in _SERVICE_ONLY}
    env.setdefault("PATH", DEFAULT_PATH)
    info = event.cur_blk_info
    blk_path = (info.preferred_blk_path or info.blk_path) if info else ""
    if not blk_path and event.kdev and "/" not in event.kdev and ":" not in event.kdev:
        blk_path = "/dev/" + event.kdev
    fields = {
        "EVENT_TYPE": event.event_type,
        "SEVERITY": event.severity.name,
        "SUB_SYSTEM": event.sub_system,
        "KDEV": event.kdev,
        "DEV_NUM": event.dev_num or (info.dev_num if info else ""),
        "WWID": info.wwid if info else "",
        "BLK_PATH": blk_path,
        "MOUNT_POINT": (info.mount_point if info else None) or event.extension.get("mount_point", ""),
        "MSG": event.msg,
        "RAW_MSG": event.raw_msg,
        "EVENT_ID": event.event_id,
        "HOSTNAME": event.hostname,
        "TIMESTAMP": format_timestamp(event.timestamp),
        "COUNT": str(event.count),
        "SECTOR": event.extension.get("sector", ""),
        "ROOT_CAUSE_EVENT_ID": event.root_cause_event_id or "",
        "ACTION": action.name,
        "REPEAT": action.repeat,
        "SUBJECT": f"peripety on {event.hostname}: {event.severity.name} {event.event_type} on "
                   f"{blk_path or event.kdev or 'no device'}",
    }
    fields.update(extra or {})
    for key, value in fields.items():
        env["PERIPETY_" + key] = str(value).replace("\0", "")[:_ENV_MAX]
    return env


def make_job(action: NotifyAction, event: StorageEvent, extra: dict[str, str], job_id: str) -> Job:
    """The program run for ``event``: JSON on stdin (the object ``prpt
    query --jsonl`` prints, one line), the fields in the environment."""
    return Job(id=job_id, name=action.name, argv=action.argv, env=alert_env(event, action, extra),
               stdin=(compact_json(event) + "\n").encode("utf-8"), timeout=action.timeout)


def log_finished(done: Finished) -> None:
    job = done.job
    text = f"alert {job.name} for event {job.id.split('/')[0]}: {done.describe()}"
    if done.ok:
        log.info("%s", text)
    else:
        log.error("%s%s", text, f"; its output: {done.output[-500:]}" if done.output else "")


class NotifyOutput:
    """The daemon's alert output: filter, repeat policy, rate limit, runner."""

    name = "notify"

    def __init__(self, actions: tuple[NotifyAction, ...], state_path: Path, *, clock=time.time,
                 monotonic=time.monotonic, runner: Runner | None = None):
        self.actions = tuple(actions)
        self.state_path = Path(state_path)
        self.clock = clock
        self.monotonic = monotonic
        self.runner = runner or Runner(clock=monotonic)
        self.records: dict[tuple[str, str, str], AlertRecord] = {}
        self.pending: dict[str, dict] = {}
        """Alerts decided and not finished: job id -> {action, event, extra}."""
        self._sent_times: dict[str, collections.deque] = {}
        """Per action with a max_per_hour: wall-clock times of its alerts of the last hour."""
        self._dropped: dict[str, int] = {}
        self._drop_logged: set[str] = set()
        self._dirty = False
        self._saved_at = 0.0
        self._save_failed = False
        self._load()
        self._forget_removed_actions()
        self._check_programs()
        self._resume_pending()

    # -- the output interface ------------------------------------------------------
    def on_event(self, event: StorageEvent) -> None:
        decided = False
        identities = None  # the event's device names: computed once, for the actions that filter on them
        for action in self.actions:
            if action.devices and identities is None:
                identities = device_identities(event)
            if action.matches(event, identities):
                decided |= self._consider(action, event)
        if decided:
            self._save()

    def tick(self) -> None:
        finished = self.runner.poll()
        for done in finished:
            log_finished(done)
            self.pending.pop(done.job.id, None)
        if finished or (self._dirty and self.monotonic() - self._saved_at >= SAVE_INTERVAL):
            self._save()

    def next_deadline(self) -> float | None:
        return self.runner.next_deadline()

    def reconfigure(self, config) -> None:
        self.actions = tuple(config.notify)
        if self._forget_removed_actions():
            self._save()
        self._check_programs()

    def close(self) -> None:
        finished, unfinished = self.runner.stop(CLOSE_GRACE)
        for done in finished:
            log_finished(done)
            self.pending.pop(done.job.id, None)
        if unfinished:
            log.warning("%d alert(s) not finished at shutdown: kept in %s, run at the next start",
                        len(unfinished), self.state_path)
        self._save(fsync=True)

    def status(self) -> dict:
        return {"actions": [a.name for a in self.actions], "pending": len(self.pending),
                "dropped": sum(self._dropped.values())}

    # -- deciding ----------------------------------------------------------------------
    def _consider(self, action: NotifyAction, event: StorageEvent) -> bool:
        """Alert about ``event`` with ``action`` if its repeat policy and
        rate limit allow; True when an alert was queued."""
        key = (action.key, device_key(event), event.event_type)
        record = self.records.get(key)
        now = self.clock()
        if not is_due(action.repeat, record, now):
            record.suppressed += event.count
            self._dirty = True
            return False
        if not self._rate_allows(action):
            self._drop(action, event, f"max_per_hour = {action.max_per_hour} reached")
            return False
        number = (record.sent + 1) if record else 1
        extra = {"ALERT_NUMBER": str(number), "SUPPRESSED": str(record.suppressed if record else 0),
                 "DROPPED": str(self._dropped.get(action.key, 0))}
        job_id = f"{event.event_id}/{action.key}"
        if job_id in self.pending:
            return False  # the same event through the same action: already on its way
        if not self.runner.submit(make_job(action, event, extra, job_id)):
            self._drop(action, event, f"{self.runner.max_queued} alerts already wait for a program slot")
            return False
        self.records[key] = sent(record, now)
        self.pending[job_id] = {"action": action.key, "event": event.to_dict(), "extra": extra}
        self._dropped.pop(action.key, None)
        self._drop_logged.discard(action.key)
        if action.max_per_hour:
            self._sent_times.setdefault(action.key, collections.deque()).append(now)
        log.info("alert %s: %s %s on %s (alert %d for this device and type, repeat %s)", action.name,
                 event.severity.name, event.event_type, event.kdev or "-", number, action.repeat)
        return True

    def _rate_allows(self, action: NotifyAction) -> bool:
        if action.max_per_hour == 0:
            return True
        times = self._sent_times.get(action.key)
        if not times:
            return True
        now = self.clock()
        if times[-1] > now:  # the wall clock went back: what is "in the future" counts as sent now
            self._sent_times[action.key] = times = collections.deque(min(t, now) for t in times)
        while times and times[0] <= now - HOUR:
            times.popleft()
        return len(times) < action.max_per_hour

    def _drop(self, action: NotifyAction, event: StorageEvent, why: str) -> None:
        self._dropped[action.key] = self._dropped.get(action.key, 0) + 1
        self._dirty = True
        level = logging.DEBUG if action.key in self._drop_logged else logging.WARNING
        self._drop_logged.add(action.key)
        log.log(level, "alert %s dropped for %s on %s (%s); counted in its next alert's PERIPETY_DROPPED",
                action.name, event.event_type, event.kdev or "-", why)

    # -- state ---------------------------------------------------------------------------
    def _load(self) -> None:
        try:
            fd = open_private(self.state_path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except (OSError, PeripetyError) as exc:
            log.error("cannot read %s (%s): alerts start with no memory of what was sent", self.state_path, exc)
            return
        try:
            with os.fdopen(fd, "rb") as fh:
                data = json.loads(fh.read())
            for item in data.get("records", []):
                self.records[(item["action"], item["device"], item["event_type"])] = AlertRecord.from_dict(item)
            for item in data.get("pending", []):
                self.pending[item["id"]] = {k: item[k] for k in ("action", "event", "extra")}
            for key, item in data.get("rate", {}).items():
                times = sorted(float(t) for t in item.get("sent", []))
                if times:
                    self._sent_times[key] = collections.deque(times)
                if int(item.get("dropped", 0)) > 0:
                    self._dropped[key] = int(item["dropped"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("%s is damaged (%s): alerts start with no memory of what was sent", self.state_path, exc)
            self.records.clear()
            self.pending.clear()
            self._sent_times.clear()
            self._dropped.clear()

    def _forget_removed_actions(self) -> bool:
        """Drop the repeat records, rate windows and drop counts of actions
        no longer configured (pending alerts are left to _resume_pending);
        True when something was dropped."""
        keys = {a.key for a in self.actions}
        gone = {k for k in self.records if k[0] not in keys}
        gone_actions = {k[0] for k in gone} | (set(self._sent_times) - keys) | (set(self._dropped) - keys)
        for key in gone:
            del self.records[key]
        for action_key in gone_actions:
            self._sent_times.pop(action_key, None)
            self._dropped.pop(action_key, None)
            self._drop_logged.discard(action_key)
        if gone_actions:
            log.info("alert state of %d action(s) no longer configured forgotten (%d repeat record(s)): %s",
                     len(gone_actions), len(gone), ", ".join(sorted(gone_actions)))
        return bool(gone_actions)

    def _save(self, fsync: bool = False) -> None:
        """Write the state now. Without fsync on the hot path: the rename is
        atomic, a killed daemon loses nothing, and the disk under the state
        directory may be the one failing."""
        data = {
            "version": STATE_VERSION,
            "records": [{"action": a, "device": d, "event_type": t, **r.to_dict()}
                        for (a, d, t), r in self.records.items()],
            "pending": [{"id": i, **p} for i, p in self.pending.items()],
            "rate": self._rate_state(),
        }
        try:
            write_atomically(self.state_path, json.dumps(data, indent=1).encode(), mode=0o600, fsync=fsync)
        except (OSError, PeripetyError) as exc:
            if not self._save_failed:
                log.error("cannot save alert state to %s (%s): a restart may alert again", self.state_path, exc)
            self._save_failed = True
        else:
            self._save_failed = False
        self._dirty = False
        self._saved_at = self.monotonic()

    def _rate_state(self) -> dict:
        """Each action's window (pruned to the last hour) and drop count."""
        horizon = self.clock() - HOUR
        rate: dict[str, dict] = {}
        for key, times in self._sent_times.items():
            while times and times[0] <= horizon:
                times.popleft()
            if times:
                rate.setdefault(key, {})["sent"] = list(times)
        for key, dropped in self._dropped.items():
            rate.setdefault(key, {})["dropped"] = dropped
        return rate

    def _resume_pending(self) -> None:
        """Alerts decided before a stop and not finished: run them now."""
        by_key = {a.key: a for a in self.actions}
        for job_id, item in list(self.pending.items()):
            action = by_key.get(item["action"])
            if action is None:
                log.warning("alert %s for event %s was not finished before the stop, but that action is no longer "
                            "configured: dropped", item["action"], job_id.split("/")[0])
                del self.pending[job_id]
                continue
            try:
                event = StorageEvent.from_dict(item["event"])
            except PeripetyError as exc:
                log.error("pending alert %s cannot be read (%s): dropped", job_id, exc)
                del self.pending[job_id]
                continue
            extra = dict(item.get("extra") or {}, RESUMED="1")
            if self.runner.submit(make_job(action, event, extra, job_id)):
                log.info("alert %s for event %s: not finished before the stop, run again", action.name,
                         event.event_id)
            else:
                log.warning("alert %s for event %s: not finished before the stop, and %d others already wait: "
                            "dropped", action.name, event.event_id, self.runner.max_queued)
                del self.pending[job_id]
        if self.pending:
            self._save()

    def _check_programs(self) -> None:
        """A missing alert program is an error in the log, not a daemon that
        will not start: events are stored whatever happens to alerts
        (``peripetyd --check`` refuses it)."""
        for action in self.actions:
            try:
                action.program()
            except ConfigError as exc:
                log.error("alert %s cannot run: %s", action.name, exc)


def open_notify(config, state_dir: Path) -> NotifyOutput:
    """The alert output for ``config``'s [[notify]] sections (none yet is
    fine: a reload may add some)."""
    return NotifyOutput(config.notify, Path(state_dir) / STATE_FILE)
