"""The daemon's composition root: config, store (spooling when it is down),
device timeline, pipeline and live sources, wired to one ``Loop``; what
each source's reading means for the pipeline; reload, status and stop."""

from __future__ import annotations

import datetime as _dt
import importlib.util
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..classify import DeviceAtEvent
from ..config import load_config
from ..devices import DeviceTimeline, list_devices
from ..errors import PeripetyError
from ..event import StorageEvent
from ..event_types import EVENT_TYPES
from ..mapcounts import MapLedger
from ..outputs import Outputs
from ..outputs.notify import open_notify
from ..outputs.metrics_options import ListenAddress, load_metrics_output
from ..outputs.varlink import VarlinkServer
from ..pipeline import Pipeline, daemon_event
from ..position import DEFAULT_STATE_DIR, PositionFile, ReadPosition, already_stored, resume_point
from ..safefiles import check_private_dir
from ..sources import LogFile
from ..sources.base import HITS, RECORDS, UEVENTS, LiveSource
from ..sources.bpf import BpfSource
from ..sources.journal import JournalSource
from ..sources.kmsg import KmsgReader, boot_id, kernel_usec_to_wallclock
from ..sources.udev import UdevSource
from ..status import DEFAULT_STATUS_PATH, remove_status, write_status
from ..stores import SpoolingStore, open_store
from .loop import Loop
from .system import sd_notify, take_instance_lock

log = logging.getLogger("peripety.daemon")

DEFAULT_CONFIG = Path("/etc/peripetyd.conf")
JOURNALD_SOCKET = Path("/run/systemd/journal/socket")
POSITION_SAVE_INTERVAL = 0.5  # seconds
# How long an event waits for its other half (kernel line <-> tracepoint hit)
# when --bpf runs; without probes nothing is held.
BPF_MERGE_HOLD = 0.25  # seconds
# The one spool-retry policy: a store that refused an event is tried again
# this long after, by the next event or by the loop's tick, whichever first.
SPOOL_RETRY_INTERVAL = 2.0  # seconds


@dataclass
class DaemonOptions:
    config_path: Path = DEFAULT_CONFIG
    config_explicit: bool = False
    store: str | None = None
    stdout: bool = False
    blk_info_dump: bool | None = None
    bpf: str = "off"
    from_start: bool = False
    state_dir: Path = DEFAULT_STATE_DIR
    status_path: Path = DEFAULT_STATUS_PATH
    replay: Path | None = None
    metrics_listen: ListenAddress | None = None
    metrics_textfile: Path | None = None
    varlink: Path | None = None
    """The io.peripety Varlink socket (outputs/varlink.py); None: off."""
    varlink_group: str | None = None
    varlink_buffer: int | None = None
    """Bytes of replies kept per slow Varlink client (None: the default)."""


