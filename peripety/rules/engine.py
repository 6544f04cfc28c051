"""Rule engine: load rules from TOML, match lines fast.

Most kernel lines are not about storage, so the hot path must reject them
cheaply: every built-in rule has a ``starts_with`` prefix of at least
``KEY_LENGTH`` characters, and rules are indexed by the first
``KEY_LENGTH`` characters of their prefixes. A line costs one slice and one
dict lookup; only lines sharing a prefix key meet any regex. Rules without
a usable prefix (user rules may omit it) are merged into every bucket they
could match, keeping the rule order (user rules first). Within a bucket, a
rule's regex runs only when the line holds the longest literal the regex
requires (``_Bucket``).

Built-in rules are compiled with Python ``re`` (reviewed, fast); user
rules with RE2 (``user_regex``), so a site's pattern can never hang the
daemon.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..event import Severity, canonical_sub_system
from ..event_types import EVENT_TYPES
from .derived import derivers
from .grammar import GRAMMARS, generic_severity, grammars_text
from .template import Template, TemplateError, compile_template
from .toml_lines import TomlLines, load_toml, where
from .user_regex import UserRegexError, compile_user_regex

log = logging.getLogger("peripety.rules")

BUILTIN_RULES = "builtin.toml"
KEY_LENGTH = 3
"""Prefix characters used as the dispatch key; ``"sd "`` is the shortest
built-in prefix that still says something."""

RULE_KEYS = frozenset(
    {"starts_with", "regex", "sub_system", "event_type", "severity", "identifier", "msg", "no_device"}
)
_FIXED_FIELDS = frozenset({"kdev", "sub_system", "event_type"})


@dataclass(slots=True)
class Match:
    # Slots, not frozen: one is built per matched line (100k a second in
    # ``prpt parse``), and a frozen dataclass pays object.__setattr__ per field.
    rule: "Rule"
    kdev: str
    sub_system: str
    event_type: str
    severity: Severity
    extension: dict[str, str]

    def message(self) -> str:
        """The rule's ``msg`` sentence for this match (see ``template``)."""
        values = {**self.extension, "kdev": self.kdev, "sub_system": self.sub_system,
                  "event_type": self.event_type}
        return self.rule.template.render(values)


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
    generic: bool = False
    """A subsystem grammar (``grammars.toml``): its matches are the family's
    generic event, severity from the record's level or the wording."""
    origin: str = ""
    """Where the rule came from, e.g. ``/etc/peripetyd.conf: collector.regexs[3] (line 12)``."""
    no_device: bool = False
    """The line names no device (``XFS: possible memory allocation
    deadlock``, a ratelimit summary): the regex has no ``kdev`` group and
    the event's ``kdev`` is empty."""
    compiled: object = field(default=None, repr=False, compare=False)
    template: Template = field(default=None, repr=False, compare=False)
    derive: tuple = field(default=(), repr=False, compare=False)
    """Functions adding fields derived from named groups (``derived.py``)."""
    guard: tuple | None = field(default=None, repr=False, compare=False)
    """``_guard``'s answer, where it was found when the regex was compiled."""

    def match(self, text: str, level: int | None = None) -> Match | None:
        """The match of ``text``; ``level`` (syslog 0-7) is the record's
        priority, which a generic (grammar) match takes as its severity."""
        m = self.compiled.search(text)
        if m is None:
            return None
        groups = m.groupdict()
        kdev = "" if self.no_device else groups.pop("kdev", None)
        if not kdev and not self.no_device:
            return None
        extension = {k: v for k, v in groups.items() if v is not None}
        for derive in self.derive:
            derive(extension)
        if self.generic:
            severity = generic_severity(text, extension, level)
        else:
            severity = self.severity or EVENT_TYPES.default_severity(self.event_type)
        return Match(
            rule=self,
            kdev=kdev,
            sub_system=self.sub_system,
            event_type=self.event_type,
            severity=severity,
            extension=extension,
        )


