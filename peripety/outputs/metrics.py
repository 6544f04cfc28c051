"""Prometheus metrics of the stored events (``peripetyd --metrics``,
``--metrics-textfile``): counted from what the store took, as an output
(doc/design.md, "Outputs"), served by prometheus_client over HTTP and/or
written for node_exporter's textfile collector.

Counting happens in the daemon's thread (``on_event``, ``tick``); a scrape
runs in prometheus_client's HTTP thread and reads a copy taken under a
lock, so a scrape never sees half an event and never touches the store.

What is counted (the names and labels are a contract for users' alerts
and dashboards; README "Metrics"):

- ``peripety_events_total{event_type, sub_system, severity, wwid, kdev}``:
  every stored event but the start-up inventory (PERIPETY_BLK_INFO), a
  storm aggregate adding its ``count``. ``severity`` is the lower-case RFC
  5424 name. The device labels are bounded: the first ``max_devices``
  (wwid, kdev) pairs keep their own series, later devices share one with
  ``wwid="_other", kdev="_other"``; events without a device have both
  labels empty.
- the daemon's own losses, from its PERIPETY_* events: kmsg records
  overwritten (``missed``), kernel lines suppressed by printk ratelimit
  (``count``), BPF samples lost (``lost``) and failures no probe counted
  (``missed``: runs the kernel skipped for recursion, plus failures the
  kernel's own perf count saw beyond the probes' maps);
- store health (read at each tick): up, refusals, spool depth, spooled
  events dropped because the spool was full;
- ``peripety_up``, ``peripety_build_info``, start and last-event times.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import socketserver
import stat
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import (CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest,
                               make_wsgi_app)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from .. import __version__
from ..errors import PeripetyError
from ..event import StorageEvent
from ..safefiles import UnsafePathError, check_dir_chain, write_atomically
from .metrics_options import DEFAULT_MAX_DEVICES, ListenAddress

log = logging.getLogger("peripety.outputs.metrics")

TEXTFILE_INTERVAL = 5.0
"""Seconds between textfile rewrites (also when nothing changed: node_exporter's
node_textfile_mtime_seconds then says the daemon is alive)."""
OTHER_DEVICE = ("_other", "_other")
"""(wwid, kdev) of the series devices share once ``max_devices`` have their own."""
NO_DEVICE = ("", "")
EVENT_LABELS = ("event_type", "sub_system", "severity", "wwid", "kdev")
NOT_COUNTED = frozenset({"PERIPETY_BLK_INFO"})
"""The start-up inventory: one per block device, not something that happened."""
HTTP_TIMEOUT = 10.0
"""Seconds a scrape connection may stay silent before it is closed."""


class MetricsError(PeripetyError):
    """Metrics cannot be served or written as asked (a port in use, an
    unsafe or missing textfile directory)."""


# -- counting -----------------------------------------------------------------
def _number(event: StorageEvent, key: str) -> int:
    """An extension count the daemon wrote itself (a decimal string)."""
    try:
        return max(0, int(event.extension.get(key, "0")))
    except ValueError:
        log.warning("%s event with a non-numeric %s=%r: not counted", event.event_type, key,
                    event.extension.get(key))
        return 0


class EventCounters:
    """Exact counts of the stored events, device labels bounded."""

    def __init__(self, max_devices: int = DEFAULT_MAX_DEVICES):
        self.max_devices = max_devices
        self.events: dict[tuple[str, ...], int] = defaultdict(int)
        self.devices: set[tuple[str, str]] = set()
        self.kmsg_overruns = 0
        self.lines_suppressed = 0
        self.bpf_samples_lost = 0
        self.bpf_runs_missed = 0
        self.last_event_time: float | None = None

    def device(self, event: StorageEvent) -> tuple[str, str]:
        """The (wwid, kdev) labels of ``event``: its own while fewer than
        ``max_devices`` devices have a series, else the shared overflow."""
        wwid = event.cur_blk_info.wwid if event.cur_blk_info is not None else ""
        device = (wwid or "", event.kdev or "")
        if device == NO_DEVICE or device in self.devices:
            return device
        if len(self.devices) >= self.max_devices:
            return OTHER_DEVICE
        self.devices.add(device)
        return device

    def add(self, event: StorageEvent) -> None:
        kind = event.event_type
        if kind in NOT_COUNTED:
            return
        key = (kind, event.sub_system, event.severity.name.lower(), *self.device(event))
        self.events[key] += max(1, event.count)
        if kind == "PERIPETY_KMSG_OVERRUN":
            self.kmsg_overruns += _number(event, "missed")
        elif kind == "PERIPETY_KMSG_SUPPRESSED":
            self.lines_suppressed += _number(event, "count")
        elif kind == "PERIPETY_BPF_LOST":
            self.bpf_samples_lost += _number(event, "lost")
            self.bpf_runs_missed += _number(event, "missed")
        when = (event.last_timestamp or event.timestamp).timestamp()
        if self.last_event_time is None or when > self.last_event_time:
            self.last_event_time = when


@dataclass
class StoreHealth:
    """What the store says about itself, read in the daemon's thread."""

    name: str = ""
    up: bool = True
    refusals: int = 0
    spool_depth: int = 0
    spool_dropped: int = 0

    @classmethod
    def of(cls, store) -> "StoreHealth":
        if store is None:
            return cls()
        spool = getattr(store, "spool", None)
        return cls(name=store.name, up=store.error is None, refusals=getattr(store, "refusals", 0),
                   spool_depth=store.spool_depth, spool_dropped=getattr(spool, "dropped", 0))


