"""``[[notify]]`` sections of peripetyd.conf: which events (a filter) run
which program (an action), how often (a repeat policy) and how fast.

    [[notify]]
    name = "mail-admin"                    # optional, for the log and the state
    exec = ["/usr/local/share/peripety/contrib/notify/mail", "root"]  # or one string, split like a shell
    min_severity = "Error"                 # default Error
    event_types = ["BLK_IO_ERROR", "FS_*"] # default: every type; glob patterns allowed
    sub_systems = ["block", "ext4"]        # default: every sub-system
    devices = ["sdb", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "8:16"]  # default: every device
    repeat = "daily"                       # once | daily | diminishing (default daily)
    timeout = 30                           # seconds before the program's process group is killed
    max_per_hour = 20                      # alerts from this action per rolling hour (0: no limit)

Everything is checked when the file is read; an error names the file, the
section (``notify[1]``) and the line.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
from dataclasses import dataclass, field

from ..errors import ConfigError, PeripetyError
from ..event import Severity, StorageEvent, canonical_sub_system
from ..rules.toml_lines import TomlLines, where
from .repeat import POLICIES

KEYS = ("name", "exec", "min_severity", "event_types", "sub_systems", "devices", "repeat", "timeout",
        "max_per_hour")
DEFAULT_MIN_SEVERITY = Severity.Error
DEFAULT_REPEAT = "daily"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_PER_HOUR = 20
_DEV_NUM = re.compile(r"^\d+:\d+$")


@dataclass(frozen=True)
class NotifyAction:
    """One ``[[notify]]`` section, checked."""

    name: str
    """Shown in the log and by ``prpt notify-test``."""
    key: str
    """Identifies the action in the state file across restarts: the name
    when given, else the command line."""
    argv: tuple[str, ...]
    min_severity: Severity = DEFAULT_MIN_SEVERITY
    event_types: frozenset[str] = frozenset()
    """Exact names; empty with no patterns means every type."""
    event_type_patterns: tuple[str, ...] = ()
    sub_systems: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    """Every spelling a configured device may take in an event (name,
    /dev path, link target, MAJ:MIN, WWID); empty means every device."""
    device_specs: tuple[str, ...] = ()
    """The devices as the admin wrote them."""
    repeat: str = DEFAULT_REPEAT
    timeout: float = DEFAULT_TIMEOUT
    max_per_hour: int = DEFAULT_MAX_PER_HOUR
    where: str = ""
    """``notify[0] (line 12)``: for messages about this section."""
    exec_where: str = ""
    path: str | None = field(default=None, compare=False)
    """The config file (for messages)."""

    def matches(self, event: StorageEvent, identities: set[str] | None = None) -> bool:
        """The filter: severity at least ``min_severity`` (lower number is
        worse), type, sub-system and device (``identities``: the event's
        ``device_identities``, when the caller has them already)."""
        if event.severity > self.min_severity:
            return False
        if (self.event_types or self.event_type_patterns) and not self._type_matches(event.event_type):
            return False
        if self.sub_systems and event.sub_system not in self.sub_systems:
            return False
        if self.devices and self.devices.isdisjoint(identities if identities is not None
                                                    else device_identities(event)):
            return False
        return True

    def why_not(self, event: StorageEvent) -> str | None:
        """The first filter ``event`` fails, in words; None if it matches."""
        if event.severity > self.min_severity:
            return f"severity {event.severity.name} is below min_severity {self.min_severity.name}"
        if (self.event_types or self.event_type_patterns) and not self._type_matches(event.event_type):
            return f"event type {event.event_type} is not in event_types"
        if self.sub_systems and event.sub_system not in self.sub_systems:
            return f"sub-system {event.sub_system} is not in sub_systems"
        if self.devices and not (self.devices & device_identities(event)):
            return f"device {event.kdev or '(none)'} is not in devices"
        return None

    def _type_matches(self, event_type: str) -> bool:
        return event_type in self.event_types or any(
            fnmatch.fnmatchcase(event_type, p) for p in self.event_type_patterns)

    def program(self) -> str:
        """The program that would run: ``argv[0]`` as given, or found in PATH.
        Raises ConfigError when it is missing or not executable."""
        return check_program(self.argv[0], self.path, self.exec_where)


def device_identities(event: StorageEvent) -> set[str]:
    """Every name the event's device (and the devices below it) goes by."""
    ids = {event.kdev, event.dev_num}
    if event.kdev and not event.kdev.startswith("/"):
        ids.add("/dev/" + event.kdev)
    info = event.cur_blk_info
    if info is not None:
        ids.update((info.wwid, info.dev_num, info.blk_path, info.preferred_blk_path, info.uuid or ""))
        ids.update(os.path.basename(p) for p in (info.blk_path, info.preferred_blk_path) if p)
        ids.update(info.owners_wwids)
        ids.update(info.owners_paths)
        ids.update(os.path.basename(p) for p in info.owners_paths if p)
    ids.discard("")
    return ids


