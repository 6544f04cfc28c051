"""``prpt event-types``: every event type with its sub-systems, default
severity, journald MESSAGE_ID and catalog description."""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass

import click

from ..event_types import EVENT_TYPES
from .options import OUTPUT_JSON, OUTPUT_JSONL, config_option, load_rules, output_options, verbose_option
from .output import quiet_broken_pipe

HELP = """List the event types peripety emits.

For each type: the sub-systems whose rules emit it, its default severity,
its journald MESSAGE_ID (journalctl MESSAGE_ID=... finds its events) and
what it means. "generic" marks a family's catch-all type: a storage line a
subsystem grammar recognised but no specific rule named; its severity is
the kernel's log level of the line, or follows from its wording.

With --config, event types that only the site's rules define are listed
too (default severity Warning, no description).

\b
Examples:
  prpt event-types
  prpt event-types --sub-system md
  prpt event-types --jsonl | jq -r 'select(.severity == "Critical") | .event_type'
"""


@dataclass(frozen=True)
class EventTypeRow:
    event_type: str
    severity: str
    sub_systems: tuple[str, ...]
    generic: bool
    message_id: str
    title: str
    description: str

    def to_dict(self) -> dict:
        return {
            "event_type": self.event_type, "severity": self.severity,
            "sub_systems": list(self.sub_systems), "generic": self.generic,
            "message_id": self.message_id, "title": self.title, "description": self.description,
        }


def event_type_rows(ruleset) -> list[EventTypeRow]:
    """One row per event type of the catalog or of a rule in ``ruleset``,
    sorted by name; sub-systems are those the rules give it (``Peripety``
    for the daemon's own types)."""
    sub_systems: dict[str, set[str]] = {}
    generic: set[str] = set()
    for rule in ruleset.rules:
        sub_systems.setdefault(rule.event_type, set()).add(rule.sub_system)
        if rule.generic:
            generic.add(rule.event_type)
    names = {info.name for info in EVENT_TYPES} | set(sub_systems)
    rows = []
    for name in sorted(names):
        info = EVENT_TYPES.get(name)
        systems = sub_systems.get(name) or ({"Peripety"} if name.startswith("PERIPETY_") else set())
        rows.append(EventTypeRow(
            event_type=name,
            severity=EVENT_TYPES.default_severity(name).name,
            sub_systems=tuple(sorted(systems, key=str.lower)),
            generic=name in generic,
            message_id=EVENT_TYPES.message_id(name),
            title=info.title if info else "",
            description=info.description if info else "(defined by a site rule)",
        ))
    return rows


def _text(row: EventTypeRow) -> str:
    head = f"{row.event_type}  {row.severity}  {', '.join(row.sub_systems) or '-'}"
    if row.generic:
        head += "  (generic)"
    body = "\n".join(textwrap.wrap(row.description, 76, initial_indent="    ", subsequent_indent="    "))
    title = f"    {row.title}\n" if row.title else ""
    return f"{head}\n{title}    MESSAGE_ID={row.message_id}\n{body}\n"


@click.command("event-types", help=HELP)
@click.option("--sub-system", "sub_system", metavar="NAME",
              help="Only types emitted for this sub-system (case-insensitive, e.g. md, SCSI, ext4).")
@output_options
@config_option
@verbose_option
def command(sub_system, output_format, config_path):
    rows = event_type_rows(load_rules(config_path))
    if sub_system:
        wanted = sub_system.lower()
        rows = [r for r in rows if wanted in (s.lower() for s in r.sub_systems)]
        if not rows:
            raise click.BadParameter(f"no event type has sub-system {sub_system!r}", param_hint="--sub-system")
    try:
        if output_format == OUTPUT_JSONL:
            for row in rows:
                sys.stdout.write(json.dumps(row.to_dict()) + "\n")
        elif output_format == OUTPUT_JSON:
            sys.stdout.write(json.dumps([r.to_dict() for r in rows], indent=2) + "\n")
        else:
            sys.stdout.write("\n".join(_text(r) for r in rows))
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_broken_pipe()
        sys.exit(1)

