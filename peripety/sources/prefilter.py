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


def candidate_regex(lead: str, prefixes: tuple[str, ...]) -> re.Pattern | None:
    """``lead`` followed by any prefix; None when no rule can match at all."""
    if not prefixes:
        return None
    # Longest first: alternation is ordered and one prefix may extend another.
    ordered = sorted(prefixes, key=len, reverse=True)
    return re.compile(lead + "(?:" + "|".join(map(re.escape, ordered)) + ")")