@dataclass
class Snapshot:
    events: dict
    devices: int
    max_devices: int
    kmsg_overruns: int
    lines_suppressed: int
    bpf_samples_lost: int
    bpf_runs_missed: int
    last_event_time: float | None
    store: StoreHealth
    up: bool


class PeripetyCollector:
    """prometheus_client custom collector over a snapshot of the counters
    (no metric objects in any global registry)."""

    def __init__(self, snapshot):
        self._snapshot = snapshot
        self.started = time.time()

    def collect(self):
        s: Snapshot = self._snapshot()
        up = GaugeMetricFamily("peripety_up", "1 while peripetyd runs (0 in the textfile it writes as it stops).")
        up.add_metric([], 1 if s.up else 0)
        yield up
        build = InfoMetricFamily("peripety_build", "peripetyd's version.", labels=())
        build.add_metric([], {"version": __version__,
                              "python": ".".join(map(str, sys.version_info[:3]))})
        yield build
        yield GaugeMetricFamily("peripety_start_time_seconds", "When peripetyd started (Unix time).",
                                value=self.started)
        events = CounterMetricFamily(
            "peripety_events_total",
            "Storage events stored (storm aggregates add their count; the start-up PERIPETY_BLK_INFO "
            "inventory is not counted). Devices beyond peripety_metrics_device_series_max share "
            'wwid="_other",kdev="_other".', labels=EVENT_LABELS)
        for labels, value in sorted(s.events.items()):
            events.add_metric(labels, value)
        yield events
        if s.last_event_time is not None:
            yield GaugeMetricFamily("peripety_last_event_timestamp_seconds",
                                    "Time of the newest stored event (a storm aggregate's last occurrence).",
                                    value=s.last_event_time)
        yield GaugeMetricFamily("peripety_metrics_device_series",
                                "(wwid, kdev) label sets with their own series in peripety_events_total.",
                                value=s.devices)
        yield GaugeMetricFamily("peripety_metrics_device_series_max",
                                "Device label sets kept before the rest share the _other series ([metrics] "
                                "max_devices).", value=s.max_devices)
        yield CounterMetricFamily("peripety_kmsg_overruns_total",
                                  "Kernel log records overwritten in /dev/kmsg before peripetyd read them "
                                  "(PERIPETY_KMSG_OVERRUN missed).", value=s.kmsg_overruns)
        yield CounterMetricFamily("peripety_kernel_lines_suppressed_total",
                                  "Storage log lines the kernel's printk ratelimit dropped "
                                  "(PERIPETY_KMSG_SUPPRESSED count).", value=s.lines_suppressed)
        yield CounterMetricFamily("peripety_bpf_samples_lost_total",
                                  "Tracepoint samples lost to a full BPF ring buffer (PERIPETY_BPF_LOST lost); "
                                  "the failures stay counted.", value=s.bpf_samples_lost)
        yield CounterMetricFamily("peripety_bpf_probe_runs_missed_total",
                                  "Storage failures no probe counted (PERIPETY_BPF_LOST missed): runs the "
                                  "kernel skipped while another BPF program ran on the CPU, plus failures the "
                                  "kernel's own count of the tracepoint saw beyond the probes' maps.",
                                  value=s.bpf_runs_missed)
        store_up = GaugeMetricFamily("peripety_store_up", "1 while the store takes events (else they are spooled).",
                                     labels=("store",))
        store_up.add_metric([s.store.name], 1 if s.store.up else 0)
        yield store_up
        yield CounterMetricFamily("peripety_store_errors_total",
                                  "Times the store refused an event (it went to the spool).", value=s.store.refusals)
        yield GaugeMetricFamily("peripety_spool_depth", "Events in the spool waiting for the store.",
                                value=s.store.spool_depth)
        yield CounterMetricFamily("peripety_spool_dropped_total",
                                  "Spooled events dropped because the spool was full (lost events).",
                                  value=s.store.spool_dropped)


