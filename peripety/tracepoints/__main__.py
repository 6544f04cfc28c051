"""``python -m peripety.tracepoints``: print the attach plan, the program,
or load the probes and print hits (the sampled detail) and the kernel's
counts (``{"counted": ...}``, each tick) as JSON lines until Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import logging
import selectors
import sys

import click

from ..errors import PeripetyError
from .loader import program_text
from .plan import MODES, describe_plan, plan_attach
from .source import TracepointSource

log = logging.getLogger("peripety.tracepoints")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bpf", "mode", type=click.Choice(MODES), default="on", show_default=True,
              help="auto: carry on without probes when they cannot load; on: fail instead.")
@click.option("--check", is_flag=True, help="Print the attach plan and exit (1 if the probes cannot load).")
@click.option("--ebpf", is_flag=True, help="Print the BPF program as it would be compiled, and exit.")
@click.option("-v", "--verbose", count=True, help="More log output on stderr.")
def main(mode: str, check: bool, ebpf: bool, verbose: int) -> None:
    logging.basicConfig(level=logging.WARNING - 10 * verbose, format="%(name)s: %(levelname)s: %(message)s")
    plan = plan_attach(mode)
    if ebpf:
        click.echo(program_text(plan))
        return
    if check:
        click.echo(describe_plan(plan))
        sys.exit(0 if plan.usable or mode == "off" else 1)
    try:
        source = TracepointSource.open(mode, plan)
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
    if source is None:
        return
    with source:
        _print_hits(source)


def _print_hits(source: TracepointSource) -> None:
    selector = selectors.DefaultSelector()
    selector.register(source, selectors.EVENT_READ)
    # Tell a parent (test, benchmark, daemon integration) the probes are live.
    click.echo(json.dumps({"ready": [p.spec.tracepoint for p in source.plan.probes]}), err=True)
    try:
        while True:
            selector.select(max(0.0, source.maps.next_deadline() - source.maps.clock()))
            for hit in source.read():
                sys.stdout.write(json.dumps(hit.to_dict(), separators=(",", ":")) + "\n")
            found = source.collect()
            for agg in found.items if found else ():
                sys.stdout.write(json.dumps({"counted": dataclasses.asdict(agg)}, separators=(",", ":")) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        lost = source.lost_by_kind()
        if any(lost.values()):
            log.warning("samples lost (ring buffer full): %s", {k: v for k, v in lost.items() if v})


if __name__ == "__main__":
    main()
