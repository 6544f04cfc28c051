"""``peripetyd``: turn live kernel storage messages into stored events.

All sources (``/dev/kmsg``, the journal, udev, bcc probes, signals) are
polled from one selector loop; nothing sleeps to wait for readiness.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from .errors import PeripetyError
from .cli.entry import run_cli
from .classify import DeviceAtEvent
from .event import StorageEvent
from .logsetup import setup_logging
from .pipeline import Pipeline, daemon_event
from .safefiles import check_private_dir, open_private
from .state import DEFAULT_STATE_DIR, PositionFile, ReadPosition
from .status import DEFAULT_STATUS_PATH, remove_status, write_status

log = logging.getLogger("peripety.daemon")

DEFAULT_CONFIG = Path("/etc/peripetyd.conf")
# One daemon per host reads /dev/kmsg: two would store every event twice
# (with the same deterministic event ids).
INSTANCE_LOCK = Path("/run/peripety/peripetyd.lock")
POSITION_SAVE_INTERVAL = 0.5  # seconds
# How long an event waits for its other half (kernel line <-> tracepoint hit)
# when --bpf runs; without probes nothing is held.
BPF_MERGE_HOLD = 0.25  # seconds
SPOOL_RETRY_INTERVAL = 2.0  # seconds
# How far back to look for events already stored when resuming: covers the
# longest time an event can be held in memory (storm window, merge hold).
RESUME_LOOKBACK = _dt.timedelta(minutes=5)


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


@dataclass
class _Source:
    name: str
    obj: object
    handler: object


class Daemon:
    def __init__(self, options: DaemonOptions):
        self.options = options
        self.hostname = socket.gethostname()
        self.config = self._load_config()
        self.stopping = False
        self.reload_requested = False
        self.sources: list[_Source] = []
        self.selector = selectors.DefaultSelector()
        self.position_file = PositionFile(options.state_dir / "position.json")
        self.store = None
        self.pipeline: Pipeline | None = None
        self.kmsg = None
        self.journal = None
        self.timeline = None
        self.tracepoints = None
        self.bpf_status: dict = {}
        self._lock = None
        self._last_save = 0.0
        self._last_spool_try = 0.0
        self._bpf_lost_reported = 0
        self._started: str | None = None
        self._status_store: tuple | None = None

    # -- set-up -------------------------------------------------------------
    def _load_config(self):
        from .config import load_config

        path = self.options.config_path
        if not self.options.config_explicit and not path.exists():
            return load_config(None)
        return load_config(path)

    def _open_store_and_pipeline(self, boot_id: str = "", to_wallclock=None, clock=time.monotonic) -> None:
        """The store (spooling when it is down), the device timeline and the
        pipeline between them. No merge hold until probes are attached."""
        from .stores import SpoolingStore, open_store

        spec = self.options.store or self.config.store
        check_private_dir(self.options.state_dir)
        self.store = SpoolingStore(open_store(spec, write=True), spool_dir=self.options.state_dir / "spool")
        self.timeline = self._open_timeline()
        self.pipeline = Pipeline(self.config.rules, self.timeline, self._emit, boot_id=boot_id,
                                 hostname=self.hostname, storm_window=self.config.storm_window, hold=0.0,
                                 to_wallclock=to_wallclock, clock=clock)

    def open(self) -> None:
        from .kmsg import KmsgReader, boot_id, kernel_usec_to_wallclock

        # Refuse unsafe state paths before anything is written (safefiles.py).
        check_private_dir(self.options.status_path.parent, mode=0o755)
        self._lock = _take_instance_lock(INSTANCE_LOCK)
        self.boot_id = boot_id()
        self._open_store_and_pipeline(self.boot_id, kernel_usec_to_wallclock)
        position = self._resume_position()
        self.kmsg = KmsgReader()
        if position is not None:
            self.kmsg.seek_after(position.kmsg_seq)
            self.pipeline.in_flight.last_read = position.kmsg_seq
            self.pipeline.resume = self._already_stored(position)
        elif not self.options.from_start:
            # A first start handles nothing of the past: the saved position
            # is the end of the ring, so a restart does not replay the boot.
            self.kmsg.seek_end()
            self.pipeline.in_flight.last_read = -1 if self.kmsg.last_seq is None else self.kmsg.last_seq
        self._add_source("kmsg", self.kmsg, self._on_kmsg)
        if self.timeline is not None:
            self._add_source("udev", self.timeline, self._on_udev)
        self._open_journal(position)
        self._open_bpf()

    def replay(self) -> int:
        """--replay: run a saved log through the whole pipeline into the
        store, then stop. No merge hold: there is no second live source."""
        from .sources import LogFile

        # Storms fold by the records' own kernel time, not by how fast the
        # file is read: the pipeline's clock is the newest kernel time read.
        newest = [0.0]
        self._open_store_and_pipeline(clock=lambda: newest[0])
        with LogFile.open(self.options.replay) as logfile:
            for count, record in enumerate(logfile.records(), 1):
                if record.kernel_usec is not None and record.kernel_usec / 1e6 > newest[0]:
                    newest[0] = record.kernel_usec / 1e6
                self.pipeline.add_record(record)
                if count % 1024 == 0:
                    self.pipeline.tick()
        self.pipeline.drain()
        self.store.sync()
        self.store.close()
        log.info("replayed %s: %s", self.options.replay, dict(self.pipeline.stats))
        return 0

    def _open_timeline(self):
        from .devices import DeviceTimeline

        try:
            return DeviceTimeline.from_system()
        except PeripetyError as exc:
            log.warning("device timeline unavailable (%s): events are resolved without it", exc)
            return None

    def _open_journal(self, position: ReadPosition | None) -> None:
        if not Path("/run/systemd/journal/socket").exists():
            log.info("journald is not running: user-space storage daemons' logs are not read")
            return
        from .journal import JournalSource

        identifiers = self.config.user_space_identifiers
        cursor = position.journal_cursor if position else ""
        try:
            self.journal = JournalSource(identifiers, cursor=cursor, policy=self.config.sender_policy)
        except OSError as exc:
            log.warning("cannot read the journal (%s): user-space storage logs are not read", exc)
            return
        self._add_source("journal", self.journal, self._on_journal)

    def _open_bpf(self) -> None:
        if self.options.bpf == "off":
            return
        from .tracepoints import TracepointSource

        # "on" raises BpfUnavailable naming the fix; "auto" logs why once.
        self.tracepoints = TracepointSource.open(self.options.bpf)
        if self.tracepoints is None:
            self.bpf_status = {"attached": [], "error": "not loaded (see the log)"}
            return
        plan = self.tracepoints.plan
        self.bpf_status = {
            "attached": [p.spec.tracepoint for p in plan.probes],
            "skipped": {s.tracepoint: s.reason for s in plan.skipped},
        }
        self.pipeline.correlator.hold = BPF_MERGE_HOLD
        self._add_source("bpf", self.tracepoints, self._on_bpf)

    def _add_source(self, name, obj, handler) -> None:
        src = _Source(name, obj, handler)
        self.sources.append(src)
        fd = obj.fileno()
        if fd is not None:
            self.selector.register(fd, selectors.EVENT_READ, src)

    def _resume_position(self) -> ReadPosition | None:
        position = self.position_file.load()
        # kmsg_seq -1 of this boot: saved when the ring was empty, resume
        # from its start
        if position is None or position.boot_id != self.boot_id or position.kmsg_seq < -1:
            return None
        log.info("resuming after kmsg seq %d of this boot", position.kmsg_seq)
        return position

    def _already_stored(self, position: ReadPosition):
        """Events stored shortly before the last saved position: a record
        read again whose event is among them (alone or inside a storm
        aggregate) is not written again (see ``ResumeIndex``)."""
        from .pipeline import ResumeIndex
        from .stores import EventFilter

        since = _dt.datetime.fromtimestamp(position.saved_at_usec / 1e6).astimezone() - RESUME_LOOKBACK
        try:
            return ResumeIndex(self.boot_id, self.store.store.query(EventFilter(since=since)))
        except PeripetyError as exc:
            log.warning("cannot read back recent events (%s): a restart may duplicate a few", exc)
            return ResumeIndex()

    # -- events -------------------------------------------------------------
    def _emit(self, event: StorageEvent) -> None:
        self.store.append(event)
        if self.options.stdout or self.config.notify_stdout:
            sys.stdout.write(event.to_json(pretty=True) + "\n\n")
            sys.stdout.flush()

    def _on_kmsg(self) -> None:
        for record in self.kmsg.read():
            self.pipeline.add_record(record)
        missed = self.kmsg.take_missed()
        if missed:
            log.warning("kernel overwrote %d /dev/kmsg records before they were read", missed)
            self.pipeline.add_event(
                daemon_event(
                    "PERIPETY_KMSG_OVERRUN",
                    f"{missed} kernel log records were overwritten before peripetyd read them",
                    hostname=self.hostname,
                    missed=missed,
                )
            )

    def _on_journal(self) -> None:
        for record in self.journal.read():
            self.pipeline.add_record(record)

    def _on_udev(self) -> None:
        self.timeline.process()

    def _on_bpf(self) -> None:
        for hit in self.tracepoints.read():
            self.pipeline.add_hit(hit)
        lost = self.tracepoints.lost()
        if lost > self._bpf_lost_reported:
            delta = lost - self._bpf_lost_reported
            self._bpf_lost_reported = lost
            self.pipeline.add_event(
                daemon_event(
                    "PERIPETY_BPF_LOST",
                    f"{delta} tracepoint samples were lost (buffer full)",
                    hostname=self.hostname,
                    lost=delta,
                )
            )

    def dump_blk_info(self) -> None:
        from .devices import list_devices

        for info in list_devices():
            event = daemon_event(
                "PERIPETY_BLK_INFO",
                f"Block device {info.preferred_blk_path or info.blk_path} ({info.blk_type}, wwid {info.wwid or 'unknown'})",
                hostname=self.hostname,
                device=DeviceAtEvent(os.path.basename(info.blk_path), info.dev_num, info),
            )
            self.pipeline.add_event(event)

    # -- loop ---------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        want_dump = self.options.blk_info_dump
        if want_dump is None:
            want_dump = self.config.blk_info_dump
        if want_dump:
            self.dump_blk_info()
        if self.kmsg is not None:
            # Records a resume already read past (KmsgReader.seek_after
            # keeps them pending) wake no poll: without this they waited for
            # the kernel's next record.
            self._on_kmsg()
        self._write_status()
        names = ", ".join(s.name for s in self.sources)
        print(f"peripetyd: ready (sources: {names}; store: {self.store.name})", file=sys.stderr, flush=True)
        _sd_notify("READY=1\nSTATUS=Watching " + names)
        try:
            while not self.stopping:
                self._loop_once()
        finally:
            self._shutdown()
        return 0

    def _loop_once(self) -> None:
        for key, _ in self.selector.select(self._timeout()):
            src = key.data
            if src == "signal":
                self._drain_signal_pipe()
                continue
            try:
                src.handler()
            except PeripetyError as exc:
                log.error("%s source: %s", src.name, exc)
        if self.reload_requested:
            self.reload_requested = False
            self.reload()
        self.pipeline.tick()
        now = time.monotonic()
        if now - self._last_spool_try >= SPOOL_RETRY_INTERVAL and len(self.store.spool):
            self._last_spool_try = now
            delivered = self.store.flush_spool()
            if delivered:
                log.info("delivered %d spooled events", delivered)
        if now - self._last_save >= POSITION_SAVE_INTERVAL:
            self._save_position()
        self._refresh_status()

    def _timeout(self) -> float:
        now = time.monotonic()
        deadline = self.pipeline.next_deadline()
        timeout = POSITION_SAVE_INTERVAL
        if deadline is not None:
            timeout = min(timeout, max(0.0, deadline - now))
        return timeout

    def _save_position(self) -> None:
        self._last_save = time.monotonic()
        self.position_file.save(
            ReadPosition(
                boot_id=self.boot_id,
                kmsg_seq=self.pipeline.in_flight.safe_seq(),
                journal_cursor=self.journal.cursor if self.journal else "",
                saved_at_usec=int(time.time() * 1_000_000),
            )
        )

    def _install_signals(self) -> None:
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._signal_rfd = rfd
        signal.set_wakeup_fd(wfd)
        self.selector.register(rfd, selectors.EVENT_READ, "signal")

        def stop(signum, frame):
            self.stopping = True

        def reload(signum, frame):
            self.reload_requested = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def _drain_signal_pipe(self) -> None:
        try:
            while os.read(self._signal_rfd, 512):
                pass
        except BlockingIOError:
            pass

    def reload(self) -> None:
        """SIGHUP: re-read the config; an invalid one is reported and the old
        one stays in force."""
        _sd_notify("RELOADING=1")
        try:
            config = self._load_config()
        except (PeripetyError, OSError, ValueError) as exc:
            # Any problem (unreadable, not UTF-8, broken TOML, bad rule or
            # store): the daemon and the rules in force stay.
            log.error("config not reloaded, keeping the previous one: %s", exc)
        else:
            if config.store != self.config.store and self.options.store is None:
                log.warning("store changed to %s in %s: takes effect at the next start", config.store,
                            self.options.config_path)
            self.config = config
            self.pipeline.rules = config.rules
            self.pipeline.storm.window = config.storm_window
            if self.journal is not None:
                self.journal.set_identifiers(config.user_space_identifiers, config.sender_policy)
            log.info("config reloaded from %s (%d rules)", self.options.config_path, len(config.rules.rules))
        _sd_notify("READY=1")

    def _write_status(self) -> None:
        if self._started is None:
            self._started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self._status_store = self._store_state()
        ok, error, depth = self._status_store
        write_status(
            self.options.status_path,
            {
                "pid": os.getpid(),
                "started": self._started,
                "store": self.store.name,
                "store_ok": ok,
                "store_error": error,
                "spool_depth": depth,
                "sources": [s.name for s in self.sources],
                "bpf": self.bpf_status,
            },
        )

    def _store_state(self) -> tuple[bool, str | None, int]:
        return self.store.ok, self.store.error, len(self.store.spool)

    def _refresh_status(self) -> None:
        """Rewrite the status file when the store's health or spool moved."""
        if self._status_store is not None and self._store_state() != self._status_store:
            try:
                self._write_status()
            except (PeripetyError, OSError) as exc:
                log.warning("cannot update the status file %s: %s", self.options.status_path, exc)

    def _shutdown(self) -> None:
        _sd_notify("STOPPING=1")
        if self.pipeline is not None:
            # Read what the kernel already queued so nothing in flight is lost.
            if self.kmsg is not None:
                try:
                    self._on_kmsg()
                except PeripetyError as exc:
                    log.error("kmsg: %s", exc)
            self.pipeline.drain()
            self._save_position()
        if self.store is not None:
            self.store.close()
        for src in self.sources:
            close = getattr(src.obj, "close", None)
            if close:
                close()
        remove_status(self.options.status_path)
        log.info("stopped: %s", dict(self.pipeline.stats) if self.pipeline else {})