# -- serving ------------------------------------------------------------------
class _QuietHandler(WSGIRequestHandler):
    timeout = HTTP_TIMEOUT

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("scrape from %s: " + format, self.address_string(), *args)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    dual_stack = False

    def server_bind(self):
        if self.dual_stack:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # TCPServer's bind only: HTTPServer's would look up the host's FQDN
        # (DNS) at start for a name nothing here uses.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]
        self.setup_environ()


def _bind_target(address: ListenAddress) -> tuple[int, tuple]:
    """(family, sockaddr) for ``address``: every address is IPv6 and IPv4
    on one socket where IPv6 exists, IPv4's 0.0.0.0 otherwise."""
    if not address.host:
        if socket.has_ipv6 and os.path.exists("/proc/net/if_inet6"):
            return socket.AF_INET6, ("::", address.port)
        return socket.AF_INET, ("0.0.0.0", address.port)
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise MetricsError(f"--metrics {address}: cannot resolve {address.host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def serve_http(address: ListenAddress, registry: CollectorRegistry) -> _Server:
    """Listen on ``address`` now (so a port in use is an error at start)
    and serve ``registry`` from a daemon thread."""
    family, sockaddr = _bind_target(address)
    server_class = type("MetricsServer", (_Server,), {"address_family": family,
                                                       "dual_stack": family == socket.AF_INET6
                                                       and sockaddr[0] == "::"})
    try:
        server = server_class(sockaddr, _QuietHandler, bind_and_activate=False)
    except OSError as exc:
        raise MetricsError(f"--metrics {address}: cannot make a socket: {exc.strerror}") from None
    try:
        server.server_bind()
        server.server_activate()
    except OSError as exc:
        server.server_close()
        raise _listen_error(address, exc) from None
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="peripety-metrics", daemon=True)
    thread.start()
    return server


def _listen_error(address: ListenAddress, exc: OSError) -> MetricsError:
    hint = {
        errno.EADDRINUSE: f"another program listens there (ss -ltnp 'sport = :{address.port}' shows which): "
                          "choose another port",
        errno.EADDRNOTAVAIL: "no interface of this host has that address",
        errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE",
    }.get(exc.errno)
    error = MetricsError(f"--metrics {address}: cannot listen: {exc.strerror}" + (f"; {hint}" if hint else ""))
    error.errno = exc.errno
    return error


