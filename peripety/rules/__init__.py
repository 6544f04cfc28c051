"""Rules turn a log line into a match: which device, sub-system, event type.

Rules are data: the user's ``[[collector.regexs]]`` first, then the
specific rules of ``builtin.toml``, then the subsystem grammars of
``grammars.toml`` (a recognised storage line no rule names becomes its
family's generic event).
"""

from .engine import Match, Rule, RuleSet

__all__ = ["Match", "Rule", "RuleSet"]