def device_spellings(spec: str) -> set[str]:
    """What a configured device may appear as in an event: ``sdb`` and
    ``/dev/sdb`` both; a ``/dev/disk/by-*`` or ``/dev/mapper`` link also as
    the device it points to now; ``8:16`` as a device number; anything else
    (a WWID, a file-system UUID) as itself."""
    spec = spec.strip()
    if _DEV_NUM.match(spec):
        return {spec}
    names = {spec}
    if spec.startswith("/"):
        names.add(os.path.basename(spec))
        real = os.path.realpath(spec)
        if real != spec and os.path.exists(real):
            names.update((real, os.path.basename(real)))
            if spec.startswith("/dev/disk/"):
                names |= _stable_identity(spec)
    elif "/" not in spec:
        names.add("/dev/" + spec)
    return names


def _stable_identity(link: str) -> set[str]:
    """A /dev/disk/by-* link names the disk, not the kernel name it has
    today: its WWID too, so a renamed disk still matches."""
    from ..devices import resolve  # only here: config loading needs no udev otherwise

    try:
        wwid = resolve(link).wwid
    except (PeripetyError, OSError):
        return set()
    return {wwid} if wwid else set()


def check_program(program: str, path, at: str) -> str:
    """The executable ``program`` names (absolute, or looked up in PATH)."""
    found = program if "/" in program else shutil.which(program)
    if found is None:
        raise ConfigError(path, at, f"program {program!r} not found in PATH "
                                    f"({os.environ.get('PATH', os.defpath)}); give its absolute path")
    if not os.path.isfile(found):
        raise ConfigError(path, at, f"program {found} does not exist (or is not a file)")
    if not os.access(found, os.X_OK):
        raise ConfigError(path, at, f"program {found} is not executable (chmod +x {found})")
    return found


def parse_notify(sections, path, lines: TomlLines, known_types: set[str]) -> tuple[NotifyAction, ...]:
    """The ``[[notify]]`` array of tables, each section checked."""
    if not isinstance(sections, list) or not all(isinstance(s, dict) for s in sections):
        table = lines.table("notify")
        raise ConfigError(path, where("notify", table.line if table else lines.key(None, "notify")),
                          "notify must be an array of tables: write each action as a [[notify]] section")
    actions = [_action(i, s, path, lines, known_types) for i, s in enumerate(sections)]
    seen: dict[str, NotifyAction] = {}
    for action in actions:
        if action.key in seen:
            raise ConfigError(path, action.where,
                              f"a second [[notify]] with the same {'name' if action.name == action.key else 'command'} "
                              f"as {seen[action.key].where}: give each action its own name")
        seen[action.key] = action
    return tuple(actions)


