"""``peripetyd --check``: validate the config, the store and the outputs'
options (what the daemon would refuse at start is refused here, naming
the option and what to do), print the sources and the probe attach plan,
write nothing."""

from __future__ import annotations

import fcntl
import importlib.util
import os
from pathlib import Path

import click

from ..errors import PeripetyError
from ..outputs.metrics_options import load_metrics_output
from ..outputs.varlink import check_socket_path, group_id
from ..safefiles import check_dir_chain
from ..stores import StoreError, parse_store_spec
from ..stores.journald_socket import runtime_dir
from ..stores.sqlite import DEFAULT_PATH as SQLITE_DEFAULT_PATH
from ..tracepoints import describe_plan, plan_attach
from .service import JOURNALD_SOCKET, Daemon, DaemonOptions
from .system import INSTANCE_LOCK


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
    running = running_peripetyd()
    if load_metrics_output(options.metrics_listen, options.metrics_textfile, config) is None:
        click.echo("metrics: off")
    else:
        from ..outputs.metrics import describe_metrics

        click.echo(f"metrics: {describe_metrics(options.metrics_listen, options.metrics_textfile, config, running)}")
    click.echo(f"varlink: {describe_varlink(options, running)}")
    try:
        click.echo(describe_plan(plan_attach(options.bpf if options.bpf != "off" else "auto")))
    except PeripetyError as exc:
        click.echo(f"bpf: unavailable: {exc}")
    return 0


def describe_varlink(options: DaemonOptions, running_pid: int | None = None) -> str:
    """The Varlink service's line: the socket's path and directory checked
    as the daemon checks them at start (VarlinkOptionError names the
    option, the value and what to do), its mode."""
    if options.varlink is None:
        return "off"
    state = check_socket_path(options.varlink)
    if running_pid is not None and "a socket is there" in state:
        state += f"; peripetyd pid {running_pid} runs"
    if options.varlink_group is not None:
        group_id(options.varlink_group)
        access = f"mode 0660, root and group {options.varlink_group}"
    else:
        access = "mode 0600, root only"
    line = f"{options.varlink} ({access}; {state})"
    if importlib.util.find_spec("varlink") is None:
        line += ("; NOT served: the varlink Python package is not installed (pip install varlink); "
                 "prpt monitor and prpt top would read the store")
    return line


def running_peripetyd(lock: Path = INSTANCE_LOCK) -> int | None:
    """The pid of the peripetyd holding the instance lock, if one runs
    (the lock tried and let go at once; nothing written)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1  # a peripetyd runs; its pid not written yet
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


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