def rule_from_table(entry: dict, origin: str, path=None, *, trusted: bool = False,
                    lines: TomlLines | None = None, index: int | None = None,
                    array: str = "collector.regexs", generic: bool = False,
                    compiled_cache: dict | None = None) -> Rule:
    """Build and compile one rule from its TOML table, or raise ConfigError.

    ``trusted`` rules (the built-in file) compile with Python ``re``; all
    others with RE2. ``lines``/``index`` locate the rule in its file (an
    item of the ``array`` of tables) so an error can name the line.
    ``generic`` marks a subsystem grammar: with no ``msg`` its event's
    message is the kernel line itself. ``compiled_cache`` (trusted rules):
    compiled code of patterns seen before, added to (see ``cache``).
    """
    block = lines.array_item(array, index) if lines and index is not None else None

    def fail(reason: str, key: str | None = None):
        line = (lines.key(block, key) if key and block else None) or (block.line if block else None)
        raise ConfigError(path, where(origin, line), reason)

    if not isinstance(entry, dict):
        fail("a rule must be a table ([[collector.regexs]])")
    unknown = sorted(set(entry) - RULE_KEYS)
    if unknown:
        fail(f"unknown key {unknown[0]!r} (a rule takes {', '.join(sorted(RULE_KEYS))})", unknown[0])
    for key in ("regex", "sub_system", "event_type"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            fail(f"'{key}' is required and must be a non-empty string", key)
    try:
        sub_system = canonical_sub_system(entry["sub_system"])
    except ValueError as exc:
        fail(str(exc), "sub_system")
    severity = None
    if "severity" in entry:
        try:
            severity = Severity.parse(entry["severity"])
        except ValueError as exc:
            fail(str(exc), "severity")
    try:
        starts_with = _strings(entry.get("starts_with"), "starts_with")
        identifier = _strings(entry.get("identifier"), "identifier")
    except ValueError as exc:
        fail(str(exc), str(exc).split("'")[1])
    if not isinstance(entry.get("msg", ""), str):
        fail("'msg' must be a string", "msg")
    no_device = entry.get("no_device", False)
    if not isinstance(no_device, bool):
        fail("'no_device' must be true or false", "no_device")
    compiled, guard = _compile(entry["regex"], trusted, fail, compiled_cache)
    if no_device and "kdev" in compiled.groupindex:
        fail("a no_device rule's regex must have no 'kdev' group", "regex")
    if not no_device and "kdev" not in compiled.groupindex:
        fail("regex has no 'kdev' named group: add (?P<kdev>...) around the device name, "
             "or set no_device = true for lines that name none", "regex")
    try:
        default = "" if generic else _default_msg(entry["event_type"], no_device)
        template = compile_template(entry.get("msg") or default)
    except TemplateError as exc:
        fail(str(exc), "msg")
    unknown_fields = template.fields - set(compiled.groupindex) - _FIXED_FIELDS
    if no_device:
        unknown_fields |= template.fields & {"kdev"}
    if unknown_fields:
        fail(f"msg uses {{{sorted(unknown_fields)[0]}}}, which is not a named group of the regex", "msg")
    return Rule(
        regex=entry["regex"],
        sub_system=sub_system,
        event_type=entry["event_type"],
        starts_with=starts_with,
        severity=severity,
        identifier=identifier,
        msg=entry.get("msg", ""),
        generic=generic,
        origin=(f"{path}: " if path is not None else "") + where(origin, block.line if block else None),
        no_device=no_device,
        compiled=compiled,
        template=template,
        derive=derivers(compiled.groupindex),
        guard=guard,
    )


def _compile(pattern: str, trusted: bool, fail, compiled_cache: dict | None = None):
    """(the compiled regex, its guard (see ``_guard``) or None)."""
    if trusted:
        try:
            return _compile_reviewed(pattern, compiled_cache)
        except re.error as exc:
            fail(f"regex does not compile: {exc}", "regex")
    try:
        return compile_user_regex(pattern), None
    except UserRegexError as exc:
        fail(str(exc), "regex")


def _compile_reviewed(pattern: str, compiled_cache: dict | None = None) -> tuple[re.Pattern, tuple | None]:
    """``re.compile(pattern)`` and its guard, from one parse of the pattern,
    or from ``compiled_cache`` (pattern -> ``cache.Entry``), which gets the
    entries of patterns compiled here.

    ``re.compile`` parses the pattern in Python, and so does ``_guard``:
    half of the time of loading the built-in rules. Here the parse is made
    once and compiled as ``re._compiler.compile`` does (the same code: tests
    check ``==``, which compares it); should the private modules differ,
    plain ``re.compile`` and no guard."""
    try:
        from re import _compiler, _parser

        import _sre
    except ImportError:  # another Python's internals: the public way
        return re.compile(pattern), None
    known = compiled_cache.get(pattern) if compiled_cache else None
    if known is not None:
        try:
            flags, code, groups, groupindex, indexgroup, (literal, anchored) = known
            return _sre.compile(pattern, flags, code, groups, groupindex, indexgroup), (literal, anchored)
        except Exception:  # noqa: BLE001 - a code _sre refuses, or not an entry: compile it
            pass
    try:
        parsed = _parser.parse(pattern, 0)
    except re.error:
        raise
    except Exception:  # noqa: BLE001
        return re.compile(pattern), None
    try:
        state = parsed.state
        indexgroup = [None] * state.groups
        for name, index in state.groupdict.items():
            indexgroup[index] = name
        code = _compiler._code(parsed, state.flags)
        args = (state.flags, code, state.groups - 1, dict(state.groupdict), tuple(indexgroup))
        compiled = _sre.compile(pattern, *args)
    except Exception:  # noqa: BLE001
        return re.compile(pattern), None
    guard = _guard_of(parsed.data, compiled)
    if compiled_cache is not None:
        flags, code, *rest = args
        compiled_cache[pattern] = (flags, list(map(int, code)), *rest, guard)  # (plain ints: marshal)
    return compiled, guard


def _default_msg(event_type: str, no_device: bool = False) -> str:
    info = EVENT_TYPES.get(event_type)
    title = info.title if info else event_type
    title = title.replace("{", "{{").replace("}", "}}").replace("[", "[[").replace("]", "]]")
    return title if no_device else title + " on {kdev}"


def _strings(value, key) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"'{key}' must be a non-empty string or a list of them")
    return tuple(value)


