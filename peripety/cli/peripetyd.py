"""The ``peripetyd`` command: options and exit codes at the edge, the
daemon itself in ``peripety.daemon``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..daemon import Daemon, DaemonOptions
from ..daemon.check import check as run_check
from ..daemon.service import DEFAULT_CONFIG
from ..errors import PeripetyError
from ..logsetup import setup_logging
from ..outputs.metrics_options import ListenAddressError, check_textfile_path, parse_listen_address
from ..stores.varlink import DEFAULT_SOCKET as DEFAULT_VARLINK_SOCKET
from ..position import DEFAULT_STATE_DIR
from ..status import DEFAULT_STATUS_PATH
from .entry import run_cli


class ListenAddressType(click.ParamType):
    name = "ADDR:PORT"

    def convert(self, value, param, ctx):
        try:
            return parse_listen_address(value)
        except ListenAddressError as exc:
            self.fail(str(exc), param, ctx)


class VarlinkPathType(click.ParamType):
    name = "PATH|off"

    def convert(self, value, param, ctx):
        if isinstance(value, Path) or value == "off":
            return value
        if not os.path.isabs(value):
            self.fail(f"{value!r}: give an absolute path, e.g. {DEFAULT_VARLINK_SOCKET} (or off for no Varlink "
                      "service)", param, ctx)
        return Path(value)


class TextfilePathType(click.ParamType):
    name = "PATH"

    def convert(self, value, param, ctx):
        try:
            return check_textfile_path(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


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
@click.option("--metrics", "metrics_listen", type=ListenAddressType(), default=None,
              help="Serve Prometheus metrics over HTTP on ADDR:PORT: :PORT for every address, 127.0.0.1:PORT or "
                   "[::1]:PORT for this host only. No port is reserved for peripety (the exporter ports of "
                   "Prometheus' default port allocations are all taken); pick a free one, e.g. 127.0.0.1:9877. "
                   "Overrides [metrics] listen.")
@click.option("--metrics-textfile", type=TextfilePathType(), default=None,
              help="Write the same metrics every 5 s (and at stop, with peripety_up 0) to PATH, a *.prom file in "
                   "node_exporter's textfile-collector directory, e.g. "
                   "/var/lib/prometheus/node-exporter/peripety.prom; atomically replaced. "
                   "Overrides [metrics] textfile.")
@click.option("--varlink", "varlink", type=VarlinkPathType(), default=str(DEFAULT_VARLINK_SOCKET), show_default=True,
              metavar="PATH|off",
              help="Serve the Varlink interface io.peripety (Query, Monitor, GetBlockInfo, GetStatus) on this "
                   "unix socket, which prpt monitor and prpt top follow; off: none. Root only (mode 0600) "
                   "unless --varlink-group.")
@click.option("--varlink-group", metavar="GROUP", default=None,
              help="Let members of GROUP connect to the Varlink socket too (mode 0660): they can read every "
                   "event and device, as root can.")
@click.option("--varlink-buffer", type=click.IntRange(min=4096), default=None, metavar="BYTES",
              help="Replies kept for one Varlink client that does not read (default 4 MiB); past it, a Monitor "
                   "stream drops events for that client and tells it how many (\"missed\").")
@click.option("--check", is_flag=True,
              help="Validate the config, the store and the outputs' options (alert programs, --metrics address and "
                   "textfile, --varlink socket and group) as peripetyd would at start, print the sources and the "
                   "probe attach plan, exit: 0 when it would start, 1 naming what to fix. Writes nothing.")
@click.option("-v", "--verbose", count=True, help="More logging to stderr (-vv for debug).")
@click.version_option(package_name="peripety", prog_name="peripetyd")
def main(config_path, store, stdout, no_blk_info_dump, bpf, from_start, state_dir, status_file, replay,
         metrics_listen, metrics_textfile, varlink, varlink_group, varlink_buffer, check, verbose):
    """Peripety daemon: read kernel storage messages from /dev/kmsg (and
    user-space storage daemons' logs from the journal), turn them into
    structured storage events and store them (journald or SQLite).

    Needs root (or CAP_SYSLOG for /dev/kmsg; CAP_BPF/CAP_PERFMON for --bpf).
    SIGHUP reloads the config; SIGTERM stops after storing what is in flight.
    """
    setup_logging(verbose, prefix="peripetyd: ")
    if replay is not None and (metrics_listen or metrics_textfile):
        raise click.UsageError("--metrics and --metrics-textfile count what a running daemon stores; "
                               "they have no meaning with --replay")
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
        metrics_listen=metrics_listen,
        metrics_textfile=metrics_textfile,
        varlink=None if varlink == "off" else varlink,
        varlink_group=varlink_group,
        varlink_buffer=varlink_buffer,
    )
    try:
        if check:
            sys.exit(run_check(options))
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
