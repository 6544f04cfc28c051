"""What a line must start with to have a chance against a rule set.

Scanning a saved log line by line in Python costs more than the rules
themselves on the 90 % of lines that are noise. When every kernel rule has a
``starts_with`` prefix, a file reader can instead search a whole chunk for
those prefixes (after the format's lead) with one compiled regex, and parse
only the lines found. The exact decision stays with the rule engine.
"""

from __future__ import annotations

import re

from ..rules import RuleSet


def kernel_prefixes(ruleset: RuleSet) -> tuple[str, ...] | None:
    """Every prefix a kernel rule needs; None if a kernel rule has none
    (then every line must be tried)."""
    prefixes: set[str] = set()
    for rule in ruleset.rules:
        if rule.identifier:
            continue
        if not rule.starts_with:
            return None
        prefixes.update(rule.starts_with)
    return tuple(sorted(prefixes))


def candidate_regex(lead: str, prefixes: tuple[str, ...]) -> re.Pattern:
    """``lead`` followed by any prefix; with no prefix (no kernel rule at
    all) a regex that finds nothing."""
    if not prefixes:
        return _NOTHING
    return re.compile(lead + _trie(sorted(set(prefixes))))


_NOTHING = re.compile(r"(?!x)x")


def _trie(words: list[str]) -> str:
    """A regex matching any of ``words`` (sorted), shared beginnings written
    once: the regex engine tries alternatives one by one, so at each line a
    flat list of ~100 prefixes costs ~100 tries, a trie a handful (half the
    time of a whole-file scan)."""
    if "" in words:
        # A word ends here: whatever follows, the line is a candidate.
        return ""
    branches: dict[str, list[str]] = {}
    for word in words:
        branches.setdefault(word[0], []).append(word[1:])
    alternatives = [re.escape(first) + _trie(rest) for first, rest in branches.items()]
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