# -- a bucket: its rules in order, each behind a literal guard ---------------
# A bucket such as "sd " or "XFS" holds a dozen or two rules, most of which
# share their start ("sd H:C:T:L: [sdX] ") and differ later. Trying each
# regex, or one alternation of them all, re-reads that shared start once per
# rule (2.9 us a storage line for the alternation). Instead each rule carries
# the longest literal its regex requires (": bdev ", "Sense Key : ",
# "callbacks suppressed"): a C-speed ``in`` test skips the rules whose
# literal the line lacks, and the first of the others whose regex matches
# wins, in rule order. Measured 1.7 against 2.9 us a storage line on the
# fixture lines, and rule loading saves compiling the alternations.


def _guard(rule: Rule) -> tuple[str | None, bool]:
    """(the longest literal any match of ``rule``'s regex contains, or None;
    whether every match starts at position 0, so ``match`` may replace
    ``search``). Python's own parser answers exactly; it is private, so any
    surprise from it only means no guard and ``search``."""
    if rule.guard is not None:
        return rule.guard
    compiled = rule.compiled
    if not isinstance(compiled, re.Pattern):
        return None, False
    try:
        from re import _parser

        return _guard_of(_parser.parse(rule.regex, compiled.flags).data, compiled)
    except Exception:  # noqa: BLE001 - any failure only disables the guard
        return None, False


