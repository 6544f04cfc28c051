"""``prpt notify-test``: run a sample event through the ``[[notify]]``
actions of peripetyd.conf, as the daemon would, and report each program's
exit status. Nothing is stored, no repeat state or rate limit is touched:
the programs get ``PERIPETY_TEST=1`` and an event marked as a test."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from ..errors import DeviceNotFound, PeripetyError
from ..event import BlkInfo, Severity, StorageEvent, canonical_sub_system
from ..event_types import EVENT_TYPES
from .options import verbose_option

DEFAULT_CONFIG = Path("/etc/peripetyd.conf")
SAMPLE_RAW = "I/O error, dev {kdev}, sector 2048 op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2"


def sample_event(event_type: str, sub_system: str | None, severity: Severity | None, device: str | None,
                 rules) -> StorageEvent:
    """A made-up ``event_type`` event: on ``device`` (resolved as ``prpt
    info`` does) or on a sample disk ``sdz`` that does not exist."""
    if sub_system is None:
        sub_system = next((r.sub_system for r in rules.rules if r.event_type == event_type), "Peripety")
    if device is not None:
        info = _resolve(device)
        kdev = os.path.basename(info.blk_path)
    else:
        kdev = "sdz"
        info = BlkInfo(wwid="peripety-notify-test", blk_type="SCSI", blk_path="/dev/sdz",
                       preferred_blk_path="/dev/sdz", dev_num="65:144")
    title = EVENT_TYPES.get(event_type).title if EVENT_TYPES.get(event_type) else event_type
    raw = SAMPLE_RAW.format(kdev=kdev) if event_type == "BLK_IO_ERROR" else f"prpt notify-test: {title}"
    return StorageEvent(
        event_type=event_type,
        sub_system=sub_system,
        severity=severity if severity is not None else EVENT_TYPES.default_severity(event_type),
        kdev=kdev,
        dev_num=info.dev_num,
        cur_blk_info=info,
        msg=f"TEST from prpt notify-test (no real failure): {title} on {info.preferred_blk_path or kdev}",
        raw_msg=raw,
        extension={"sector": "2048", "notify_test": "true"} if event_type == "BLK_IO_ERROR" else
        {"notify_test": "true"},
        sources=["peripetyd"],
    )


def _resolve(device: str) -> BlkInfo:
    from ..devices import resolve

    try:
        return resolve(device)
    except DeviceNotFound as exc:
        raise click.ClickException(f"--device: block device {exc}") from None


@click.command(name="notify-test")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CONFIG,
              show_default=True, help="peripetyd.conf whose [[notify]] actions are run.")
@click.option("--event-type", "event_type", default="BLK_IO_ERROR", show_default=True, metavar="TYPE",
              help="Type of the sample event (`prpt event-types` lists them).")
@click.option("--severity", default=None, metavar="LEVEL",
              help="Severity of the sample event. Default: the event type's.")
@click.option("--sub-system", "sub_system", default=None, metavar="NAME",
              help="Sub-system of the sample event. Default: the one the built-in rules give the type.")
@click.option("--device", default=None, metavar="BLOCK",
              help="Put the sample event on this real block device (any key `prpt info` takes). "
                   "Default: a sample disk sdz (WWID peripety-notify-test).")
@click.option("--action", "names", multiple=True, metavar="NAME",
              help="Run only this action (its name = ..., or notify[N] by position); repeatable.")
@click.option("--all", "ignore_filters", is_flag=True,
              help="Run every action, even those whose filter would skip the sample event.")
@verbose_option
def command(config_path, event_type, severity, sub_system, device, names, ignore_filters):
    """Run a sample event through the [[notify]] actions of peripetyd.conf
    (as peripetyd would: event JSON on stdin, PERIPETY_* variables, the
    action's timeout), wait for them and print each one's exit status.
    Programs also get PERIPETY_TEST=1. Exit status 1 when an action failed
    or none ran (or the config is invalid), 2 on invalid usage."""
    from ..config import load_config
    from ..outputs.notify import make_job
    from ..outputs.runner import Runner

    try:
        config = load_config(config_path)
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.notify:
        raise click.ClickException(f"{config_path}: no [[notify]] sections: nothing to test")
    if event_type not in EVENT_TYPES and not any(r.event_type == event_type for r in config.rules.rules):
        raise click.BadParameter(f"unknown event type {event_type!r} (`prpt event-types` lists them)",
                                 param_hint="'--event-type'")
    try:
        level = Severity.parse(severity) if severity is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--severity'") from None
    try:
        sub = canonical_sub_system(sub_system) if sub_system is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--sub-system'") from None
    event = sample_event(event_type, sub, level, device, config.rules)

    actions = list(enumerate(config.notify))
    if names:
        wanted = set(names)
        actions = [(i, a) for i, a in actions if a.name in wanted or f"notify[{i}]" in wanted]
        unknown = wanted - {a.name for _, a in actions} - {f"notify[{i}]" for i, _ in actions}
        if unknown:
            raise click.BadParameter(f"no [[notify]] action named {', '.join(sorted(unknown))} "
                                     f"(have: {', '.join(a.name for a in config.notify)})", param_hint="'--action'")
    runner = Runner(max_children=len(actions) or 1)
    failed = ran = 0
    for index, action in actions:
        why = None if ignore_filters else action.why_not(event)
        if why is not None:
            click.echo(f"{action.name}: skipped: {why} (--all runs it anyway)")
            continue
        try:
            action.program()
        except PeripetyError as exc:
            click.echo(f"{action.name}: FAILED: {exc}")
            failed += 1
            continue
        extra = {"ALERT_NUMBER": "1", "SUPPRESSED": "0", "DROPPED": "0", "TEST": "1"}
        runner.submit(make_job(action, event, extra, f"{event.event_id}/{action.key}"))
        ran += 1
    if ran:
        click.echo(f"sample {event.event_type} event {event.event_id} on {event.kdev}: running {ran} action(s)...")
    deadline = time.monotonic() + max(a.timeout for _, a in actions) + 10
    for done in runner.wait(deadline):
        click.echo(f"{done.job.name}: {'ok' if done.ok else 'FAILED'}: {done.describe()}")
        if done.output:
            click.echo("\n".join("  | " + line for line in done.output.splitlines()[-20:]))
        failed += 0 if done.ok else 1
    if ran == 0 and failed == 0:
        raise click.ClickException("no action ran: every filter skips the sample event "
                                   "(choose --event-type/--device/--severity to match, or use --all)")
    if failed:
        raise SystemExit(1)