def check_listen(address: ListenAddress) -> None:
    """What ``serve_http`` would meet, for ``peripetyd --check``: the
    address resolved and bound for an instant (never listened on), as the
    server binds it (SO_REUSEADDR; both IP versions for every address)."""
    family, sockaddr = _bind_target(address)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    except OSError as exc:
        raise MetricsError(f"--metrics {address}: cannot make a socket: {exc.strerror}") from None
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and sockaddr[0] == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            raise _listen_error(address, exc) from None


# -- the textfile ----------------------------------------------------------------
def check_textfile_dir(path: Path) -> Path:
    """The directory of ``path`` resolved, refused when another user could
    swap it for another place. The directory itself may belong to
    node_exporter's user (Debian: prometheus): peripetyd only ever creates a
    new file there (O_EXCL, O_NOFOLLOW) and renames it, never writes
    through what is there."""
    parent = check_dir_chain(path.parent.parent)
    directory = Path(parent) / path.parent.name
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise MetricsError(f"--metrics-textfile {path}: the directory {path.parent} does not exist "
                           "(node_exporter's --collector.textfile.directory)") from None
    if stat.S_ISLNK(st.st_mode):
        raise MetricsError(f"--metrics-textfile {path}: {path.parent} is a symbolic link; give the real "
                           f"directory ({os.path.realpath(path.parent)})")
    if not stat.S_ISDIR(st.st_mode):
        raise MetricsError(f"--metrics-textfile {path}: {path.parent} is not a directory")
    return directory / path.name


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Replace ``path`` atomically (a new file beside it, renamed):
    node_exporter never reads half a file, nothing is written through a
    link planted there. Readable by all (node_exporter runs as its user)."""
    try:
        target = check_textfile_dir(path)
    except UnsafePathError as exc:
        raise MetricsError(f"--metrics-textfile {path}: {exc}") from None
    try:
        write_atomically(target, generate_latest(registry), 0o644, fsync=False)
    except UnsafePathError as exc:
        raise MetricsError(f"--metrics-textfile {path}: {exc}") from None
    except OSError as exc:
        raise MetricsError(f"--metrics-textfile {path}: cannot write: {exc.strerror}") from None


# -- the output ---------------------------------------------------------------------
class MetricsOutput:
    """The metrics output: counts in ``on_event``, reads the store's health
    and rewrites the textfile in ``tick``, serves scrapes from a thread."""

    name = "metrics"

    def __init__(self, *, listen: ListenAddress | None = None, textfile: Path | None = None,
                 max_devices: int = DEFAULT_MAX_DEVICES, store=None, configured=None, clock=time.monotonic):
        self.listen = listen
        self.textfile = textfile
        self.store = store
        self.configured = configured
        """The config's [metrics] at start, to tell a reload what changed."""
        self.clock = clock
        self.counters = EventCounters(max_devices)
        self._lock = threading.Lock()
        self._health = StoreHealth.of(store)
        self._up = True
        self._server: _Server | None = None
        self._next_write = 0.0
        self._write_failed: str | None = None
        collector = PeripetyCollector(self.snapshot)
        # The textfile holds peripety's metrics only: node_exporter has its
        # own process_* and python_* would mean nothing next to the node's.
        self.textfile_registry = CollectorRegistry(auto_describe=False)
        self.textfile_registry.register(collector)
        # The HTTP endpoint also says how the daemon process itself does.
        self.http_registry = CollectorRegistry(auto_describe=False)
        self.http_registry.register(collector)
        ProcessCollector(registry=self.http_registry)
        PlatformCollector(registry=self.http_registry)
        GCCollector(registry=self.http_registry)

    def open(self) -> "MetricsOutput":
        """Listen and write the first textfile now: a port in use or an
        unsafe directory is an error at start, not a log line later."""
        if self.listen is not None:
            self._server = serve_http(self.listen, self.http_registry)
            host, port = self._server.server_address[:2]
            shown = f"[{host}]" if ":" in host else host
            log.info("metrics: serving http://%s:%d/metrics", shown, port)
        if self.textfile is not None:
            try:
                write_textfile(self.textfile, self.textfile_registry)
            except MetricsError:
                self._stop_server()
                raise
            self._next_write = self.clock() + TEXTFILE_INTERVAL
            log.info("metrics: writing %s every %g s", self.textfile, TEXTFILE_INTERVAL)
        return self

    def snapshot(self) -> Snapshot:
        c = self.counters
        with self._lock:
            return Snapshot(events=dict(c.events), devices=len(c.devices), max_devices=c.max_devices,
                            kmsg_overruns=c.kmsg_overruns, lines_suppressed=c.lines_suppressed,
                            bpf_samples_lost=c.bpf_samples_lost, bpf_runs_missed=c.bpf_runs_missed,
                            last_event_time=c.last_event_time, store=self._health, up=self._up)

    # -- the output interface ---------------------------------------------------
    def on_event(self, event: StorageEvent) -> None:
        with self._lock:
            self.counters.add(event)

    def tick(self) -> None:
        health = StoreHealth.of(self.store)
        with self._lock:
            self._health = health
        if self.textfile is not None and self.clock() >= self._next_write:
            self._next_write = self.clock() + TEXTFILE_INTERVAL
            self._write()

    def reconfigure(self, config) -> None:
        """The listener and the textfile stay as started (a port is not
        re-bound under a running scraper): a change is logged."""
        if config.metrics != self.configured:
            self.configured = config.metrics
            log.warning("[metrics] changed in %s: takes effect at the next start", config.path)

    def close(self) -> None:
        with self._lock:
            self._health = StoreHealth.of(self.store)
            self._up = False
        self._stop_server()
        if self.textfile is not None:
            self._write()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _write(self) -> None:
        try:
            write_textfile(self.textfile, self.textfile_registry)
        except MetricsError as exc:
            if str(exc) != self._write_failed:
                log.error("%s (tried again every %g s)", exc, TEXTFILE_INTERVAL)
            self._write_failed = str(exc)
        else:
            if self._write_failed:
                log.info("metrics: %s written again", self.textfile)
            self._write_failed = None