def _guard_of(items, compiled: re.Pattern) -> tuple[str | None, bool]:
    """``_guard`` from the parsed regex (``_parser.parse(...).data``)."""
    try:
        from re import _constants as c

        anchored = bool(items) and items[0][0] is c.AT and items[0][1] in (c.AT_BEGINNING, c.AT_BEGINNING_STRING)
        if compiled.flags & re.IGNORECASE:
            return None, anchored
        runs, current = [], []

        def walk(sequence) -> None:
            # Literals in sequence at the top level, and inside plain groups
            # there, must all appear, one after the other; anything else
            # (classes, repeats, branches, lookarounds, flags) ends a run.
            for op, arg in sequence:
                if op is c.LITERAL:
                    current.append(chr(arg))
                elif op is c.SUBPATTERN and not arg[1] and not arg[2]:
                    walk(arg[3])
                elif op is not c.AT:  # an anchor takes no text: the run goes on
                    runs.append("".join(current))
                    current.clear()

        walk(items)
        runs.append("".join(current))
        best = max(runs, key=len)
        return (best if len(best) >= 2 else None), anchored
    except Exception:  # noqa: BLE001 - any failure only disables the guard
        return None, False


class _Bucket:
    """The rules a line with one prefix key may meet, tried in order."""

    __slots__ = ("literals", "entries", "rules")

    def __init__(self, rules: list[Rule], guards: dict):
        self.rules = tuple(rules)
        entries = []
        for rule in rules:
            literal, anchored = guards[id(rule)]
            compiled = rule.compiled
            names = compiled.groupindex
            ext = tuple((name, g) for name, g in names.items() if name != "kdev")
            # m.group(0, kdev, *ext) always returns a tuple, even with no
            # extension; a rule for lines naming no device takes group 0 there.
            indices = (0, 0 if rule.no_device else names["kdev"]) + tuple(g for _, g in ext)
            severity = None if rule.generic else rule.severity or EVENT_TYPES.default_severity(rule.event_type)
            entries.append((rule.starts_with or ("",), compiled.match if anchored else compiled.search,
                            rule, severity, indices, tuple(name for name, _ in ext)))
        self.literals = tuple(guards[id(rule)][0] or "" for rule in rules)
        self.entries = tuple(entries)

    def first(self, text: str) -> tuple[tuple, tuple] | None:
        """(entry, groups) of the first rule that matches ``text``: its
        entry (prefixes, find, rule, severity or None for a grammar,
        group indices, extension names) and ``m.group(0, kdev, *extension)``.
        ``prpt parse --jsonl`` writes JSON from these, no Match built."""
        entries = self.entries
        for n, literal in enumerate(self.literals):  # most rules end here, cheaply
            if literal not in text:
                continue
            entry = entries[n]
            if not text.startswith(entry[0]):
                continue
            m = entry[1](text)
            if m is None:
                continue
            values = m.group(*entry[4])
            if not values[1] and not entry[2].no_device:
                continue  # an empty device: this rule did not match after all
            return entry, values
        return None

    def __call__(self, text: str, level: int | None = None) -> Match | None:
        found = self.first(text)
        return None if found is None else match_from_groups(found[0], found[1], text, level)


def match_from_groups(entry: tuple, values: tuple, text: str, level: int | None) -> Match:
    """The Match of a bucket entry's groups (see ``_Bucket.first``)."""
    _, _, rule, severity, _, names = entry
    kdev = "" if rule.no_device else values[1]
    found = values[2:]
    extension = dict(zip(names, found))
    if None in found:  # optional groups that took no part
        extension = {k: v for k, v in extension.items() if v is not None}
    for derive in rule.derive:
        derive(extension)
    if severity is None:  # a grammar: the family's generic event
        severity = generic_severity(text, extension, level)
    return Match(rule, kdev, rule.sub_system, rule.event_type, severity, extension)


def _is_keyed(rule: Rule) -> bool:
    return bool(rule.starts_with) and min(map(len, rule.starts_with)) >= KEY_LENGTH


