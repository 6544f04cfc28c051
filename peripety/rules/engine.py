"""Rule engine: load rules from TOML, match lines fast.

Most kernel lines are not about storage, so the hot path must reject them
cheaply: rules are indexed by the first few characters of their
``starts_with`` prefix and a line only meets the regexes of rules whose
prefix it shares. Rules without ``starts_with`` are tried on every line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..event import Severity, canonical_sub_system
from ..event_types import EVENT_TYPES

BUILTIN_RULES = "builtin.toml"
_MAX_KEY = 4


@dataclass(frozen=True)
class Match:
    rule: "Rule"
    kdev: str
    sub_system: str
    event_type: str
    severity: Severity
    extension: dict[str, str]


@dataclass
class Rule:
    regex: str
    sub_system: str
    event_type: str
    starts_with: tuple[str, ...] = ()
    severity: Severity | None = None
    identifier: tuple[str, ...] = ()
    """Non-empty: a user-space rule for these SYSLOG_IDENTIFIERs, never kernel."""
    msg: str = ""
    origin: str = ""
    """Where the rule came from, e.g. ``/etc/peripetyd.conf: collector.regexs[3]``."""
    compiled: object = field(default=None, repr=False, compare=False)

    def match(self, text: str) -> Match | None:
        m = self.compiled.search(text)
        if m is None:
            return None
        groups = m.groupdict()
        kdev = groups.pop("kdev", None)
        if not kdev:
            return None
        return Match(
            rule=self,
            kdev=kdev,
            sub_system=self.sub_system,
            event_type=self.event_type,
            severity=self.severity or EVENT_TYPES.default_severity(self.event_type),
            extension={k: v for k, v in groups.items() if v is not None},
        )


def rule_from_table(entry: dict, origin: str, path=None) -> Rule:
    """Build and compile one rule from its TOML table, or raise ConfigError."""
    if not isinstance(entry, dict):
        raise ConfigError(path, origin, "a rule must be a table ([[collector.regexs]])")
    for key in ("regex", "sub_system", "event_type"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ConfigError(path, origin, f"'{key}' is required and must be a non-empty string")
    try:
        sub_system = canonical_sub_system(entry["sub_system"])
    except ValueError as exc:
        raise ConfigError(path, origin, str(exc)) from None
    severity = None
    if "severity" in entry:
        try:
            severity = Severity.parse(entry["severity"])
        except ValueError as exc:
            raise ConfigError(path, origin, str(exc)) from None
    starts_with = _strings(entry.get("starts_with"), "starts_with", origin, path)
    identifier = _strings(entry.get("identifier"), "identifier", origin, path)
    try:
        compiled = re.compile(entry["regex"])
    except re.error as exc:
        raise ConfigError(path, origin, f"regex does not compile: {exc}") from None
    if "kdev" not in compiled.groupindex:
        raise ConfigError(path, origin, "regex has no 'kdev' named group: add (?P<kdev>...) around the device name")
    return Rule(
        regex=entry["regex"],
        sub_system=sub_system,
        event_type=entry["event_type"],
        starts_with=starts_with,
        severity=severity,
        identifier=identifier,
        msg=entry.get("msg", ""),
        origin=origin,
        compiled=compiled,
    )


def _strings(value, key, origin, path) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(path, origin, f"'{key}' must be a non-empty string or a list of them")
    return tuple(value)


class RuleSet:
    """An ordered set of rules; the first rule that matches wins."""

    def __init__(self, rules: list[Rule]):
        self.rules = list(rules)
        kernel = [r for r in self.rules if not r.identifier]
        prefixes = [p for r in kernel for p in r.starts_with]
        self._key_len = min([_MAX_KEY] + [len(p) for p in prefixes])
        self._unprefixed = [r for r in kernel if not r.starts_with]
        self._by_key: dict[str, list[Rule]] = {}
        for rule in kernel:
            for prefix in rule.starts_with:
                bucket = self._by_key.setdefault(prefix[: self._key_len], [])
                if rule not in bucket:
                    bucket.append(rule)
        self._by_identifier: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for ident in rule.identifier:
                self._by_identifier.setdefault(ident, []).append(rule)

    @classmethod
    def from_toml(cls, text: str, path=None) -> "RuleSet":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, "", f"invalid TOML: {exc}") from None
        entries = data.get("collector", {}).get("regexs", [])
        if not isinstance(entries, list):
            raise ConfigError(path, "collector.regexs", "must be an array of tables ([[collector.regexs]])")
        where = str(path) if path else "<string>"
        return cls(
            [rule_from_table(e, f"collector.regexs[{i}]", path) for i, e in enumerate(entries)]
        )

    @classmethod
    def builtin(cls) -> "RuleSet":
        text = resources.files(__package__).joinpath(BUILTIN_RULES).read_text()
        return cls.from_toml(text, path=f"peripety/rules/{BUILTIN_RULES}")

    @classmethod
    def load(cls, user_path: str | Path | None = None) -> "RuleSet":
        """Built-in rules plus the user's; user rules are tried first so a
        site can refine a built-in one."""
        builtin = cls.builtin()
        if user_path is None:
            return builtin
        path = Path(user_path)
        user = cls.from_toml(path.read_text(), path=path)
        return cls(user.rules + builtin.rules)

    def match(self, text: str) -> Match | None:
        """Match a kernel line."""
        for rule in self._by_key.get(text[: self._key_len], ()):
            for prefix in rule.starts_with:
                if text.startswith(prefix):
                    found = rule.match(text)
                    if found:
                        return found
                    break
        for rule in self._unprefixed:
            found = rule.match(text)
            if found:
                return found
        return None

    def match_userspace(self, identifier: str, text: str) -> Match | None:
        """Match a line a user-space daemon logged under ``identifier``."""
        for rule in self._by_identifier.get(identifier, ()):
            if rule.starts_with and not text.startswith(rule.starts_with):
                continue
            found = rule.match(text)
            if found:
                return found
        return None

    def match_record(self, record) -> Match | None:
        """Match a LogRecord, honouring where it came from: kernel rules fire
        on trusted kernel records only, user-space rules on their daemon's."""
        if record.trusted_kernel:
            return self.match(record.text)
        if record.identifier:
            return self.match_userspace(record.identifier, record.text)
        return None
