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
    """Ordered (regex, severity) pairs; the first pair whose regex finds a
    match in the line decides.

    The pairs are asked all at once, through one RE2 set (one pass over
    the line, whatever the number of words); Python ``re`` tries them in
    turn where RE2 is missing or refuses a pattern."""

    def __init__(self, entries: list[dict], default: str):
        self.rules = tuple((re.compile(e["regex"]), Severity.parse(e["severity"])) for e in entries)
        self.default = Severity.parse(default)
        self._set = _re2_set([e["regex"] for e in entries])

    @classmethod
    def builtin(cls) -> "Wording":
        data = tomllib.loads(grammars_text())
        return cls(data.get("wording", []), data.get("default_severity", "Info"))

    def severity(self, text: str) -> Severity:
        if self._set is not None:
            hits = self._set.Match(text)
            return self.rules[min(hits)][1] if hits else self.default
        for regex, severity in self.rules:
            if regex.search(text):
                return severity
        return self.default


def _re2_set(patterns: list[str]):
    try:
        import re2
    except ImportError:  # pragma: no cover - google-re2 is a dependency
        return None
    options = re2.Options()
    options.log_errors = False
    regexes = re2.Set.SearchSet(options)
    try:
        for n, pattern in enumerate(patterns):
            if regexes.Add(pattern) != n:
                return None
        regexes.Compile()
    except (re2.error, ValueError, TypeError):
        return None
    return regexes


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
