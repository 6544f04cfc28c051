"""``peripetyd --check``: validate the config and the store, print the
sources and the probe attach plan, write nothing."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import PeripetyError
from ..outputs.metrics_options import load_metrics_output
from ..safefiles import check_dir_chain
from ..stores import StoreError, parse_store_spec
from ..stores.journald_socket import runtime_dir
from ..stores.sqlite import DEFAULT_PATH as SQLITE_DEFAULT_PATH
from ..tracepoints import describe_plan, plan_attach
from .service import JOURNALD_SOCKET, Daemon, DaemonOptions


def check(options: DaemonOptions) -> int:
    """A problem is a PeripetyError: one line, exit 1."""
    daemon = Daemon(options)
    config = daemon.config
    click.echo(f"config: {options.config_path if options.config_path.exists() else 'built-in rules only'}"
               f" ({len(config.rules.rules)} rules)")
    click.echo(f"store: {check_store(options.store or config.store)}")
    click.echo(f"kmsg: {'readable' if os.access('/dev/kmsg', os.R_OK) else 'NOT readable (run as root)'}")
    click.echo(f"journal: {'running' if JOURNALD_SOCKET.exists() else 'not running'}")
    click.echo("user-space senders: " + "; ".join(
        f"{i}: {config.sender_policy(i).describe()}" for i in config.user_space_identifiers))
    for line in describe_notify(config):
        click.echo(line)
    if load_metrics_output(options.metrics_listen, options.metrics_textfile, config) is None:
        click.echo("metrics: off")
    else:
        from ..outputs.metrics import describe_metrics

        click.echo(f"metrics: {describe_metrics(options.metrics_listen, options.metrics_textfile, config)}")
    try:
        click.echo(describe_plan(plan_attach(options.bpf if options.bpf != "off" else "auto")))
    except PeripetyError as exc:
        click.echo(f"bpf: unavailable: {exc}")
    return 0


def describe_notify(config) -> list[str]:
    """One line per [[notify]] action; a program that is missing or not
    executable is a ConfigError naming the file and line."""
    lines = [f"notify: {len(config.notify) or 'no'} alert action(s)"]
    for action in config.notify:
        program = action.program()
        what = [f"min_severity {action.min_severity.name}"]
        if action.event_types or action.event_type_patterns:
            what.append("event_types " + ",".join(sorted(action.event_types) + list(action.event_type_patterns)))
        if action.sub_systems:
            what.append("sub_systems " + ",".join(sorted(action.sub_systems)))
        if action.device_specs:
            absent = [d for d in action.device_specs if d.startswith("/dev/") and not os.path.exists(d)]
            what.append("devices " + ",".join(action.device_specs)
                        + (f" ({', '.join(absent)} not present now)" if absent else ""))
        lines.append(f"  {action.name}: {program} ({'; '.join(what)}; repeat {action.repeat}; "
                     f"timeout {action.timeout:g} s; max_per_hour {action.max_per_hour or 'unlimited'})")
    return lines


def check_store(spec: str) -> str:
    """What ``spec`` would open, checked without writing anything."""
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
    path = Path(parsed.path or SQLITE_DEFAULT_PATH)
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check_dir_chain(existing)
    if os.path.islink(path):
        raise StoreError(f"store {parsed}: {path} is a symbolic link; peripetyd does not write through links")
    return f"{parsed} (directory checked)"