class _PrefixIndex:
    """Reviewed rules (Python ``re``), dispatched on the first KEY_LENGTH
    characters: a line costs one slice and one dict lookup, then the
    literal guards and regexes of its bucket's rules (``_Bucket``).

    Rules without a usable prefix are merged into every bucket they could
    match (keeping the order), so this index suits a rule set with few of
    them: the built-in rules have none. Building it is linear in the rules
    (times the handful of prefixes each has)."""

    def __init__(self, rules: list[Rule]):
        order = {id(r): i for i, r in enumerate(rules)}
        keyed = [r for r in rules if _is_keyed(r)]
        keyed_ids = {id(r) for r in keyed}
        loose = [r for r in rules if id(r) not in keyed_ids]
        buckets: dict[str, list[Rule]] = {}
        for rule in keyed:
            for key in dict.fromkeys(p[:KEY_LENGTH] for p in rule.starts_with):
                buckets.setdefault(key, []).append(rule)
        guards = {id(r): _guard(r) for r in rules}
        self._by_key: dict[str, _Bucket] = {}
        for key, bucket in buckets.items():
            merged = bucket + [r for r in loose if _could_start(r, key)]
            if len(merged) > len(bucket):
                merged.sort(key=lambda r: order[id(r)])
            self._by_key[key] = _Bucket(merged, guards)
        self._fallback = _Bucket(loose, guards) if loose else None

    # An RE2 set per bucket (one pass names the matching rules, then only
    # those run in Python) was measured slower: 3.6-4.1 us against 2.7-3.3
    # us a storage line for the alternations this replaced, the set's call
    # and encoding costing more than the alternatives it saves.
    def __call__(self, text: str, level: int | None = None) -> Match | None:
        bucket = self._by_key.get(text[:KEY_LENGTH], self._fallback)
        return None if bucket is None else bucket(text, level)  # most lines: no bucket at all

    def first(self, text: str) -> tuple[tuple, tuple] | None:
        """``_Bucket.first`` of the line's bucket."""
        bucket = self._by_key.get(text[:KEY_LENGTH], self._fallback)
        return None if bucket is None else bucket.first(text)


_SET_MINIMUM = 4
"""Rules without a prefix from which an RE2 set pays: below it, trying each
is as fast as asking the set which ones match."""
_SET_MEMORY = 64 << 20


class _UserIndex:
    """Site rules (RE2, any number, prefixes optional), in their order.

    Rules with a prefix are dispatched like the built-in ones; the rules
    without one are asked, all at once, through one RE2 set (a multi-pattern
    automaton) which names the few whose regex matches the line, so
    thousands of prefix-less rules cost one pass over the line, not one
    regex each. Building is linear: each rule is added once."""

    def __init__(self, rules: list[Rule]):
        self._by_key: dict[str, list[tuple[int, Rule]]] = {}
        self._loose: list[tuple[int, Rule]] = []
        for n, rule in enumerate(rules):
            if _is_keyed(rule):
                for key in dict.fromkeys(p[:KEY_LENGTH] for p in rule.starts_with):
                    self._by_key.setdefault(key, []).append((n, rule))
            else:
                self._loose.append((n, rule))
        self._set = _re2_set([r for _, r in self._loose]) if len(self._loose) >= _SET_MINIMUM else None

    def __call__(self, text: str, level: int | None = None) -> Match | None:
        candidates = self._by_key.get(text[:KEY_LENGTH], ())
        if self._loose:
            if self._set is None:
                loose = self._loose
            else:
                hits = self._set.Match(text)
                loose = [self._loose[i] for i in sorted(hits)] if hits else ()
            if loose:
                candidates = sorted([*candidates, *loose], key=_first) if candidates else loose
        return _first_match((rule for _, rule in candidates), text, level)


def _first_match(rules, text: str, level: int | None) -> Match | None:
    """The first of ``rules`` (in order) whose prefix and regex match."""
    for rule in rules:
        if rule.starts_with and not text.startswith(rule.starts_with):
            continue
        found = rule.match(text, level)
        if found:
            return found
    return None