def _take_instance_lock(path: Path):
    """Hold an exclusive lock for the daemon's lifetime (released by the
    kernel when the process dies, also on kill -9)."""
    import fcntl

    check_private_dir(path.parent, mode=0o755)
    fh = os.fdopen(open_private(path, os.O_RDWR | os.O_CREAT, 0o644), "r+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        other = fh.read().strip() or "?"
        fh.close()
        raise PeripetyError(f"another peripetyd (pid {other}) is already running ({path} is locked)") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _sd_notify(state: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon as sd_daemon

        sd_daemon.notify(state)
    except ImportError:  # pragma: no cover - systemd-python is a dependency
        log.debug("systemd-python missing: sd_notify skipped")


def _check(options: DaemonOptions) -> int:
    """--check: validate the config and the store, print the sources and
    attach plan. A problem is a PeripetyError: one line, exit 1."""
    daemon = Daemon(options)
    click.echo(f"config: {options.config_path if options.config_path.exists() else 'built-in rules only'}"
               f" ({len(daemon.config.rules.rules)} rules)")
    click.echo(f"store: {_check_store(options.store or daemon.config.store)}")
    click.echo(f"kmsg: {'readable' if os.access('/dev/kmsg', os.R_OK) else 'NOT readable (run as root)'}")
    click.echo(f"journal: {'running' if Path('/run/systemd/journal/socket').exists() else 'not running'}")
    click.echo("user-space senders: " + "; ".join(
        f"{i}: {daemon.config.sender_policy(i).describe()}" for i in daemon.config.user_space_identifiers))
    try:
        from .tracepoints import describe_plan, plan_attach

        click.echo(describe_plan(plan_attach(options.bpf if options.bpf != "off" else "auto")))
    except PeripetyError as exc:
        click.echo(f"bpf: unavailable: {exc}")
    return 0


def _check_store(spec: str) -> str:
    """What ``spec`` would open, checked without writing anything."""
    from .safefiles import check_dir_chain
    from .stores import StoreError, parse_store_spec
    from .stores.journald_socket import runtime_dir

    parsed = parse_store_spec(spec)
    if parsed.kind == "auto":
        running = (runtime_dir() / "socket").exists()
        return f"auto: {'journal (journald runs)' if running else 'sqlite (no journald)'}"
    if parsed.kind == "journal":
        if parsed.directory is not None:
            raise StoreError(f"store {parsed}: a journal directory can only be read, peripetyd cannot write there")
        socket_path = runtime_dir(parsed.namespace) / "socket"
        state = "journald running" if socket_path.exists() else f"journald NOT running (no {socket_path})"
        return f"{parsed} ({state})"
    from .stores.sqlite import DEFAULT_PATH

    path = Path(parsed.path or DEFAULT_PATH)
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check_dir_chain(existing)
    if os.path.islink(path):
        raise StoreError(f"store {parsed}: {path} is a symbolic link; peripetyd does not write through links")
    return f"{parsed} (directory checked)"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Configuration file (TOML). Default: {DEFAULT_CONFIG} if it exists, else built-in rules only.")
@click.option("--store", default=None, metavar="SPEC",
              help="Where events go (overrides the config's store): auto (journald when it runs, else SQLite at "
                   "/var/lib/peripety/events.db), journal (alias journald), journal:NAMESPACE, sqlite or "
                   "sqlite:PATH.")
@click.option("--stdout", is_flag=True, help="Also print every event to stdout as pretty JSON.")
@click.option("--no-blk-info-dump", is_flag=True, help="Do not emit PERIPETY_BLK_INFO events for every device at start.")
@click.option("--bpf", type=click.Choice(["off", "auto", "on"]), default="off", is_flag=False, flag_value="auto",
              help="Tracepoint probes (bcc) for exact device numbers and sectors. --bpf alone means auto: "
                   "use them if they load; on: fail if they cannot.")
@click.option("--from-start", is_flag=True, help="Read /dev/kmsg from the oldest record instead of the end "
                                                  "(when there is no saved position for this boot).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STATE_DIR,
              show_default=True, help="Read position and spool directory.")
@click.option("--status-file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_STATUS_PATH,
              show_default=True, help="Status file read by `prpt top`.")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Instead of /dev/kmsg, run a saved kernel log (any format `prpt parse` reads) through "
                   "the pipeline into the store, then exit.")
@click.option("--check", is_flag=True, help="Validate the config, print the sources and the probe attach plan, exit.")
@click.option("-v", "--verbose", count=True, help="More logging to stderr (-vv for debug).")
def main(config_path, store, stdout, no_blk_info_dump, bpf, from_start, state_dir, status_file, replay, check,
         verbose):
    """Peripety daemon: read kernel storage messages from /dev/kmsg (and
    user-space storage daemons' logs from the journal), turn them into
    structured storage events and store them (journald or SQLite).

    Needs root (or CAP_SYSLOG for /dev/kmsg; CAP_BPF/CAP_PERFMON for --bpf).
    SIGHUP reloads the config; SIGTERM stops after storing what is in flight.
    """
    setup_logging(verbose, prefix="peripetyd: ")
    options = DaemonOptions(
        config_path=config_path or DEFAULT_CONFIG,
        config_explicit=config_path is not None,
        store=store,
        stdout=stdout,
        blk_info_dump=False if no_blk_info_dump else None,
        bpf=bpf,
        from_start=from_start,
        state_dir=state_dir,
        status_path=status_file,
        replay=replay,
    )
    try:
        if check:
            sys.exit(_check(options))
        daemon = Daemon(options)
        if replay is not None:
            sys.exit(daemon.replay())
        daemon.open()
        sys.exit(daemon.run())
    except PermissionError as exc:
        raise click.ClickException(f"{exc.filename or exc}: permission denied (run peripetyd as root)") from None
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None


cli_main = run_cli(main, needs_stdout=False)
"""The ``peripetyd`` console script."""


if __name__ == "__main__":  # pragma: no cover
    cli_main()
