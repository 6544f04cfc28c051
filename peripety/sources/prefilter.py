"""What a line must start with to have a chance against a rule set.

Scanning a saved log line by line in Python costs more than the rules
themselves on the 90 % of lines that are noise. When every kernel rule has a
``starts_with`` prefix, a file reader can instead search a whole chunk for
those prefixes (after the format's lead) with one compiled regex, and parse
only the lines found. The exact decision stays with the rule engine.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    """A regex over a log's raw (UTF-8) bytes: ``lead`` followed by any
    prefix; with no prefix (no kernel rule at all) one that finds nothing.
    None where the bytes cannot tell (a prefix with U+FFFD, which a
    line's invalid bytes decode to): every line must then be decoded."""
    if any("\ufffd" in p for p in prefixes):
        return None
    if not prefixes:
        return _NOTHING
    words = sorted({p.encode("utf-8") for p in prefixes})
    return re.compile(lead.encode("ascii") + _trie(words))


_NOTHING = re.compile(rb"(?!x)x")


def _trie(words: list[bytes]) -> bytes:
    """A regex matching any of ``words`` (sorted), shared beginnings written
    once: the regex engine tries alternatives one by one, so at each line a
    flat list of ~100 prefixes costs ~100 tries, a trie a handful (half the
    time of a whole-file scan)."""
    if b"" in words:
        # A word ends here: whatever follows, the line is a candidate.
        return b""
    branches: dict[bytes, list[bytes]] = {}
    for word in words:
        branches.setdefault(word[:1], []).append(word[1:])
    alternatives = [re.escape(first) + _trie(rest) for first, rest in branches.items()]
    return alternatives[0] if len(alternatives) == 1 else b"(?:" + b"|".join(alternatives) + b")"