def _action(index: int, table: dict, path, lines: TomlLines, known_types: set[str]) -> NotifyAction:
    block = lines.array_item("notify", index)
    section = where(f"notify[{index}]", block.line if block else None)

    def at(key: str) -> str:
        return where(f"notify[{index}].{key}", lines.key(block, key) if block else None)

    def fail(key: str, reason: str):
        raise ConfigError(path, at(key), reason)

    for key in table:
        if key not in KEYS:
            fail(key, f"unknown key {key!r} in [[notify]] (known: {', '.join(KEYS)})")
    if "exec" not in table:
        raise ConfigError(path, section, "[[notify]] has no exec: give the program to run, "
                                         'e.g. exec = ["/usr/local/bin/alert", "--to", "root"]')
    argv = _argv(table["exec"], lambda reason: fail("exec", reason))
    name = table.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        fail("name", "name must be a non-empty string")

    try:
        min_severity = Severity.parse(table.get("min_severity", DEFAULT_MIN_SEVERITY.name))
    except (ValueError, TypeError) as exc:
        fail("min_severity", str(exc))

    exact, patterns = set(), []
    for item in _strings(table, "event_types", fail):
        if any(c in item for c in "*?["):
            if not any(fnmatch.fnmatchcase(t, item) for t in known_types):
                fail("event_types", f"pattern {item!r} matches no known event type (`prpt event-types` lists them)")
            patterns.append(item)
        elif item not in known_types:
            close = [t for t in sorted(known_types) if item.upper() in t or t in item.upper()][:3]
            fail("event_types", f"unknown event type {item!r}" + (f" (did you mean {', '.join(close)}?)" if close
                                                                   else " (`prpt event-types` lists them)"))
        else:
            exact.add(item)

    sub_systems = set()
    for item in _strings(table, "sub_systems", fail):
        try:
            sub_systems.add(canonical_sub_system(item))
        except ValueError as exc:
            fail("sub_systems", str(exc))

    specs = _strings(table, "devices", fail)
    devices = set()
    for spec in specs:
        if not spec.strip():
            fail("devices", "devices must not hold an empty string")
        devices |= device_spellings(spec)

    repeat = table.get("repeat", DEFAULT_REPEAT)
    if repeat not in POLICIES:
        fail("repeat", f"repeat must be one of {', '.join(POLICIES)} (as smartd -M), not {repeat!r}")

    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400:
        fail("timeout", "timeout must be a number of seconds, more than 0 and at most 86400")

    max_per_hour = table.get("max_per_hour", DEFAULT_MAX_PER_HOUR)
    if isinstance(max_per_hour, bool) or not isinstance(max_per_hour, int) or max_per_hour < 0:
        fail("max_per_hour", "max_per_hour must be a whole number >= 0 (0: no limit)")

    display = name.strip() if name else f"notify[{index}] ({os.path.basename(argv[0])})"
    return NotifyAction(
        name=display,
        key=name.strip() if name else "exec:" + shlex.join(argv),
        argv=argv,
        min_severity=min_severity,
        event_types=frozenset(exact),
        event_type_patterns=tuple(patterns),
        sub_systems=frozenset(sub_systems),
        devices=frozenset(devices),
        device_specs=tuple(specs),
        repeat=repeat,
        timeout=float(timeout),
        max_per_hour=max_per_hour,
        where=section,
        exec_where=at("exec"),
        path=str(path) if path is not None else None,
    )


def _argv(value, fail) -> tuple[str, ...]:
    """``exec``: a list of strings, or one string split as a shell would
    split words (no shell runs: write ``["sh", "-c", "..."]`` for one)."""
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            fail(f"exec: {exc} (the string is split into words like a shell does; check the quotes)")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = list(value)
    else:
        fail('exec must be a list of strings (["/path/prog", "arg"]) or one string')
    if not argv or not argv[0]:
        fail("exec names no program")
    if any("\0" in a for a in argv):
        fail("exec must not contain NUL characters")
    return tuple(argv)


def _strings(table: dict, key: str, fail) -> list[str]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        fail(key, f"{key} must be a list of strings")
    return value
