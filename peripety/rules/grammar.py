"""The second tier's helpers: severity of a line a subsystem grammar
recognised but no specific rule named.

Grammars themselves are rules (``grammars.toml``, the rule schema) tried
after every specific rule; their matches are *generic* events of their
family (``SCSI_MESSAGE``, ``MD_MESSAGE``...). A generic event has no
severity of its own, so it takes, in this order:

1. the kmsg priority of the record, when the input has one;
2. the level the kernel printed in the prefix (``BTRFS error (device``,
   ``EXT4-fs warning (device``): the grammar's ``level`` group;
3. the wording of the line (``[[wording]]`` in ``grammars.toml``).
"""

from __future__ import annotations

import re
import tomllib
from importlib import resources

from ..event import Severity

GRAMMARS = "grammars.toml"

_LEVELS = {
    "emerg": Severity.Emergency, "alert": Severity.Alert, "crit": Severity.Critical,
    "critical": Severity.Critical, "err": Severity.Error, "error": Severity.Error,
    "warning": Severity.Warning, "warn": Severity.Warning, "notice": Severity.Notice,
    "info": Severity.Info, "debug": Severity.Debug,
}


def grammars_text() -> str:
    return resources.files(__package__).joinpath(GRAMMARS).read_text()


class Wording:
    """Ordered (regex, severity) pairs; the first that finds a match decides."""

    def __init__(self, entries: list[dict], default: str):
        self.rules = tuple((re.compile(e["regex"]), Severity.parse(e["severity"])) for e in entries)
        self.default = Severity.parse(default)

    @classmethod
    def builtin(cls) -> "Wording":
        data = tomllib.loads(grammars_text())
        return cls(data.get("wording", []), data.get("default_severity", "Info"))

    def severity(self, text: str) -> Severity:
        for regex, severity in self.rules:
            if regex.search(text):
                return severity
        return self.default


WORDING = Wording.builtin()


def generic_severity(text: str, extension: dict[str, str], level: int | None) -> Severity:
    """Severity of a generic (grammar) match, as the module docstring says."""
    if level is not None and 0 <= level <= 7:
        return Severity(level)
    printed = extension.get("level")
    if printed:
        found = _LEVELS.get(printed.lower())
        if found is not None:
            return found
    return WORDING.severity(text)