class Daemon:
    def __init__(self, options: DaemonOptions):
        self.options = options
        self.hostname = socket.gethostname()
        self.config = self.load_config()
        self.loop = Loop(on_tick=self._tick, timeout=self._timeout, on_reload=self.reload)
        self.position_file = PositionFile(options.state_dir / "position.json")
        self.boot_id = ""
        self.store: SpoolingStore | None = None
        self.pipeline: Pipeline | None = None
        self.kmsg: KmsgReader | None = None
        self.journal: JournalSource | None = None
        self.timeline: DeviceTimeline | None = None
        self.bpf: BpfSource | None = None
        self.bpf_status: dict = {}
        self._lock = None
        self._last_save = 0.0
        self._started: str | None = None
        self._status_store: tuple | None = None
        self.outputs = Outputs()
        """What observes the stored events (outputs/): alerts, metrics, Varlink."""

    def load_config(self):
        path = self.options.config_path
        if not self.options.config_explicit and not path.exists():
            return load_config(None)
        return load_config(path)

    # -- composition ----------------------------------------------------------
    def _open_store_and_pipeline(self, boot: str = "", to_wallclock=None, clock=time.monotonic,
                                 udev: UdevSource | None = None) -> None:
        """The store (spooling when it is down), the device timeline and the
        pipeline between them. No merge hold until probes are attached."""
        spec = self.options.store or self.config.store
        check_private_dir(self.options.state_dir)
        self.store = SpoolingStore(open_store(spec, write=True), spool_dir=self.options.state_dir / "spool",
                                   retry_interval=SPOOL_RETRY_INTERVAL)
        self.timeline = _open_timeline(udev)
        self.pipeline = Pipeline(self.config.rules, self.timeline, self._emit, boot_id=boot,
                                 hostname=self.hostname, storm_window=self.config.storm_window, hold=0.0,
                                 to_wallclock=to_wallclock, clock=clock)

    def open(self) -> None:
        """Take the host's instance lock, then open every live source at the
        saved position of this boot (or the end of the ring on a first start)."""
        # Refuse unsafe state paths before anything is written (safefiles.py).
        check_private_dir(self.options.status_path.parent, mode=0o755)
        self._lock = take_instance_lock()
        self.boot_id = boot_id()
        udev = _open_udev()  # before the timeline enumerates: nothing falls between
        self._open_store_and_pipeline(self.boot_id, kernel_usec_to_wallclock, udev=udev)
        position = resume_point(self.position_file, self.boot_id)
        self._open_kmsg(position)
        if self.timeline is not None:
            # Read at every wake-up before the others: a record is resolved
            # with every uevent already received.
            self._add_source(udev, first=True)
        self._open_journal(position)
        self._open_bpf()
        self._open_outputs()

    def _open_outputs(self) -> None:
        """The outputs the config and options ask for (outputs/); each one
        that waits on a socket is polled by the loop too."""
        self.outputs.add(open_notify(self.config, self.options.state_dir))
        metrics = load_metrics_output(self.options.metrics_listen, self.options.metrics_textfile, self.config)
        if metrics is not None:
            self.outputs.add(metrics(self.options.metrics_listen, self.options.metrics_textfile, self.config,
                                     self.store))
        self._open_varlink()

    def _open_varlink(self) -> None:
        if self.options.varlink is None:
            return
        if importlib.util.find_spec("varlink") is None:  # the package the service is built on
            log.warning("the varlink Python package is not installed (pip install varlink): no Varlink service "
                        "on %s; prpt monitor and prpt top read the store", self.options.varlink)
            return
        limits = {"max_pending": self.options.varlink_buffer} if self.options.varlink_buffer else {}
        server = VarlinkServer(self.options.varlink, store=self.store, status=self.status,
                               known_event_types=self._known_event_types, group=self.options.varlink_group,
                               **limits)
        self.outputs.add(server)
        self.loop.add(server.name, server, server.read)

    def _known_event_types(self) -> set[str]:
        return {info.name for info in EVENT_TYPES} | {rule.event_type for rule in self.config.rules.rules}

    def _add_source(self, source: LiveSource, first: bool = False) -> None:
        self.loop.add(source.name, source, lambda: self._read(source), first=first)

    def _open_kmsg(self, position: ReadPosition | None) -> None:
        self.kmsg = KmsgReader()
        if position is not None:
            self.kmsg.seek_after(position.kmsg_seq)
            self.pipeline.resume(position.kmsg_seq, already_stored(self.store, self.boot_id, position))
        elif not self.options.from_start:
            # A first start handles nothing of the past: the saved position
            # is the end of the ring, so a restart does not replay the boot.
            self.kmsg.seek_end()
            self.pipeline.resume(-1 if self.kmsg.last_seq is None else self.kmsg.last_seq)
        self._add_source(self.kmsg)

    def _open_journal(self, position: ReadPosition | None) -> None:
        if not JOURNALD_SOCKET.exists():
            log.info("journald is not running: user-space storage daemons' logs are not read")
            return
        cursor = position.journal_cursor if position else ""
        try:
            self.journal = JournalSource(self.config.user_space_identifiers, cursor=cursor,
                                         policy=self.config.sender_policy)
        except OSError as exc:
            log.warning("cannot read the journal (%s): user-space storage logs are not read", exc)
            return
        self._add_source(self.journal)

    def _open_bpf(self) -> None:
        if self.options.bpf == "off":
            return
        # "on" raises BpfUnavailable naming the fix; "auto" logs why once.
        bpf = BpfSource.open(self.options.bpf)
        if bpf is None:
            self.bpf_status = {"attached": [], "error": "not loaded (see the log)"}
            return
        plan = bpf.plan
        self.bpf_status = {
            "attached": [p.spec.tracepoint for p in plan.probes],
            "skipped": {s.tracepoint: s.reason for s in plan.skipped},
            # kinds whose failures the kernel also counts (counting perf
            # events); "unprobed": per kind, failures no probe saw so far
            "kernel_counted": bpf.kernel_counted(),
            "unprobed": {},
        }
        self.pipeline.set_merge_hold(BPF_MERGE_HOLD)
        # Failures after this moment are counted in the kernel's maps,
        # whatever reaches user space as detail (mapcounts).
        self.pipeline.count_in_maps(MapLedger(
            hostname=self.hostname, hold=BPF_MERGE_HOLD,
            attached_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000,
            kinds={p.spec.kind for p in plan.probes}, to_wallclock=kernel_usec_to_wallclock))
        self.bpf = bpf
        self._add_source(bpf)

    def _collect_map_counts(self, flush: bool = False) -> None:
        """Read the failures the probes counted (each tick; everything at
        shutdown) into the pipeline."""
        if self.bpf is None:
            return
        found = self.bpf.collect(flush=flush)
        if not found:
            return
        for agg in found.items:
            log.info("bpf maps: %d %s failures on %s (%s) at %d-%d usec", agg.count, agg.kind,
                     agg.kdev or agg.dev_num, agg.error or agg.op or "-", agg.first_usec, agg.last_usec)
        self.pipeline.add_aggregates(found)
        for notice in self.bpf.missed_notices(found):
            log.warning("%s", notice.msg)
            self.pipeline.add_event(daemon_event(notice.event_type, notice.msg, hostname=self.hostname,
                                                 **notice.extension))
        if found.unprobed:
            self.bpf_status["unprobed"] = self.bpf.unprobed_totals()
            try:
                self._write_status()
            except (PeripetyError, OSError) as exc:
                log.warning("cannot update the status file %s: %s", self.options.status_path, exc)

    # -- --replay -------------------------------------------------------------
    def replay(self) -> int:
        """--replay: run a saved log through the whole pipeline into the
        store, then stop. No merge hold: there is no second live source."""
        # Storms fold by the records' own kernel time, not by how fast the
        # file is read: the pipeline's clock is the newest kernel time read.
        newest = [0.0]
        udev = _open_udev()
        self._open_store_and_pipeline(clock=lambda: newest[0], udev=udev)
        with LogFile.open(self.options.replay) as logfile:
            for count, record in enumerate(logfile.records(), 1):
                if record.kernel_usec is not None and record.kernel_usec / 1e6 > newest[0]:
                    newest[0] = record.kernel_usec / 1e6
                self.pipeline.add_record(record)
                if count % 1024 == 0:
                    if self.timeline is not None:
                        self.timeline.apply_all(udev.read())
                    self.pipeline.tick()
        self.pipeline.drain()
        self.store.sync()
        self.store.close()
        log.info("replayed %s: %s", self.options.replay, dict(self.pipeline.stats))
        return 0

    # -- what each source's reading means --------------------------------------
    def _emit(self, event: StorageEvent) -> None:
        self.store.append(event)
        self.outputs.on_event(event)
        if self.options.stdout or self.config.notify_stdout:
            sys.stdout.write(event.to_json(pretty=True) + "\n\n")
            sys.stdout.flush()

    def _read(self, source: LiveSource) -> None:
        """What ``source`` has now, to where its kind goes; then its notices."""
        items = source.read()
        if source.kind == RECORDS:
            for record in items:
                self.pipeline.add_record(record)
        elif source.kind == HITS:
            for hit in items:
                self.pipeline.add_hit(hit)
        elif source.kind == UEVENTS:
            self.timeline.apply_all(items)
        for notice in source.notices():
            self.pipeline.add_event(daemon_event(notice.event_type, notice.msg, hostname=self.hostname,
                                                 **notice.extension))

    def dump_blk_info(self) -> None:
        for info in list_devices():
            self.pipeline.add_event(daemon_event(
                "PERIPETY_BLK_INFO",
                f"Block device {info.preferred_blk_path or info.blk_path} ({info.blk_type}, wwid {info.wwid or 'unknown'})",
                hostname=self.hostname,
                device=DeviceAtEvent(os.path.basename(info.blk_path), info.dev_num, info),
            ))

    # -- running --------------------------------------------------------------
    def run(self) -> int:
        self.loop.install_signals()
        want_dump = self.options.blk_info_dump
        if want_dump is None:
            want_dump = self.config.blk_info_dump
        if want_dump:
            self.dump_blk_info()
        if self.kmsg is not None:
            # Records a resume already read past (KmsgReader.seek_after
            # keeps them pending) wake no poll: without this they waited for
            # the kernel's next record.
            self._read(self.kmsg)
        self._write_status()
        names = ", ".join(self.loop.names())
        print(f"peripetyd: ready (sources: {names}; store: {self.store.name})", file=sys.stderr, flush=True)
        sd_notify("READY=1\nSTATUS=Watching " + names)
        try:
            self.loop.run()
        finally:
            self._shutdown()
        return 0

    def _tick(self) -> None:
        self._collect_map_counts()
        self.pipeline.tick()
        self.store.retry()
        self.outputs.tick()
        if time.monotonic() - self._last_save >= POSITION_SAVE_INTERVAL:
            self._save_position()
        self._refresh_status()

    def _timeout(self) -> float:
        deadlines = [self.pipeline.next_deadline()]
        if self.bpf is not None:
            deadlines.append(self.bpf.next_deadline())  # the next map read
        now = time.monotonic()
        return min([POSITION_SAVE_INTERVAL] + [max(0.0, d - now) for d in deadlines if d is not None])

    def _save_position(self) -> None:
        self._last_save = time.monotonic()
        self.position_file.save(ReadPosition(
            boot_id=self.boot_id,
            kmsg_seq=self.pipeline.read_position(),
            journal_cursor=self.journal.cursor if self.journal else "",
            saved_at_usec=int(time.time() * 1_000_000),
        ))

    def reload(self) -> None:
        """SIGHUP: re-read the config; an invalid one is reported and the old
        one stays in force."""
        sd_notify("RELOADING=1")
        try:
            config = self.load_config()
        except (PeripetyError, OSError, ValueError) as exc:
            # Any problem (unreadable, not UTF-8, broken TOML, bad rule or
            # store): the daemon and the rules in force stay.
            log.error("config not reloaded, keeping the previous one: %s", exc)
        else:
            if config.store != self.config.store and self.options.store is None:
                log.warning("store changed to %s in %s: takes effect at the next start", config.store,
                            self.options.config_path)
            self.config = config
            self.pipeline.reconfigure(config.rules, storm_window=config.storm_window)
            if self.journal is not None:
                self.journal.set_identifiers(config.user_space_identifiers, config.sender_policy)
            self.outputs.reconfigure(config)
            log.info("config reloaded from %s (%d rules)", self.options.config_path, len(config.rules.rules))
        sd_notify("READY=1")

    # -- status file ------------------------------------------------------------
    def _write_status(self) -> None:
        if self._started is None:
            self._started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._status_store = self._store_state()
        write_status(self.options.status_path, self.status())

    def status(self) -> dict:
        """What the status file says (and outputs may report): the daemon,
        its store's health, its sources and outputs."""
        ok, error, depth = self._store_state()
        return {
            "pid": os.getpid(),
            "started": self._started,
            "store": self.store.name,
            "store_ok": ok,
            "store_error": error,
            "spool_depth": depth,
            "sources": self.loop.names(),
            "outputs": self.outputs.names(),
            "bpf": self.bpf_status,
        }

    def _store_state(self) -> tuple[bool, str | None, int]:
        return self.store.ok, self.store.error, self.store.spool_depth

    def _refresh_status(self) -> None:
        """Rewrite the status file when the store's health or spool moved."""
        if self._status_store is not None and self._store_state() != self._status_store:
            try:
                self._write_status()
            except (PeripetyError, OSError) as exc:
                log.warning("cannot update the status file %s: %s", self.options.status_path, exc)

    def _shutdown(self) -> None:
        sd_notify("STOPPING=1")
        if self.pipeline is not None:
            # Read what the kernel already queued so nothing in flight is lost.
            if self.kmsg is not None:
                try:
                    self._read(self.kmsg)
                except PeripetyError as exc:
                    log.error("kmsg: %s", exc)
            if self.bpf is not None:
                self._read(self.bpf)
                self._collect_map_counts(flush=True)
            self.pipeline.drain()
            self._save_position()
        self.outputs.close()
        if self.store is not None:
            self.store.close()
        self.loop.close_sources()
        if self.timeline is not None:
            self.timeline.close()  # the resolver's mount-table handle
        remove_status(self.options.status_path)
        log.info("stopped: %s", dict(self.pipeline.stats) if self.pipeline else {})


def _open_udev() -> UdevSource | None:
    try:
        return UdevSource.open()
    except (OSError, PeripetyError) as exc:
        log.warning("udev uevents unavailable (%s): events are resolved without a device timeline", exc)
        return None


def _open_timeline(udev: UdevSource | None) -> DeviceTimeline | None:
    """The device timeline (needs the uevents: without them it would go
    stale), with what ``udev`` received while the database was read."""
    if udev is None:
        return None
    try:
        timeline = DeviceTimeline.from_system()
    except PeripetyError as exc:
        log.warning("device timeline unavailable (%s): events are resolved without it", exc)
        udev.close()
        return None
    timeline.apply_all(udev.read())
    return timeline
