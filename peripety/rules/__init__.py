"""Rules turn a log line into a match: which device, sub-system, event type.

Rules are data (``builtin.toml`` and the user's ``[[collector.regexs]]``).
"""

from .engine import Match, Rule, RuleSet

__all__ = ["Match", "Rule", "RuleSet"]
