"""Built-in rules against real recorded lines (tests/fixtures/lines/*.toml,
tests/fixtures/recorded/*.kmsg) and against non-storage noise."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from peripety.event import Severity
from peripety.event_types import EVENT_TYPES
from peripety.sources.kmsg import parse_record
from peripety.record import LogRecord
from peripety.rules import RuleSet
from peripety.rules.engine import KEY_LENGTH
from peripety.rules.user_regex import UserRegexError, compile_user_regex

FIXTURES = Path(__file__).parent / "fixtures"
LINES = FIXTURES / "lines"
RECORDED = FIXTURES / "recorded" / "linux-6.18-loop-faults.kmsg"


def _fixture_lines():
    for path in sorted(LINES.glob("*.toml")):
        for i, entry in enumerate(tomllib.loads(path.read_text())["line"]):
            yield pytest.param(entry, id=f"{path.stem}[{i}]")


FIXTURE_LINES = list(_fixture_lines())


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.builtin()


def _match(rules: RuleSet, entry: dict):
    if "identifier" in entry:
        record = LogRecord(text=entry["text"], source="journal", trusted_kernel=False,
                           identifier=entry["identifier"])
    else:
        record = LogRecord(text=entry["text"], source="kmsg", trusted_kernel=True)
    return rules.match_record(record)


@pytest.mark.parametrize("entry", FIXTURE_LINES)
def test_fixture_line_matches_as_recorded(rules, entry):
    assert entry.get("source"), "every fixture line cites where it comes from"
    found = _match(rules, entry)
    assert found is not None, f"no rule matched {entry['text']!r}"
    assert (found.kdev, found.sub_system, found.event_type) == (
        entry["kdev"], entry["sub_system"], entry["event_type"]
    )
    for key, value in entry.get("extension", {}).items():
        assert found.extension.get(key) == value, f"extension[{key!r}]"
    if "severity" in entry:  # no kmsg level here: a generic event's comes from the wording
        assert found.severity.name == entry["severity"]
    message = found.message()
    if found.rule.generic:
        assert message == ""  # the event's msg is then the kernel line itself
    else:
        assert found.kdev in message and not re.search(r"\{\w+\}", message)
    # A line that names no device gives an empty kdev, never a stand-in.
    assert bool(found.kdev) != found.rule.no_device


def test_every_builtin_rule_and_grammar_has_a_fixture_line(rules):
    """A rule or grammar counts as covered only by a line it wins (the
    first to match), so a grammar shadowed by specific rules fails too."""
    assert len(rules.grammars) >= 20
    fired = {_match(rules, p.values[0]).rule.origin for p in FIXTURE_LINES if _match(rules, p.values[0])}
    missing = [r.origin for r in rules.rules if r.origin not in fired]
    assert not missing, f"built-in rules or grammars without a recorded line: {missing}"


def test_grammars_come_after_every_specific_rule(rules):
    kinds = [r.generic for r in rules.rules]
    first_grammar = kinds.index(True)
    assert all(kinds[first_grammar:]), "a specific rule after a grammar would never fire"
    assert "grammars.toml" in rules.rules[first_grammar].origin


def test_builtin_rules_are_well_formed(rules):
    for rule in rules.rules:
        assert rule.event_type in EVENT_TYPES, f"{rule.origin}: unknown event type {rule.event_type}"
        assert rule.msg or rule.generic, f"{rule.origin}: built-in rules carry a msg sentence"
        if not rule.identifier:
            # The dispatch key: a kernel rule without a long enough prefix
            # would be tried on every line.
            assert rule.starts_with and min(map(len, rule.starts_with)) >= KEY_LENGTH, rule.origin
            assert rule.regex.startswith("^"), rule.origin


def test_kernel_rules_never_fire_on_userspace_records_and_back(rules):
    kernel_line = "I/O error, dev sda, sector 1 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2"
    spoofed = LogRecord(text=kernel_line, source="journal", trusted_kernel=False, identifier="kernel")
    assert rules.match_record(spoofed) is None
    daemon_line = "checker failed path 8:32 in map mpatha"
    assert rules.match(daemon_line) is None  # a kernel record saying it is not a multipathd event
    as_multipathd = LogRecord(text=daemon_line, trusted_kernel=False, identifier="multipathd")
    assert rules.match_record(as_multipathd).event_type == "DM_MPATH_PATH_FAILED"
    as_other = LogRecord(text=daemon_line, trusted_kernel=False, identifier="iscsid")
    assert rules.match_record(as_other) is None


def _noise_lines():
    return [
        line for line in (LINES / "noise.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]


def test_noise_lines_match_nothing(rules):
    noise = _noise_lines()
    assert len(noise) >= 200
    matched = [(line, rules.match(line).event_type) for line in noise if rules.match(line)]
    assert not matched


def test_noise_lines_match_nothing_at_any_level(rules):
    """A kmsg level changes a generic event's severity, never whether a
    non-storage line is an event."""
    for line in _noise_lines():
        for level in (0, 3, 6):
            assert rules.match(line, level) is None, line


def test_routine_storage_lines_are_generic_events_of_their_device(rules):
    lines = [l for l in (LINES / "storage_routine.txt").read_text().splitlines()
             if l and not l.startswith("#")]
    assert len(lines) >= 30
    for line in lines:
        found = rules.match(line)
        assert found is not None, line
        assert found.rule.generic and found.event_type.endswith("_MESSAGE"), (line, found.event_type)
        assert found.kdev and found.kdev in line, line
        assert found.severity > Severity.Warning, (line, found.severity)  # Notice, Info or Debug


# -- the recorded kmsg file ---------------------------------------------------

def _kmsg_records(path: Path) -> list[LogRecord]:
    """Records of a raw /dev/kmsg dump: blocks separated by blank lines, '#' comments dropped."""
    text = "\n".join(l for l in path.read_text().splitlines() if not l.startswith("#"))
    return [parse_record(block.strip("\n")) for block in text.split("\n\n") if block.strip()]


def test_recorded_kmsg_yields_the_expected_families(rules):
    records = _kmsg_records(RECORDED)
    assert len(records) > 20
    matches = {r.seq: rules.match_record(r) for r in records}
    families = {m.sub_system for m in matches.values() if m}
    assert {"block", "ext4", "jbd2"} <= families
    if any(r.text.startswith("XFS (") for r in records):
        assert "xfs" in families
    if any(r.text.startswith("BTRFS") for r in records):
        assert "btrfs" in families
    # Every kernel record at warning level or worse is a storage event,
    # except follow-up lines of an event already reported and printk's
    # rate-limit summaries.
    unmatched = [
        r.text for r in records
        if r.trusted_kernel and r.level <= 4 and not matches[r.seq]
        and not _FOLLOW_UP.search(r.text)
    ]
    assert not unmatched


# Lines that only add detail to the event of the line before them.
_FOLLOW_UP = re.compile(
    r"callbacks suppressed$"
    r"|^XFS \([^)]+\): (?:Please unmount the filesystem|Unmount and run xfs_repair"
    r"|First \d+ bytes of corrupted metadata buffer)"
    r"|^[0-9a-f]{8}: (?:[0-9a-f]{2} ){16}"  # the hex dump of that buffer
    r"|^BTRFS warning \([^)]+\): Skipping commit of aborted transaction"
)


def test_recorded_spoofed_userspace_record_yields_nothing(rules):
    spoofed = [r for r in _kmsg_records(RECORDED) if r.facility != 0]
    assert spoofed, "the recording includes a user-space write to /dev/kmsg"
    for record in spoofed:
        assert rules.match(record.text) is not None  # the text alone looks like a kernel error...
        assert rules.match_record(record) is None  # ...but it did not come from the kernel


# -- pathological input -------------------------------------------------------

_FILLERS = ["a", " ", "0", "x ", "0x0 ", ": ", "(", ")", "[sdb] ", "- ", "\" ", "ab:", "1:"]


@pytest.mark.timeout(60)
def test_builtin_regexes_finish_on_pathological_lines(rules):
    """Each regex meets 10 kB lines built to make a backtracking matcher
    work hard: its own prefix, then one filler repeated, with and without a
    trailing character that makes the match fail at the very end.

    A hang fails on the timeout; the outcome is checked against RE2, a
    linear-time engine with the same leftmost-first semantics: the same
    match (span and groups) or none. The few built-in patterns RE2 cannot
    run (lookaround) must at least name a device that is in the line.
    """
    checked = unmatched_by_re2 = matched = lines = 0
    for rule in rules.rules:
        try:
            reference = compile_user_regex(rule.regex)
        except UserRegexError:
            reference = None
            unmatched_by_re2 += 1
        for prefix in rule.starts_with or ("",):
            for filler in _FILLERS:
                body = prefix + filler * (10_000 // len(filler))
                for line in (body, body + "!", body + "\n"):
                    lines += 1
                    if reference is None:
                        found = rule.match(line)
                        matched += found is not None
                        assert found is None or found.kdev in line, (rule.origin, filler)
                        continue
                    ours, theirs = rule.compiled.search(line), reference.search(line)
                    matched += ours is not None
                    assert (ours and (ours.span(), ours.groupdict())) == \
                        (theirs and (theirs.span(), theirs.groupdict())), (rule.origin, filler)
                    checked += 1
    assert unmatched_by_re2 <= len(rules.rules) // 10  # the comparison covers nearly every rule
    assert checked and 0 < matched < lines  # lines that match and lines that do not were both met