def open_metrics(listen: ListenAddress | None, textfile: Path | None, config, store) -> MetricsOutput | None:
    """The metrics output the options (first) or the config's [metrics]
    ask for; None when neither asks."""
    listen = listen or config.metrics.listen
    textfile = textfile or config.metrics.textfile
    if listen is None and textfile is None:
        return None
    return MetricsOutput(listen=listen, textfile=textfile, max_devices=config.metrics.max_devices, store=store,
                         configured=config.metrics).open()


def describe_metrics(listen: ListenAddress | None, textfile: Path | None, config,
                     running_pid: int | None = None) -> str:
    """``peripetyd --check``'s line: what would be served and written, the
    address bound for an instant and the textfile's directory checked
    (MetricsError when the daemon would refuse them). A port in use while
    a peripetyd runs (``running_pid``) may be its own: said, not refused."""
    listen = listen or config.metrics.listen
    textfile = textfile or config.metrics.textfile
    said = []
    if listen is not None:
        where = f"http://{listen}/metrics" if listen.host else f"http://*:{listen.port}/metrics (every address)"
        try:
            check_listen(listen)
        except MetricsError as exc:
            if getattr(exc, "errno", None) != errno.EADDRINUSE or running_pid is None:
                raise
            where += f" (in use now, maybe by the running peripetyd, pid {running_pid})"
        else:
            where += " (address free)"
        said.append(where)
    if textfile is not None:
        try:
            check_textfile_dir(textfile)
        except UnsafePathError as exc:
            raise MetricsError(f"--metrics-textfile {textfile}: {exc}") from None
        said.append(f"textfile {textfile} (directory checked)")
    return "; ".join(said) + f"; at most {config.metrics.max_devices} device label sets"