def _first(pair):
    return pair[0]


def _re2_set(rules: list[Rule]):
    """An RE2 set of the rules' patterns (index = position), or None when
    one of them cannot join it (then each is tried in turn)."""
    import re2

    options = re2.Options()
    options.log_errors = False
    # The set's automaton grows with the rules: with RE2's default 8 MB
    # budget 10,000 patterns fall back to a slow path (24 ms a line);
    # 64 MB keeps it under a microsecond.
    options.max_mem = _SET_MEMORY
    regexes = re2.Set.SearchSet(options)
    try:
        for n, rule in enumerate(rules):
            if regexes.Add(getattr(rule.compiled, "pattern", rule.regex)) != n:
                return None
        regexes.Compile()
    except (re2.error, ValueError, TypeError) as exc:
        log.debug("user rules without a prefix tried one by one: %s", exc)
        return None
    return regexes


class RuleSet:
    """An ordered set of rules; the first rule that matches wins.

    Kernel rules are matched through one index per tier: the user's rules
    (when any) first, then the built-in ones, whose specific rules come
    before the subsystem grammars."""

    def __init__(self, rules: list[Rule]):
        self.rules = tuple(rules)  # a RuleSet is shared (``builtin``): never changed
        kernel = [r for r in self.rules if not r.identifier]
        reviewed = all(isinstance(r.compiled, re.Pattern) for r in kernel)
        self._tiers = ((_PrefixIndex if reviewed else _UserIndex)(kernel),)
        self._by_identifier: dict[str, list[Rule]] = {}
        for rule in self.rules:
            for ident in rule.identifier:
                self._by_identifier.setdefault(ident, []).append(rule)
        self._bind()

    def _bind(self) -> None:
        # One tier (the usual case: built-in rules only): its index *is*
        # the match function, saving a call on every line.
        if len(self._tiers) == 1:
            self.match = self._tiers[0]
        self.first = getattr(self._tiers[0], "first", None) if len(self._tiers) == 1 else None
        """(entry, groups) of a kernel line's first matching rule, without
        a Match (``_Bucket.first``): only for a rule set of the built-in
        kind (Python ``re``, one tier); else None (use ``match``)."""
        tier = self._tiers[-1]
        self._by_key = getattr(tier, "_by_key", {})

    @classmethod
    def from_toml(cls, text: str, path=None, *, trusted: bool = False) -> "RuleSet":
        """Rules from ``[[collector.regexs]]`` tables in ``text``. Other
        top-level content is ignored here (``config.load_config`` checks it)."""
        return cls.from_data(load_toml(text, path), path, lines=TomlLines(text), trusted=trusted)

    @classmethod
    def from_data(cls, data: dict, path=None, *, lines: TomlLines | None = None,
                  trusted: bool = False) -> "RuleSet":
        """Rules from parsed TOML; ``lines`` (the file's text) lets errors name a line."""
        return cls(_rules_from_data(data, path, lines, trusted))

    @classmethod
    def builtin(cls) -> "RuleSet":
        """The shipped rules, loaded and indexed once per process: the
        specific rules of ``builtin.toml``, then the subsystem grammars of
        ``grammars.toml`` (tried only when no specific rule matched)."""
        global _BUILTIN
        if _BUILTIN is None:
            from . import cache

            text = resources.files(__package__).joinpath(BUILTIN_RULES).read_text()
            grammars = grammars_text()
            sources = [text, grammars]
            kept = cache.load(sources)
            compiled = dict(kept.get("regex") or {})
            tomls = kept.get("toml") or [load_toml(text), load_toml(grammars, f"peripety/rules/{GRAMMARS}")]
            specific = _rules_from_data(tomls[0], f"peripety/rules/{BUILTIN_RULES}", TomlLines(text), trusted=True,
                                        compiled_cache=compiled)
            _BUILTIN = cls([*specific, *load_grammars(compiled, tomls[1])])
            if compiled != kept.get("regex") or not kept.get("toml"):  # made here: kept for the next run
                cache.store(compiled, tomls, sources)
        return _BUILTIN

    @classmethod
    def load(cls, user_path: str | Path | None = None) -> "RuleSet":
        """Built-in rules plus the user's; user rules are tried first so a
        site can refine a built-in one."""
        builtin = cls.builtin()
        if user_path is None:
            return builtin
        path = Path(user_path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(path, "", f"cannot read rules: {exc.strerror}") from None
        return builtin.with_user_rules(cls.from_toml(text, path=path).rules)

    def with_user_rules(self, rules: list[Rule]) -> "RuleSet":
        """A rule set trying ``rules`` first, then this one (whose index is
        reused, not rebuilt)."""
        if not rules:
            return self
        log.debug("%d user rule(s) placed before %d built-in ones", len(rules), len(self.rules))
        user = RuleSet(rules)
        joined = RuleSet.__new__(RuleSet)
        joined.rules = (*user.rules, *self.rules)
        joined._tiers = (*user._tiers, *self._tiers)
        joined._by_identifier = {}
        for source in (user, self):
            for ident, found in source._by_identifier.items():
                joined._by_identifier.setdefault(ident, []).extend(found)
        joined._bind()
        return joined

    @property
    def grammars(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.generic)

    def match(self, text: str, level: int | None = None) -> Match | None:
        """Match a kernel line; ``level`` is its syslog level where known."""
        for tier in self._tiers:
            found = tier(text, level)
            if found:
                return found
        return None

    def match_userspace(self, identifier: str, text: str, level: int | None = None) -> Match | None:
        """Match a line a user-space daemon logged under ``identifier``."""
        return _first_match(self._by_identifier.get(identifier, ()), text, level)

    def match_record(self, record) -> Match | None:
        """Match a LogRecord, honouring where it came from: kernel rules fire
        on trusted kernel records only, user-space rules on their daemon's."""
        if record.trusted_kernel:
            return self.match(record.text, record.level)
        if record.identifier:
            return self.match_userspace(record.identifier, record.text, record.level)
        return None

    @property
    def identifiers(self) -> frozenset[str]:
        """SYSLOG_IDENTIFIERs some rule listens to."""
        return frozenset(self._by_identifier)


_BUILTIN: RuleSet | None = None


def _rules_from_data(data: dict, path, lines: TomlLines | None, trusted: bool,
                     compiled_cache: dict | None = None) -> list[Rule]:
    collector = data.get("collector", {})
    if not isinstance(collector, dict):
        raise ConfigError(path, "collector", "must be a table ([collector] or [[collector.regexs]])")
    entries = collector.get("regexs", [])
    if not isinstance(entries, list):
        raise ConfigError(path, "collector.regexs", "must be an array of tables ([[collector.regexs]])")
    return [
        rule_from_table(e, f"collector.regexs[{i}]", path, trusted=trusted, lines=lines, index=i,
                        compiled_cache=compiled_cache)
        for i, e in enumerate(entries)
    ]


def load_grammars(compiled_cache: dict | None = None, data: dict | None = None) -> list[Rule]:
    """The subsystem grammars (``[[grammar]]`` of ``grammars.toml``, or its
    parsed ``data``) as rules."""
    text = grammars_text()
    path = f"peripety/rules/{GRAMMARS}"
    lines = TomlLines(text)
    return [
        rule_from_table(e, f"grammar[{i}]", path, trusted=True, lines=lines, index=i,
                        array="grammar", generic=True, compiled_cache=compiled_cache)
        for i, e in enumerate((load_toml(text, path) if data is None else data).get("grammar", []))
    ]


def _could_start(rule: Rule, key: str) -> bool:
    """Could a line whose first KEY_LENGTH characters are ``key`` start with
    one of ``rule``'s (short) prefixes?"""
    if not rule.starts_with:
        return True
    return any(key.startswith(p) or p.startswith(key) for p in rule.starts_with)
